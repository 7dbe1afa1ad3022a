"""The training loop: data, model, optimizer, periodic eval and checkpoints, resume.

`train_and_evaluate(config, workdir)` is what `experiments/train.py` calls. Restarting it
with the same workdir resumes from the latest checkpoint: the batch of step s is a pure
function of (seed, s), so params, optimizer state, step and RNG are all a resume needs.
"""

import functools
import os
import time

import jax
import numpy as np
from absl import logging

from lm import checkpoint, evaluation, generation, losses, metrics, optim, run_files
from lm import sharding, steps, tokenizers
from lm.data import sources, windows
from lm.errors import ConfigError, DataError
from lm.models import decoder
from lm.models.config import ModelConfig
from lm.progress import Progress

SPLITS = ("train", "validation", "test")


def model_config(config, vocab_size: int) -> ModelConfig:
  """The frozen model config from `config.model` and the tokenizer's vocabulary size."""
  return ModelConfig(vocab_size=vocab_size, **config.model.to_dict())


def validate(config) -> None:
  """Checks the whole config before any data is read or anything compiled."""
  t = config.train
  for name in ("batch_size", "accum_steps", "steps", "log_every", "eval_every",
               "checkpoint_every"):
    if getattr(t, name) <= 0:
      raise ConfigError(f"train.{name}={getattr(t, name)} must be positive")
  if t.batch_size % t.accum_steps:
    raise ConfigError(f"train.batch_size={t.batch_size} is not divisible by "
                      f"train.accum_steps={t.accum_steps}")
  if config.data.context <= 0:
    raise ConfigError(f"data.context={config.data.context} must be positive")
  if config.eval.batch_size <= 0:
    raise ConfigError(f"eval.batch_size={config.eval.batch_size} must be positive")
  if config.eval.split not in SPLITS:
    raise ConfigError(f"eval.split={config.eval.split!r}: expected one of {SPLITS}")
  o = config.optim
  if o.lr < 0 or o.min_lr < 0 or o.min_lr > o.lr:
    raise ConfigError(f"need 0 <= optim.min_lr ({o.min_lr}) <= optim.lr ({o.lr})")
  if o.warmup_steps < 0:
    raise ConfigError(f"optim.warmup_steps={o.warmup_steps} must be >= 0")
  if not 0 <= config.loss.label_smoothing < 1:
    raise ConfigError(f"loss.label_smoothing={config.loss.label_smoothing} must be in [0, 1)")
  losses.get(config.loss.name)
  if config.data.tokenizer not in tokenizers.KINDS:
    raise ConfigError(f"data.tokenizer={config.data.tokenizer!r}: expected one of "
                      f"{sorted(tokenizers.KINDS)}")
  model_config(config, vocab_size=1)  # Validates every model field.


def load_data(config, workdir: str | None):
  """(tokenizer, {split: int32 tokens}). Reuses `<workdir>/tokenizer.json` if present."""
  d = config.data
  texts = {s: sources.load_text(d.source, s, data_dir=d.data_dir, manual_dir=d.manual_dir,
                                text_file=d.text_file, split_fractions=tuple(d.split_fractions))
           for s in SPLITS}
  path = workdir and run_files.tokenizer_path(workdir)
  if path and os.path.exists(path):
    tokenizer = tokenizers.load(path)  # A resumed run must keep its vocabulary.
  else:
    tokenizer = tokenizers.build(d.tokenizer, texts["train"])
    if path:
      os.makedirs(workdir, exist_ok=True)
      tokenizers.save(tokenizer, path)
  tokens = {s: np.asarray(tokenizer.encode(t), np.int32) for s, t in texts.items()}
  for split in ("train", config.eval.split):
    if len(tokens[split]) < config.data.context + 1:
      raise DataError(f"data.context={config.data.context} is longer than split {split!r} "
                      f"({len(tokens[split])} tokens)")
  return tokenizer, tokens


def _loss_fn(config):
  return functools.partial(losses.get(config.loss.name),
                           label_smoothing=config.loss.label_smoothing,
                           z_loss=config.loss.z_loss, per_sequence=config.loss.per_sequence)


def _check_finite(step: int, values: dict) -> None:
  for k, v in values.items():
    if not np.isfinite(v):
      raise FloatingPointError(f"non-finite {k}={v} at step {step}; no checkpoint written")


