"""The training loop: data, model, optimizer, periodic eval and checkpoints, resume.

`train_and_evaluate(config, workdir)` is what `experiments/train.py` calls. Restarting it
with the same workdir resumes from the latest checkpoint: the batch of step s is a pure
function of (seed, s), so params, optimizer state, step and RNG are all a resume needs.

results.json `train_wall_s` is the wall time of the train loop (steps, first-step
compilation, periodic and final evaluations, checkpoint saves; not start-up, data loading,
restore or the text sample), summed over every process of a resumed run: each checkpoint
carries the total up to its step. Time a killed process spent after its last checkpoint is
not counted (the next process redoes and counts those steps). A run resumed from a
checkpoint older than this bookkeeping (no `train_wall_s` in its metadata) has
`train_wall_s` None (unknown), and `train_wall_s_partial`, the time counted from step
`train_wall_s_from_step` on.
"""

import functools
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from lm import checkpoint, evaluation, generation, losses, metrics, optim, run_files
from lm import families, preemption, sharding, stages, steps, throughput, tokenizers
from lm.data import sources, windows
from lm.errors import ConfigError, DataError
from lm.models import decoder
from lm.models.config import ModelConfig
from lm.progress import Progress

SPLITS = ("train", "validation", "test")


def model_config(config, vocab_size: int) -> ModelConfig:
  """The frozen model config from `config.model` and the tokenizer's vocabulary size."""
  if config.stage in families.STAGES:  # Adds what the data fixes (classifier labels).
    return families.model_config(config, vocab_size)
  return ModelConfig(vocab_size=vocab_size, **config.model.to_dict())


def _require(ok: bool, message: str) -> None:
  if not ok:
    raise ConfigError(message)


def _check_number(config, key: str, low=None, high=None, *, optional=False,
                  low_open=False) -> None:
  """config[key] is a finite number in [low, high] (or (low, high] with low_open)."""
  section, _, name = key.rpartition(".")
  value = config[section][name] if section else config[name]
  if value is None and optional:
    return
  _require(isinstance(value, (int, float)) and not isinstance(value, bool)
           and math.isfinite(value), f"{key}={value!r} must be a finite number")
  if low is not None:
    _require(value > low if low_open else value >= low,
             f"{key}={value} must be {'>' if low_open else '>='} {low}")
  if high is not None:
    _require(value <= high, f"{key}={value} must be <= {high}")


