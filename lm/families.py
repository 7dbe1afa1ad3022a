"""The encoder and encoder-decoder families' stages on the shared train loop.

`lm.train` runs every family with one loop; a stage here only chooses the model, batches,
loss, evaluation and final report, selected by `config.model.family` and `config.stage`:

  encoder          mlm              masked LM on text windows (`lm.data.mlm`), loss on the
                                    masked positions only.
                   classify         sequence classifier on labelled text (`lm.data.labelled`,
                                    or a prepared TFDS dataset, `lm.data.tfds_labelled`),
                                    usually init_from an mlm run; reports accuracy and the
                                    majority baseline.
  encoder_decoder  span_corruption  T5 span corruption of text windows
                                    (`lm.data.span_corruption`).
                   seq2seq          a task with a known answer (`lm.data.seq2seq.TASKS`);
                                    reports exact match of greedy and beam decoding.
"""

import dataclasses
import functools
import os
from typing import Callable

import flax.linen as nn
import jax
import numpy as np

from lm import beam_search, decoding, losses, metrics, run_files, sharding, stages, steps
from lm import tokenizers
from lm.data import instruct, labelled, mlm, seq2seq, sources, span_corruption, tfds_labelled
from lm.data import windows
from lm.errors import ConfigError
from lm.models import encoder, encoder_decoder
from lm.models.config import ModelConfig

FAMILY_STAGES = {"decoder": ("pretrain", "sft", "dpo", "reward"),
                 "encoder": ("mlm", "classify"),
                 "encoder_decoder": ("span_corruption", "seq2seq")}
STAGES = ("mlm", "classify", "span_corruption", "seq2seq")
TEXT_STAGES = ("mlm", "span_corruption")  # Read text like decoder pretraining.


@dataclasses.dataclass
class Stage(stages.Stage):
  finish: Callable  # (params, final eval) -> the results dict.


class _Batches:
  """batch(step) from a pure function of the step; num_examples for the resume check."""

  def __init__(self, fn, num_examples: int):
    self.batch, self.num_examples = fn, num_examples


def validate(config) -> None:
  family, stage = config.model.family, config.stage
  allowed = FAMILY_STAGES.get(family, ())
  if stage not in allowed:
    raise ConfigError(f"stage={stage!r} does not fit model.family={family!r} "
                      f"(its stages: {allowed})")
  if stage in STAGES and not config.data.char_specials and config.data.tokenizer == "char":
    raise ConfigError(f"stage {stage!r} needs special tokens: set data.char_specials=True")
  t = config.task
  if not 0 < t.mask_rate < 1 or not 0 < t.noise_density < 1 or t.mean_span <= 0:
    raise ConfigError("task.mask_rate and task.noise_density must be in (0, 1) and "
                      "task.mean_span > 0")
  if t.truncation not in ("error", "truncate"):
    raise ConfigError(f"task.truncation={t.truncation!r}: expected 'error' or 'truncate'")
  if stage == "seq2seq":
    if t.seq2seq not in seq2seq.TASKS:
      raise ConfigError(f"task.seq2seq={t.seq2seq!r}: expected one of {sorted(seq2seq.TASKS)}")
    if not 1 <= t.min_len <= t.max_len < config.data.context:
      raise ConfigError(f"need 1 <= task.min_len <= task.max_len < data.context, got "
                        f"{t.min_len}, {t.max_len}, {config.data.context}")
  if t.builtin not in (None, "real_vs_shuffled"):
    raise ConfigError(f"task.builtin={t.builtin!r}: expected None or 'real_vs_shuffled'")
  if t.tfds_name is not None:
    if t.train_file is not None:
      raise ConfigError(f"task.tfds_name={t.tfds_name!r} and task.train_file="
                        f"{t.train_file!r}: set one of them")
    fields = {"tfds_train_split": t.tfds_train_split, "text_feature": t.text_feature,
              "label_feature": t.label_feature, "tfds_name": t.tfds_name}
    for key, value in fields.items():
      if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"task.{key}={value!r}: expected a non-empty string")
    if t.tfds_eval_split is not None and not t.tfds_eval_split.strip():
      raise ConfigError("task.tfds_eval_split='': expected a split name or None")
    if t.eval_file is not None:
      raise ConfigError("task.eval_file is for task.train_file; with task.tfds_name set "
                        "task.tfds_eval_split")
  if stage == "classify" and t.train_file is None and t.builtin is None and t.tfds_name is None:
    raise ConfigError("stage 'classify' needs task.train_file (CSV/JSONL text,label), "
                      "task.tfds_name (a prepared TFDS dataset) or "
                      "task.builtin='real_vs_shuffled'")