def train_and_evaluate(config, workdir: str, *, stop_at: int | None = None) -> dict:
  """Trains `config` in `workdir` (resuming if it holds a checkpoint).

  Args:
    stop_at: stop after this step as if preempted (checkpoint, no final eval). For tests.

  Returns:
    The final evaluation metrics (empty dict if stopped early).
  """
  validate(config)
  mesh = sharding.data_mesh()
  sharding.check_batch(config.train.batch_size // config.train.accum_steps, mesh,
                       "train.batch_size / train.accum_steps")
  sharding.check_batch(config.eval.batch_size, mesh, "eval.batch_size")
  tokenizer, tokens = load_data(config, workdir)
  run_files.write_config(workdir, config)
  model_cfg = model_config(config, tokenizer.vocab_size)
  logging.info("model: %s", model_cfg)
  print(f"model: {decoder.param_count(model_cfg):,} params "
        f"({decoder.param_count(model_cfg, embeddings=False):,} non-embedding), "
        f"{decoder.flops_per_token(model_cfg):.3g} train FLOPs/token, "
        f"{mesh.shape['data']} {jax.devices()[0].platform} device(s)", flush=True)

  model = decoder.Decoder(model_cfg)
  t = config.train
  optimizer = optim.build(config.optim, t.steps)
  loss_fn = _loss_fn(config)
  train_windows = windows.TrainWindows(tokens["train"], context=config.data.context,
                                       batch_size=t.batch_size, seed=config.seed)

  rng = jax.random.PRNGKey(config.seed)
  init_rng, state_rng = jax.random.split(rng)
  replicated = sharding.replicated(mesh)
  init = jax.jit(lambda r: steps.create_state(decoder.init_params(model_cfg, r), optimizer,
                                              state_rng), out_shardings=replicated)
  abstract_state = jax.eval_shape(init, init_rng)

  mngr = checkpoint.manager(workdir, keep=t.keep_checkpoints)
  writer = metrics.Writer(workdir, enabled=jax.process_index() == 0)
  restored = checkpoint.restore(mngr, abstract_state)
  if restored is None:
    state, start = init(init_rng), 0
  else:
    state, meta = restored
    state = jax.device_put(state, replicated)
    start = int(meta["step"])
    print(f"resumed from step {start} of {workdir}", flush=True)
  writer.truncate_after(start)

  train_step = jax.jit(functools.partial(steps.train_step, model=model, optimizer=optimizer,
                                         loss_fn=loss_fn, accum_steps=t.accum_steps),
                       donate_argnames="state")
  eval_fn = functools.partial(evaluation.evaluate_tokens, model=model, loss_fn=loss_fn,
                              context=config.data.context, batch_size=config.eval.batch_size,
                              max_batches=config.eval.max_batches, mesh=mesh)
  schedule = optim.schedule(config.optim, t.steps)
  last = t.steps if stop_at is None else min(stop_at, t.steps)
  progress = Progress(t.steps, tokens_per_step=t.batch_size * config.data.context)
  pending, wall = [], time.perf_counter()
  for step in range(start + 1, last + 1):
    batch = sharding.put_batch(train_windows.batch(step - 1), mesh)
    state, step_metrics = train_step(state, batch)
    pending.append(step_metrics)
    is_last = step == last
    if step % t.log_every == 0 or step % t.checkpoint_every == 0 or is_last:
      sums = functools.reduce(metrics.add, jax.device_get(pending))
      pending = []
      values = metrics.summarize(sums)
      values["grad_norm"] = values.pop("grad_norm_sum") / values.pop("steps")
      values["learning_rate"] = float(schedule(step - 1))
      _check_finite(step, values)
      writer.write(step, "train", values)
      progress.update(step, loss=values["loss"])
    if step % t.eval_every == 0 or (is_last and stop_at is None):
      ev = eval_fn(state["params"], tokens[config.eval.split])
      writer.write(step, config.eval.split, ev)
      progress.message(f"step {step}: {config.eval.split} loss {ev['loss']:.4f} "
                       f"perplexity {ev['perplexity']:.3f}")
    if step % t.checkpoint_every == 0 or is_last:
      checkpoint.save(mngr, step, state, {"step": step, "seed": config.seed}, force=is_last)
  progress.close()
  mngr.wait_until_finished()
  mngr.close()
  writer.close()
  if stop_at is not None and last < t.steps:
    return {}

  results = finish(config, workdir, state["params"], model_cfg, tokenizer, tokens, eval_fn)
  results["train_wall_s"] = time.perf_counter() - wall
  run_files.write_json(f"{workdir}/results.json", results)
  return results


def finish(config, workdir, params, model_cfg, tokenizer, tokens, eval_fn) -> dict:
  """Final evaluation and a text sample, as a JSON-able dict."""
  ev = eval_fn(params, tokens[config.eval.split])
  prompt = tokenizer.encode(config.sample.prompt)
  ids = generation.sample_text(params, model_cfg, prompt, num_tokens=config.sample.num_tokens,
                               temperature=config.sample.temperature,
                               rng=jax.random.PRNGKey(config.seed))
  return {"split": config.eval.split, **ev,
          "sample": {"prompt": config.sample.prompt, "text": tokenizer.decode(ids)}}