def validate(config) -> None:
  """Checks the whole config, every field and cross-field rule, before any data is read."""
  positive = ["train.batch_size", "train.accum_steps", "train.steps", "train.log_every",
              "train.eval_every", "train.checkpoint_every", "data.context", "eval.batch_size"]
  for key in positive:
    _check_number(config, key, 1)
  for key in ("train.keep_checkpoints", "eval.max_batches", "train.inject_nonfinite_at",
              "optim.decay_steps"):
    _check_number(config, key, 1, optional=True)
  _check_number(config, "seed", 0, 2**32 - 1)
  _check_number(config, "optim.lr", 0)
  _check_number(config, "optim.min_lr", 0, config.optim.lr)
  _check_number(config, "optim.warmup_steps", 0)
  _check_number(config, "optim.b1", 0, 1)
  _check_number(config, "optim.b2", 0, 1)
  _check_number(config, "optim.eps", 0, low_open=True)
  _check_number(config, "optim.weight_decay", 0)
  _check_number(config, "optim.clip_norm", 0, optional=True, low_open=True)
  _check_number(config, "loss.label_smoothing", 0, 0.999)
  _check_number(config, "loss.z_loss", 0)
  _check_number(config, "sample.temperature", 0)
  _check_number(config, "sample.num_tokens", 0)
  for key in ("model.init_std", "model.rope_theta", "model.norm_eps"):
    _check_number(config, key, 0, low_open=True)
  for key in ("model.num_kv_heads", "model.head_dim", "model.mlp_width"):
    _check_number(config, key, 1, optional=True)
  t = config.train
  _require(t.batch_size % t.accum_steps == 0,
           f"train.batch_size={t.batch_size} is not divisible by "
           f"train.accum_steps={t.accum_steps}")
  _require(t.nonfinite in ("stop", "skip"),
           f"train.nonfinite={t.nonfinite!r}: expected 'stop' or 'skip'")
  _require(config.eval.split in SPLITS,
           f"eval.split={config.eval.split!r}: expected one of {SPLITS}")
  _require(config.data.source in sources.SOURCES,
           f"data.source={config.data.source!r}: expected one of {sources.SOURCES}")
  _require(config.data.source != "text" or config.data.text_file is not None
           or config.stage != "pretrain",
           "data.source='text' needs data.text_file")
  sources.split_text("", tuple(config.data.split_fractions))  # Checks the shares.
  _require(config.data.tokenizer in tokenizers.KINDS,
           f"data.tokenizer={config.data.tokenizer!r}: expected one of "
           f"{sorted(tokenizers.KINDS)}")
  losses.get(config.loss.name)
  _require(config.stage in stages.STAGES + families.STAGES,
           f"stage={config.stage!r}: expected one of {stages.STAGES + families.STAGES}")
  _require(config.stage not in ("pretrain",) + families.TEXT_STAGES
           or config.init_from is None,
           "init_from is for the stages after pretraining (sft, dpo, reward, classify, "
           "seq2seq)")
  families.validate(config)
  if config.stage in ("sft", "dpo", "reward"):
    a = config.align
    _require(a.train_file is not None, f"stage {config.stage!r} needs align.train_file")
    _check_number(config, "align.eval_fraction", 0, 1, low_open=True)
    _check_number(config, "align.beta", 0, low_open=True)
    _check_number(config, "align.label_smoothing", 0, 0.5)
    _check_number(config, "align.gamma", 0)
    _require(a.truncation in ("error", "drop", "truncate"),
             f"align.truncation={a.truncation!r}: expected 'error', 'drop' or 'truncate'")
    losses.get_preference(a.loss)
    _require(not (a.loss == "robust_dpo" and a.label_smoothing >= 0.5),
             "align.label_smoothing must be < 0.5 for robust_dpo")
  ModelConfig(vocab_size=1, **config.model.to_dict())  # Validates every model field and combination.
  _check_number(config, "train.peak_flops", 0, optional=True, low_open=True)
  mesh_shape = sharding.parse_shape(config.mesh.shape, jax.device_count())
  sharding.rules_from_config(config.mesh.rules)
  data_parallel = mesh_shape["data"] * mesh_shape["fsdp"]
  for key, size in (("train.batch_size / train.accum_steps", t.batch_size // t.accum_steps),
                    ("eval.batch_size", config.eval.batch_size)):
    _require(size % data_parallel == 0,
             f"{key}={size} is not divisible by the data-parallel size {data_parallel} "
             f"(mesh data x fsdp = {mesh_shape['data']} x {mesh_shape['fsdp']})")


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
    tokenizer = tokenizers.build(d.tokenizer, texts["train"],
                                 special_tokens=tuple(d.special_tokens),
                                 char_specials=d.char_specials, vocab_size=d.vocab_size)
    if path and jax.process_index() == 0:
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


def _first_nonfinite(start_step: int, per_step: list[dict]) -> str:
  """'step N: loss_sum=nan' for the first step in `per_step` with a non-finite value."""
  for i, m in enumerate(per_step):
    if m["nonfinite"]:
      bad = [f"{k}={v}" for k, v in m.items() if not np.isfinite(v)]
      return f"step {start_step + i}: {', '.join(bad) or 'non-finite value'}"
  return "unknown step"


def _train_record(per_step: list[dict]) -> dict:
  """One train-metrics record from per-step metric sums (skipped steps add zeros)."""
  sums = functools.reduce(metrics.add, per_step)
  sums.pop("nonfinite")
  good_steps = sums.pop("steps")
  grad_norm = sums.pop("grad_norm_sum") / good_steps if good_steps else float("nan")
  values = metrics.summarize(sums) if sums["weight_sum"] else {"loss": float("nan")}
  values["grad_norm"] = grad_norm
  return values


class NonFiniteError(FloatingPointError):
  """Training produced a non-finite loss or gradient under train.nonfinite='stop'."""


def train_and_evaluate(config, workdir: str, *, stop_at: int | None = None) -> dict:
  """Trains `config` in `workdir` (resuming if it holds a checkpoint).

  Args:
    stop_at: stop after this step as if preempted (checkpoint, no final eval). For tests.

  Returns:
    The final evaluation metrics (empty dict if stopped early).

  Raises:
    UserError: bad config or data, before anything compiles; or a locked workdir.
    Preempted: SIGTERM/SIGINT arrived; a checkpoint of the last finished step was saved.
    NonFiniteError: non-finite loss/gradients with train.nonfinite='stop'; nothing saved.
  """
  validate(config)
  mesh = sharding.make_mesh(config.mesh.shape)
  with run_files.WorkdirLock(workdir), preemption.StopRequest() as stop:
    changes = run_files.check_config_change(workdir, config)
    if config.stage == "pretrain":
      (tokenizer, tokens), start_params = load_data(config, workdir), None
    elif config.stage in families.STAGES:
      tokenizer, tokens, start_params = families.load_start(config, workdir)
    else:
      (tokenizer, start_params), tokens = stages.load_start(config, workdir), None
    if jax.process_index() == 0:
      run_files.write_config(workdir, config)
      run_files.append_run_info(workdir, run_files.run_info(changes))
    return _train(config, workdir, tokenizer, tokens, mesh, stop, stop_at, start_params)


def _train(config, workdir, tokenizer, tokens, mesh, stop, stop_at, start_params=None) -> dict:
  model_cfg = model_config(config, tokenizer.vocab_size)
  logging.info("model: %s", model_cfg)
  if model_cfg.family == "decoder":
    size = (f"{decoder.param_count(model_cfg):,} params "
            f"({decoder.param_count(model_cfg, embeddings=False):,} non-embedding)")
  else:
    size = f"{model_cfg.family}, {families.param_count(model_cfg, config.stage):,} params"
  lead = jax.process_index() == 0  # Only process 0 prints and writes files.
  if lead:
    print(f"model: {size}, {families.flops_per_token(model_cfg):.3g} train FLOPs/token, "
          f"{mesh.size} {jax.devices()[0].platform} device(s) on "
          f"{jax.process_count()} process(es), mesh {dict(mesh.shape)}", flush=True)

  model = decoder.Decoder(model_cfg)
  t = config.train
  optimizer = optim.build(config.optim, t.steps)
  rng = jax.random.PRNGKey(config.seed)
  init_rng, state_rng = jax.random.split(rng)
  rows = sharding.local_rows(t.batch_size, mesh)  # This process's share of each batch.
  if config.stage == "pretrain":
    loss_fn = _loss_fn(config)
    train_windows = windows.TrainWindows(tokens["train"], context=config.data.context,
                                         batch_size=t.batch_size, seed=config.seed)
    # The batch of step s is train_windows.batch(s - 1), a pure function of (seed, s); this
    # records that position so a resumed run can check it reads the same stream.
    data_state = lambda step: {"seed": config.seed, "examples_seen": step * t.batch_size,
                               "num_windows": train_windows.num_windows}
    make_state = lambda r: steps.create_state(decoder.init_params(model_cfg, r), optimizer,
                                              state_rng)
    eval_fn = functools.partial(evaluation.evaluate_tokens, model=model, loss_fn=loss_fn,
                                context=config.data.context, batch_size=config.eval.batch_size,
                                max_batches=config.eval.max_batches, mesh=mesh)
    evaluate = lambda params: eval_fn(params, tokens[config.eval.split])
    train_batch = functools.partial(train_windows.batch, rows=rows)
  else:
    if config.stage in families.STAGES:
      stage = families.build(config, tokenizer, model_cfg, tokens, start_params, mesh)
    else:
      stage = stages.build(config, workdir, tokenizer, model_cfg, start_params, init_rng, mesh)
    model, loss_fn, evaluate = stage.model, stage.loss_fn, stage.evaluate
    train_batch = lambda s: {k: v[rows] for k, v in stage.batches.batch(s).items()}
    data_state = lambda step: {"seed": config.seed, "stage": config.stage,
                               "examples_seen": step * t.batch_size,
                               "num_examples": stage.batches.num_examples}
    make_state = lambda r: steps.create_state(stage.init_params(r), optimizer, state_rng)
  # Abstract init, shardings from the logical axis rules, then each array is created on the
  # devices that hold it (jit with out_shardings): no host ever holds the whole state.
  abstract_state = jax.eval_shape(make_state, init_rng)
  if config.stage in families.STAGES or config.stage == "pretrain":
    specs = families.logical_axes(model_cfg, config.stage)
  else:  # sft, dpo, reward: the stage's own decoder-based model (reward adds a head).
    specs = sharding.logical_specs(model, jnp.zeros((1, config.data.context), jnp.int32))
  state_sharding = sharding.train_state_shardings(
      specs, abstract_state, mesh, sharding.rules_from_config(config.mesh.rules))
  if config.stage == "pretrain":
    init = jax.jit(make_state, out_shardings=state_sharding)
  else:  # Start params are an argument, not constants baked into the program.
    create = jax.jit(lambda params: steps.create_state(params, optimizer, state_rng),
                     out_shardings=state_sharding)
    init = lambda r: create(stage.init_params(r))
  abstract_state = sharding.with_shardings(abstract_state, state_sharding)

  mngr, restored = checkpoint.restore_latest_good(
      workdir, abstract_state,
      make_manager=lambda: checkpoint.manager(workdir, keep=t.keep_checkpoints))
  writer = metrics.Writer(workdir, enabled=lead)
  host_pending, skipped = [], 0  # Per-step metrics not yet in a record; skipped steps.
  # Train-loop seconds of earlier processes, counted from step `wall_from` (0 unless resumed
  # from a checkpoint saved before this was kept).
  wall_before, wall_from = 0.0, 0
  if restored is None:
    state, start = init(init_rng), 0
  else:
    state, meta = restored  # Restored straight into `state_sharding`, any saved mesh.
    start = int(meta["step"])
    if meta.get("data") != data_state(start) and not config.allow_config_change:
      raise ConfigError(f"the checkpoint at step {start} read data {meta.get('data')}, this "
                        f"run would read {data_state(start)}; pass "
                        "--config.allow_config_change=True to continue anyway")
    host_pending, skipped = meta["pending_metrics"], meta["skipped_steps"]
    if "train_wall_s" in meta:
      wall_before, wall_from = meta["train_wall_s"], meta["train_wall_s_from_step"]
    else:  # An older checkpoint: the time before `start` is unknown.
      wall_from = start
    if lead:
      print(f"resumed from step {start} of {workdir}", flush=True)
  writer.truncate_after(start)

  train_step = jax.jit(functools.partial(
      steps.train_step, model=model, optimizer=optimizer, loss_fn=loss_fn,
      accum_steps=t.accum_steps, skip_nonfinite=t.nonfinite == "skip",
      inject_nonfinite_at=t.inject_nonfinite_at), donate_argnames="state",
      out_shardings=(state_sharding, sharding.replicated(mesh)))
  schedule = optim.schedule(config.optim, t.steps)
  last = t.steps if stop_at is None else min(stop_at, t.steps)
  peak, _ = throughput.device_peak(config.train.peak_flops, model_cfg.dtype)
  progress = Progress(t.steps, tokens_per_step=t.batch_size * config.data.context,
                      devices=mesh.size, flops_per_token=decoder.flops_per_token(model_cfg),
                      peak_flops=peak, enabled=lead)
  pending, wall, final_eval, step, signal_name = [], time.perf_counter(), None, start, None
  for step in range(start + 1, last + 1):
    batch = sharding.put_local_batch(train_batch(step - 1), t.batch_size, mesh)
    state, step_metrics = train_step(state, batch)
    pending.append(step_metrics)  # Stays on device: fetching every step would stall.
    # Read the signal flag once per step: a signal arriving later in this iteration is
    # handled after the next step, which then saves (never "stopped" without a save).
    signal_name = stop.requested
    stopping = step == last or signal_name is not None
    save = step % t.checkpoint_every == 0 or stopping
    record = step % t.log_every == 0 or step == t.steps
    if record or save:
      per_step = [{k: float(v) for k, v in m.items()} for m in jax.device_get(pending)]
      pending = []
      if t.nonfinite == "stop" and any(m["nonfinite"] for m in per_step):
        raise NonFiniteError(f"non-finite training values at "
                             f"{_first_nonfinite(step - len(per_step) + 1, per_step)}; "
                             "stopped before saving (train.nonfinite='skip' skips such steps)")
      host_pending += per_step
    if record:
      skipped += int(sum(m["nonfinite"] for m in host_pending))
      values = _train_record(host_pending)
      values.update(learning_rate=float(schedule(step - 1)), skipped_steps=skipped)
      host_pending = []
      writer.write(step, "train", values)
      progress.update(step, loss=values["loss"])
    if step % t.eval_every == 0 or (step == t.steps and stop_at is None):
      ev = evaluate(state["params"])
      final_eval = ev if step == t.steps else None
      writer.write(step, config.eval.split, ev)
      progress.message(f"step {step}: {config.eval.split} loss {ev['loss']:.4f} "
                       + (f"perplexity {ev['perplexity']:.3f}" if "perplexity" in ev else
                          f"accuracy {ev['accuracy']:.3f}"))
    if save:
      # Metrics of steps since the last record travel with the checkpoint, so a resumed
      # run writes the same records as one that never stopped.
      checkpoint.save(mngr, step, state, {
          "step": step, "data": data_state(step), "pending_metrics": host_pending,
          "skipped_steps": skipped, "train_wall_s": wall_before + time.perf_counter() - wall,
          "train_wall_s_from_step": wall_from}, force=stopping)
    if stopping:
      break
  progress.close()
  mngr.wait_until_finished()
  wall = time.perf_counter() - wall  # This process's train loop.
  mngr.close()
  writer.close()
  if signal_name is not None and step < t.steps:
    raise preemption.Preempted(step, signal_name)
  if last < t.steps:
    return {}

  ev = final_eval or evaluate(state["params"])
  if config.stage == "reward":
    results = {"split": config.eval.split, **ev}
  elif config.stage in families.STAGES:
    results = stage.finish(state["params"], ev)
  else:
    results = finish(config, state["params"], model_cfg, tokenizer, ev)
  if config.stage != "pretrain":
    results["stage"], results["data_counts"] = config.stage, stage.counts
  results["train_wall_s"] = None if wall_from else wall_before + wall
  if wall_from:
    results["train_wall_s_partial"] = wall_before + wall
    results["train_wall_s_from_step"] = wall_from
  if lead:
    run_files.write_json(f"{workdir}/results.json", results)
  return results


def finish(config, params, model_cfg, tokenizer, ev: dict) -> dict:
  """The final evaluation `ev` and a text sample, as a JSON-able dict."""
  prompt = tokenizer.encode(config.sample.prompt)
  ids = generation.sample_text(params, model_cfg, prompt, num_tokens=config.sample.num_tokens,
                               temperature=config.sample.temperature,
                               rng=jax.random.PRNGKey(config.seed))
  return {"split": config.eval.split, **ev,
          "sample": {"prompt": config.sample.prompt, "text": tokenizer.decode(ids)}}