def _specials(tokenizer, *names):
  ids = tokenizer.special_ids
  missing = [n for n in names if n not in ids]
  if missing:
    raise ConfigError(f"the tokenizer lacks special tokens {missing}: add them to "
                      "data.special_tokens")
  return [ids[n] for n in names]


def _sentinels(tokenizer):
  ids = tokenizer.special_ids
  return [ids[n] for n in sorted((n for n in ids if n.startswith("<extra_id_")),
                                 key=lambda n: int(n[len("<extra_id_"):-1]))]


def _classify_examples(config):
  t = config.task
  if t.train_file is not None:
    train = labelled.load(t.train_file)
    if t.eval_file is not None:
      return train, labelled.load(t.eval_file)
    return stages._split(train, t.eval_fraction, t.train_file)
  d = config.data
  if t.tfds_name is not None:
    kw = dict(data_dir=d.data_dir, text_feature=t.text_feature, label_feature=t.label_feature)
    train, _ = tfds_labelled.load(t.tfds_name, t.tfds_train_split, **kw)
    if t.tfds_eval_split is not None:
      return train, tfds_labelled.load(t.tfds_name, t.tfds_eval_split, **kw)[0]
    return stages._split(train, t.eval_fraction, f"tfds:{t.tfds_name}/{t.tfds_train_split}")
  out = []
  for split in ("train", config.eval.split):
    text = sources.load_text(d.source, split, data_dir=d.data_dir, manual_dir=d.manual_dir,
                             text_file=d.text_file, split_fractions=tuple(d.split_fractions))
    pairs = labelled.real_vs_shuffled(text, np.random.default_rng([config.seed, len(out)]))
    out.append([(f"{t.builtin}:{split}:{i}", x, y) for i, (x, y) in enumerate(pairs)])
  return out[0], out[1]


def load_start(config, workdir: str):
  """(tokenizer, {split: tokens} or None, start params or None) of a family stage."""
  from lm import train  # Deferred: lm.train imports this module.
  stage, d = config.stage, config.data
  if stage in TEXT_STAGES:
    if config.init_from is not None:
      raise ConfigError("init_from is for the stages after pretraining")
    tokenizer, tokens = train.load_data(config, workdir)
    return tokenizer, tokens, None
  path = run_files.tokenizer_path(workdir)
  start = None
  if config.init_from is not None:
    tokenizer, start = stages.load_init_from(config)
  elif os.path.exists(path):
    tokenizer = tokenizers.load(path)
  elif stage == "seq2seq":
    alphabet = config.task.alphabet
    answer = seq2seq.TASKS[config.task.seq2seq]
    tokenizer = tokenizers.build(d.tokenizer, alphabet + answer(alphabet),
                                 special_tokens=tuple(d.special_tokens), char_specials=True)
  else:
    train_examples, _ = _classify_examples(config)
    tokenizer = tokenizers.build(d.tokenizer, "".join(x for _, x, _ in train_examples),
                                 special_tokens=tuple(d.special_tokens),
                                 char_specials=d.char_specials)
  os.makedirs(workdir, exist_ok=True)
  tokenizers.save(tokenizer, path)
  return tokenizer, None, start


def labels(config, train=None) -> tuple[str, ...]:
  """The classify label set: task.labels, else a TFDS dataset's ClassLabel names (in its
  order, even those its train split lacks), else the sorted labels of `train` (loaded when
  None)."""
  t = config.task
  if not t.labels and t.tfds_name is not None:
    b = tfds_labelled.builder(t.tfds_name, config.data.data_dir)
    return tfds_labelled.label_names(b, t.label_feature)
  if train is None:
    train, _ = _classify_examples(config)
  return labelled.label_set(train, t.labels)


def model_config(config, vocab_size: int) -> ModelConfig:
  extra = {}
  if config.stage == "classify":
    extra["num_labels"] = len(labels(config))
  return ModelConfig(vocab_size=vocab_size, **config.model.to_dict(), **extra)


def init_params(cfg: ModelConfig, rng, stage: str = "pretrain"):
  """Fresh params of the model a family stage trains."""
  if cfg.family == "encoder":
    return encoder.init_params(cfg, rng, head="sequence" if stage == "classify" else "mlm")
  if cfg.family == "encoder_decoder":
    return encoder_decoder.init_params(cfg, rng)
  from lm.models import decoder
  return decoder.init_params(cfg, rng)


