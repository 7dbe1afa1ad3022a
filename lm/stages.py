"""Fine-tuning stages on the shared train step: instruction tuning and preference alignment.

`lm.train` runs every stage with one loop (`steps.train_step`, checkpoints, resume); a stage
only chooses the batches, the loss and the evaluation:

  sft     instruction rows (`lm.data.instruct`), cross entropy on response tokens only.
  dpo     interleaved chosen/rejected rows (`lm.data.preference`), a preference loss from
          `lm.losses.PREFERENCE_LOSSES` (align.loss). The reference is the starting params;
          its log-probs are computed once at stage start and cached in
          `<workdir>/reference_logprobs.npz`, so training holds one model.
  reward  the same pairs, Bradley-Terry loss on a scalar head (`lm.reward`).
"""

import dataclasses
import functools
import os
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from lm import losses, metrics, run_files, sharding, steps, tokenizers
from lm.data import instruct, preference
from lm.errors import ConfigError, DataError
from lm.models import decoder

STAGES = ("pretrain", "sft", "dpo", "reward")


@dataclasses.dataclass
class Stage:
  model: object  # A flax module: model.apply({'params': p}, inputs, ...) -> (out, aux).
  loss_fn: Callable  # (logits, targets, weights, [reference_logprobs]) -> sums.
  batches: instruct.RowBatches  # batch(step) and num_examples.
  evaluate: Callable  # params -> dict of metrics.
  init_params: Callable  # rng -> the params a fresh run starts from.
  counts: dict  # Data counts (examples, truncated, dropped) for the log and results.


def load_start(config, workdir: str):
  """(tokenizer, start params or None, model fields of init_from) for a post-training stage.

  With init_from, the tokenizer is the one saved there (copied into `workdir`); otherwise a
  fresh 'byte' tokenizer (a 'char' vocabulary would need a text to fit on).
  """
  path = run_files.tokenizer_path(workdir)
  if config.init_from is None:
    if config.data.tokenizer != "byte" and not os.path.exists(path):
      raise ConfigError(f"stage {config.stage!r} without init_from needs data.tokenizer='byte'")
    tokenizer = (tokenizers.load(path) if os.path.exists(path)
                 else tokenizers.build("byte", "",
                                       special_tokens=tuple(config.data.special_tokens)))
    tokenizers.save(tokenizer, path)
    return tokenizer, None
  tokenizer, params = load_init_from(config)
  tokenizers.save(tokenizer, path)
  return tokenizer, params


def load_init_from(config):
  """(tokenizer, params) of the latest checkpoint of `config.init_from`, whose model config
  must equal this one's (a later stage continues the same network)."""
  if not os.path.isdir(config.init_from):
    raise ConfigError(f"init_from={config.init_from!r}: no such workdir")
  start_config, tokenizer, _, params = run_files.load_run(config.init_from)
  old, new = start_config.model.to_dict(), config.model.to_dict()
  changes = run_files.config_changes(old, new, "model.")
  if changes:
    raise ConfigError(f"the model of init_from={config.init_from} differs from this config "
                      f"({'; '.join(changes)}); pass the same --config.model.* values")
  return tokenizer, params


def _split(items: list, fraction: float, where: str):
  """(train, held out): the last `fraction` of `items` in a fixed shuffled order."""
  order = np.random.default_rng(0).permutation(len(items))
  n_eval = int(round(len(items) * fraction))
  if n_eval == 0 or n_eval == len(items):
    raise DataError(f"{where}: align.eval_fraction={fraction} of {len(items)} examples "
                    "leaves an empty train or eval set")
  items = [items[i] for i in order]
  return items[:-n_eval], items[-n_eval:]


def _read(config, load):
  a = config.align
  if a.train_file is None:
    raise ConfigError(f"stage {config.stage!r} needs align.train_file")
  train = load(a.train_file)
  if a.eval_file is not None:
    return train, load(a.eval_file)
  return _split(train, a.eval_fraction, a.train_file)


def _report(name: str, counts: dict) -> None:
  print(f"{name}: " + ", ".join(f"{v} {k}" for k, v in counts.items()), flush=True)


def build(config, workdir: str, tokenizer, model_cfg, start_params, init_rng, mesh) -> Stage:
  """The stage `config.stage` ('sft', 'dpo' or 'reward') over `model_cfg`."""
  model = decoder.Decoder(model_cfg)
  if start_params is None:
    init_params = lambda rng: decoder.init_params(model_cfg, rng)  # noqa: E731
  else:
    init_params = lambda rng: start_params  # noqa: E731
  if config.stage == "sft":
    return _sft(config, tokenizer, model, init_params, mesh)
  if config.stage == "dpo":
    return _dpo(config, workdir, tokenizer, model, init_params, init_rng, mesh)
  if config.stage == "reward":
    from lm import reward  # Deferred: only this stage needs the scalar head.
    return reward.stage(config, tokenizer, model_cfg, start_params, mesh)
  raise ConfigError(f"stage={config.stage!r}: expected one of {STAGES}")