def logical_axes(cfg: ModelConfig, stage: str = "pretrain"):
  """PartitionSpecs of logical axis names, a pytree like `init_params(cfg, rng, stage)`."""
  from lm.models import decoder
  if cfg.family == "encoder":
    boxed = encoder.abstract_params(cfg, head="sequence" if stage == "classify" else "mlm")
  elif cfg.family == "encoder_decoder":
    boxed = encoder_decoder.abstract_params(cfg)
  else:
    boxed = decoder.abstract_params(cfg)
  return nn.get_partition_spec(boxed)


def module(cfg: ModelConfig, stage: str = "pretrain"):
  if cfg.family == "encoder":
    return encoder.EncoderModel(cfg, head="sequence" if stage == "classify" else "mlm")
  if cfg.family == "encoder_decoder":
    return encoder_decoder.EncoderDecoder(cfg)
  from lm.models import decoder
  return decoder.Decoder(cfg)


def param_count(cfg: ModelConfig, stage: str = "pretrain") -> int:
  shapes = jax.eval_shape(lambda: init_params(cfg, jax.random.key(0), stage))
  return sum(x.size for x in jax.tree.leaves(shapes))


def flops_per_token(cfg: ModelConfig, length: int | None = None) -> float:
  """Training FLOPs per token (3x forward, matmuls only), as `decoder.flops_per_token`.

  Encoder: every query attends to all T keys (bidirectional: no causal half), 2 * 2 * heads
  * head_dim * T per layer. Encoder-decoder: per token of a source and a target both of
  length T: encoder layers as above, decoder self-attention the causal (T + 1) / 2 keys,
  cross-attention T source keys; weight matmuls counted once per token on their side.
  """
  from lm.models import decoder
  if cfg.family == "decoder":
    return decoder.flops_per_token(cfg, length)
  length = length or cfg.max_len
  per_key = 2 * 2 * cfg.num_heads * cfg.dims_per_head  # Scores + value mixing, per key.
  params = jax.eval_shape(lambda: init_params(cfg, jax.random.key(0)))
  unembed = cfg.width * cfg.vocab_size
  if cfg.family == "encoder":
    weights = _matmul_params(params["encoder"]) + unembed  # MLM output projection.
    return 3 * (2 * weights + cfg.num_layers * per_key * length)
  enc = 2 * _matmul_params(params["encoder"]) + cfg.encoder_layers * per_key * length
  dec = (2 * (_matmul_params(params["decoder"]) + unembed)
         + cfg.num_layers * per_key * ((length + 1) / 2 + length))
  return 3 * (enc + dec) / 2  # Per token of the 2 * length tokens of a (source, target).


def _matmul_params(tree) -> int:
  """Parameters of the weight matrices (lookup tables and vectors excluded)."""
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return sum(x.size for path, x in leaves
             if x.ndim >= 2 and not any("embedding" in str(k) for k in path))


def _eval_rows(model, loss_fn, mesh, batch_size):
  step = jax.jit(functools.partial(steps.eval_step, model=model, loss_fn=loss_fn))
  return lambda params, rows: stages.evaluate_rows(step, params, rows, batch_size=batch_size,
                                                   mesh=mesh)


def build(config, tokenizer, model_cfg, tokens, start_params, mesh) -> Stage:
  """The stage `config.stage` of the encoder or encoder-decoder family."""
  loss_fn = functools.partial(losses.get(config.loss.name),
                              label_smoothing=config.loss.label_smoothing,
                              z_loss=config.loss.z_loss, per_sequence=config.loss.per_sequence)
  model = module(model_cfg, config.stage)
  fresh = lambda rng: init_params(model_cfg, rng, config.stage)  # noqa: E731
  build_fn = {"mlm": _mlm, "classify": _classify, "span_corruption": _span,
              "seq2seq": _seq2seq}[config.stage]
  return build_fn(config, tokenizer, model_cfg, model, loss_fn, tokens, start_params, fresh,
                  mesh)


def _mlm(config, tokenizer, cfg, model, loss_fn, tokens, start, fresh, mesh) -> Stage:
  t, context = config.task, config.data.context
  (mask_id,) = _specials(tokenizer, "<mask>")
  special = set(tokenizer.special_ids.values())
  ordinary = np.array([i for i in range(tokenizer.vocab_size) if i not in special])
  mask = functools.partial(mlm.mask_tokens, mask_id=mask_id, random_ids=ordinary,
                           rate=t.mask_rate)
  train = windows.TrainWindows(tokens["train"], context=context,
                               batch_size=config.train.batch_size, seed=config.seed)

  def batch(step):
    x = train.batch(step)["inputs"]
    out = mask(x, np.random.default_rng([config.seed, step]))
    return {**out, "padding_mask": np.ones(x.shape, bool)}

  step_fn = jax.jit(functools.partial(steps.eval_step, model=model, loss_fn=loss_fn))

  def evaluate(params):
    total = None
    for i, b in enumerate(windows.eval_batches(tokens[config.eval.split], context=context,
                                               batch_size=config.eval.batch_size)):
      if config.eval.max_batches is not None and i >= config.eval.max_batches:
        break
      real = np.concatenate([b["weights"][:, :1] > 0, b["weights"][:, :-1] > 0], 1)
      rows = {**mask(b["inputs"], np.random.default_rng([config.seed, 2**31, i]),
                     maskable=real), "padding_mask": real}
      total = metrics.add(total, step_fn(params, sharding.put_batch(rows, mesh)))
    return metrics.summarize(jax.device_get(total))

  finish = lambda params, ev: {"split": config.eval.split, **ev}  # noqa: E731
  return Stage(model, loss_fn, _Batches(batch, train.num_windows), evaluate, fresh, {},
               finish)


def _classify(config, tokenizer, cfg, model, loss_fn, tokens, start, fresh, mesh) -> Stage:
  t, context = config.task, config.data.context
  cls_id, pad_id = _specials(tokenizer, "<cls>", "<pad>")
  train, held_out = _classify_examples(config)
  label_names = labels(config, train)
  rows, counts = {}, {}
  for split, examples in (("train", train), ("eval", held_out)):
    rows[split], counts[split] = labelled.encode(examples, tokenizer, label_names,
                                                 context=context, cls_id=cls_id,
                                                 pad_id=pad_id, truncation=t.truncation)
    stages._report(f"classify {split}", counts[split])
  if start is not None:  # Encoder from the mlm run, a fresh classifier head.
    init = lambda rng: {**fresh(rng), "encoder": start["encoder"]}  # noqa: E731
  else:
    init = fresh
  eval_fn = _eval_rows(model, loss_fn, mesh, config.eval.batch_size)
  evaluate = lambda params: eval_fn(params, rows["eval"])  # noqa: E731
  eval_labels = rows["eval"]["targets"][:, 0]
  majority = float(np.bincount(eval_labels, minlength=len(label_names)).max() / len(eval_labels))

  def finish(params, ev):
    return {"split": "eval", **ev, "labels": list(label_names),
            "majority_baseline": majority}

  batches = instruct.RowBatches(rows["train"], batch_size=config.train.batch_size,
                                seed=config.seed)
  return Stage(model, loss_fn, batches, evaluate, init, counts, finish)


def _target_len(context: int, t) -> int:
  noise = min(max(int(np.round(context * t.noise_density)), 1), context - 1)
  spans = max(int(np.round(noise / t.mean_span)), 1)
  return noise + spans + 1


def _show(tokenizer, ids) -> str:
  """Text of `ids` with special tokens written by name."""
  names = {v: k for k, v in tokenizer.special_ids.items()}
  return "".join(names[i] if i in names else tokenizer.decode([i]) for i in map(int, ids))


def _span(config, tokenizer, cfg, model, loss_fn, tokens, start, fresh, mesh) -> Stage:
  t, context = config.task, config.data.context
  bos, eos, pad = _specials(tokenizer, "<bos>", "<eos>", "<pad>")
  sentinels = _sentinels(tokenizer)
  target_len = _target_len(context, t)
  # The encoder input keeps non-noise tokens + a sentinel per span: <= context.
  make = functools.partial(seq2seq.rows, source_len=context, target_len=target_len, bos=bos,
                           eos=eos, pad=pad)

  def corrupt(windows_, rng):
    pairs = []
    for w in windows_:
      noise = span_corruption.random_spans_noise_mask(
          len(w), rng, noise_density=t.noise_density, mean_noise_span_length=t.mean_span)
      pairs.append(span_corruption.corrupt(w, noise, sentinels))
    return make(pairs)

  train = windows.TrainWindows(tokens["train"], context=context,
                               batch_size=config.train.batch_size, seed=config.seed)
  batch = lambda step: corrupt(train.batch(step)["inputs"],  # noqa: E731
                               np.random.default_rng([config.seed, step]))
  eval_tokens = tokens[config.eval.split]
  n = len(eval_tokens) // context
  if config.eval.max_batches is not None:
    n = min(n, config.eval.max_batches * config.eval.batch_size)
  eval_rows = corrupt(eval_tokens[:n * context].reshape(n, context),
                      np.random.default_rng([config.seed, 2**31]))
  eval_fn = _eval_rows(model, loss_fn, mesh, config.eval.batch_size)

  def finish(params, ev):
    row = {k: v[:1] for k, v in eval_rows.items()}
    m = encoder_decoder.decoding_model(cfg, params, row["inputs"], row["padding_mask"])
    out = decoding.generate(m, [[bos]], max_new_tokens=target_len, stop_tokens=[eos],
                            pad_id=pad).lists()[0]
    src = row["inputs"][0][row["padding_mask"][0]]
    return {"split": config.eval.split, **ev,
            "example": {"input": _show(tokenizer, src), "greedy_target": _show(tokenizer, out)}}

  return Stage(model, loss_fn, _Batches(batch, train.num_windows),
               lambda params: eval_fn(params, eval_rows), fresh, {}, finish)