def _sft(config, tokenizer, model, init_params, mesh) -> Stage:
  a, context = config.align, config.data.context
  template = instruct.ChatTemplate.from_config(a.template)
  train, held_out = _read(config, instruct.load_examples)
  rows, counts = {}, {}
  for split, examples in (("train", train), ("eval", held_out)):
    encoded, counts[split] = instruct.encode_examples(examples, tokenizer, template,
                                                      context=context, truncation=a.truncation)
    rows[split] = (instruct.pack if a.packing else instruct.pad)(encoded, context=context)
    counts[split]["rows"] = len(rows[split]["inputs"])
    _report(f"sft {split}", counts[split])
  loss_fn = functools.partial(losses.cross_entropy, label_smoothing=config.loss.label_smoothing,
                              z_loss=config.loss.z_loss, per_sequence=config.loss.per_sequence)
  step = jax.jit(functools.partial(steps.eval_step, model=model, loss_fn=loss_fn))

  def evaluate(params):
    return evaluate_rows(step, params, rows["eval"], batch_size=config.eval.batch_size,
                         mesh=mesh)

  batches = instruct.RowBatches(rows["train"], batch_size=config.train.batch_size,
                                seed=config.seed)
  return Stage(model, loss_fn, batches, evaluate, init_params, counts)


def _preference_loss(config):
  a = config.align
  losses.get_preference(a.loss)
  return functools.partial(losses.preference, name=a.loss, beta=a.beta,
                           label_smoothing=a.label_smoothing, gamma=a.gamma)


def pair_rows(config, tokenizer):
  """{'train', 'eval'}: interleaved preference rows, and their counts."""
  a = config.align
  template = instruct.ChatTemplate.from_config(a.template)
  train, held_out = _read(config, preference.load_pairs)
  rows, counts = {}, {}
  for split, pairs in (("train", train), ("eval", held_out)):
    rows[split], counts[split] = preference.encode_pairs(
        pairs, tokenizer, template, context=config.data.context, truncation=a.truncation)
    _report(f"{config.stage} {split}", counts[split])
  return rows, counts


@functools.lru_cache(maxsize=4)
def _logprob_fn(model):
  def fn(params, batch):
    logits, _ = model.apply({"params": params}, batch["inputs"],
                            positions=batch["positions"], segment_ids=batch["segment_ids"])
    logp, _ = losses.sequence_logprobs(logits=logits, targets=batch["targets"],
                                       weights=batch["weights"])
    return logp
  return jax.jit(fn)


def sequence_logprobs(model, params, rows: dict, *, batch_size: int, mesh) -> np.ndarray:
  """[rows] log-prob of each row's weighted tokens under `params`."""
  fn, out = _logprob_fn(model), []
  n = len(rows["inputs"])
  for batch in instruct.fixed_batches(rows, batch_size=batch_size):
    out.append(np.asarray(fn(params, sharding.put_batch(batch, mesh))))
  return np.concatenate(out)[:n]


@functools.lru_cache(maxsize=4)
def _kl_fn(model):
  def fn(params, reference, batch):
    kwargs = dict(positions=batch["positions"], segment_ids=batch["segment_ids"])
    p, _ = model.apply({"params": params}, batch["inputs"], **kwargs)
    q, _ = model.apply({"params": reference}, batch["inputs"], **kwargs)
    logp, logq = jax.nn.log_softmax(p), jax.nn.log_softmax(q)
    kl = (jnp.exp(logp) * (logp - logq)).sum(-1)
    return (kl * batch["weights"]).sum(), batch["weights"].sum()
  return jax.jit(fn)


def token_kl(model, params, reference, rows: dict, *, batch_size: int, mesh) -> float:
  """Mean over response tokens of KL(policy(. | context) || reference(. | context))."""
  fn, kl, tokens = _kl_fn(model), 0.0, 0.0
  for batch in instruct.fixed_batches(rows, batch_size=batch_size):
    a, b = fn(params, reference, sharding.put_batch(batch, mesh))
    kl, tokens = kl + float(a), tokens + float(b)
  return kl / max(tokens, 1.0)


def _dpo(config, workdir, tokenizer, model, init_params, init_rng, mesh) -> Stage:
  rows, counts = pair_rows(config, tokenizer)
  # A host copy: the train step donates the state, which may hold the starting buffers.
  reference = jax.tree.map(np.array, init_params(init_rng))
  batch_rows = 2 * config.eval.batch_size
  if config.align.loss not in losses.REFERENCE_FREE:
    path = os.path.join(workdir, "reference_logprobs.npz")
    cached = dict(np.load(path)) if os.path.exists(path) else {}
    for split in ("train", "eval"):
      n = len(rows[split]["inputs"])
      if cached.get(split) is None or len(cached[split]) != n:
        cached[split] = sequence_logprobs(model, reference, rows[split],
                                          batch_size=batch_rows, mesh=mesh)
      rows[split]["reference_logprobs"] = cached[split].astype(np.float32)
    np.savez(path, **cached)
  loss_fn = _preference_loss(config)
  step = jax.jit(functools.partial(steps.eval_step, model=model, loss_fn=loss_fn))

  def evaluate(params):
    out = evaluate_rows(step, params, rows["eval"], batch_size=config.eval.batch_size,
                        mesh=mesh, group=2)
    out["kl_per_token"] = token_kl(model, params, reference, rows["eval"],
                                   batch_size=batch_rows, mesh=mesh)
    return out

  batches = instruct.RowBatches(rows["train"], batch_size=config.train.batch_size,
                                seed=config.seed, group=2)
  return Stage(model, loss_fn, batches, evaluate, init_params, counts)


def evaluate_rows(step, params, rows: dict, *, batch_size: int, mesh, group: int = 1) -> dict:
  """`lm.metrics.summarize` of a jitted eval `step`'s sums over fixed batches of `rows`."""
  total = None
  for batch in instruct.fixed_batches(rows, batch_size=batch_size, group=group):
    total = metrics.add(total, step(params, sharding.put_batch(batch, mesh)))
  return metrics.summarize(jax.device_get(total))