def _seq2seq(config, tokenizer, cfg, model, loss_fn, tokens, start, fresh, mesh) -> Stage:
  t, context = config.task, config.data.context
  bos, eos, pad = _specials(tokenizer, "<bos>", "<eos>", "<pad>")
  answer = seq2seq.TASKS[t.seq2seq]
  target_len = t.max_len + 1
  strings = functools.partial(seq2seq.random_strings, alphabet=t.alphabet, min_len=t.min_len,
                              max_len=t.max_len)
  held_out = strings(np.random.default_rng([config.seed, 2**31]), t.num_eval)
  held = set(held_out)
  make = lambda xs: seq2seq.rows(  # noqa: E731
      [(tokenizer.encode(x), tokenizer.encode(answer(x))) for x in xs], source_len=context,
      target_len=target_len, bos=bos, eos=eos, pad=pad)

  def batch(step):
    rng = np.random.default_rng([config.seed, step])
    xs = []
    while len(xs) < config.train.batch_size:  # Held-out strings never appear in training.
      xs += [x for x in strings(rng, config.train.batch_size) if x not in held]
    return make(xs[:config.train.batch_size])

  eval_rows = make(held_out)
  eval_fn = _eval_rows(model, loss_fn, mesh, config.eval.batch_size)

  def exact_match(params, beam: bool) -> float:
    hits, size = 0, config.eval.batch_size
    for first in range(0, len(held_out), size):
      xs = held_out[first:first + size]
      xs = xs + [xs[0]] * (size - len(xs))  # One compiled shape.
      rows = make(xs)
      m = encoder_decoder.decoding_model(cfg, params, rows["inputs"], rows["padding_mask"])
      if beam:
        out = beam_search.beam_search(m, [[bos]] * size, beam_size=t.beam_size,
                                      max_new_tokens=target_len, stop_tokens=[eos],
                                      pad_id=pad).best()
      else:
        out = decoding.generate(m, [[bos]] * size, max_new_tokens=target_len,
                                stop_tokens=[eos], pad_id=pad).lists()
      n = min(size, len(held_out) - first)
      hits += sum(o == tokenizer.encode(answer(x)) + [eos] for o, x in zip(out[:n], xs[:n]))
    return hits / len(held_out)

  def evaluate(params):
    return {**eval_fn(params, eval_rows), "exact_match_greedy": exact_match(params, False)}

  def finish(params, ev):
    return {"split": "held_out", **ev, "exact_match_beam": exact_match(params, True),
            "held_out_examples": len(held_out), "task": t.seq2seq}

  if start is not None:
    fresh = lambda rng: start  # noqa: E731
  return Stage(model, loss_fn, _Batches(batch, 0), evaluate, fresh, {"eval": len(held_out)},
               finish)


def source_decoding(cfg: ModelConfig, params, tokenizer, sources):
  """(decoding model over `sources` (token lists), one BOS prompt per source, [EOS] stop
  tokens) for `lm.generation`."""
  bos, eos, pad = _specials(tokenizer, "<bos>", "<eos>", "<pad>")
  longest = max(len(s) for s in sources)
  tokens = np.full((len(sources), longest), pad, np.int32)
  for i, s in enumerate(sources):
    tokens[i, :len(s)] = s
  mask = np.arange(longest)[None] < np.array([len(s) for s in sources])[:, None]
  model = encoder_decoder.decoding_model(cfg, params, tokens, mask)
  return model, [[bos]] * len(sources), [eos]


def evaluate_run(workdir: str, step: int | None = None) -> dict:
  """Re-evaluates an encoder or encoder-decoder run's checkpoint as its stage does at the
  end of training (classify: accuracy and majority baseline; seq2seq: exact match)."""
  from lm import train  # Deferred: lm.train imports this module.
  config, tokenizer, model_cfg, params = run_files.load_run(workdir, step)
  tokens = train.load_data(config, workdir)[1] if config.stage in TEXT_STAGES else None
  stage = build(config, tokenizer, model_cfg, tokens, None, sharding.data_mesh())
  return stage.finish(params, stage.evaluate(params))
