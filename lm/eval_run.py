"""Evaluating a trained model: load it once, then score splits (perplexity) or MMLU.

`load_workdir` is the one place that turns a run into a `LoadedModel` (scorer, tokenizer,
maximum length); another loader (e.g. an imported Hugging Face checkpoint) only has to
return the same dataclass for the tasks below to work on it.
"""

import dataclasses
import json
import os

from lm import checkpoint, evaluation, multiple_choice, run_files
from lm.data import sources
from lm.errors import DataError
from lm.models import decoder


@dataclasses.dataclass(frozen=True)
class LoadedModel:
  scorer: evaluation.Scorer
  tokenizer: object  # lm.tokenizers.Tokenizer
  max_len: int
  info: dict  # What was loaded, for the results files (params, step, tokenizer kind).
  config: object = None  # The run's config, where there is one (its data source).


def load_workdir(workdir: str, step: int | None = None) -> LoadedModel:
  """The latest (or `step`) checkpoint of a training run, ready to score."""
  if step is None:  # The latest checkpoint, which is not train.steps in a stopped run.
    mngr = checkpoint.manager(workdir, async_save=False)
    step = mngr.latest_step()
    mngr.close()
  config, tokenizer, model_cfg, params = run_files.load_run(workdir, step)
  scorer = evaluation.decoder_scorer(decoder.Decoder(model_cfg), params)
  info = {"workdir": workdir, "params": decoder.param_count(model_cfg),
          "tokenizer": tokenizer.to_json()["kind"], "vocab_size": tokenizer.vocab_size,
          "step": step, "of_steps": config.train.steps}
  return LoadedModel(scorer, tokenizer, model_cfg.max_len, info, config)


def load_hf(directory: str) -> LoadedModel:
  """An imported Hugging Face decoder checkpoint (lm.hf), ready to score."""
  from lm import hf  # Deferred: only this path needs the Hugging Face libraries.
  model_cfg, params, tokenizer = hf.load(directory)
  if tokenizer is None:
    raise DataError(f"{directory} has no tokenizer files: cannot turn text into tokens")
  if model_cfg.family != "decoder":
    raise DataError(f"{directory} holds a {model_cfg.family} model; scoring texts and "
                    "multiple choice by log-likelihood needs a decoder checkpoint (GPT-2)")
  scorer = evaluation.decoder_scorer(decoder.Decoder(model_cfg), params)
  info = {"hf_checkpoint": directory, "params": decoder.param_count(model_cfg),
          "tokenizer": tokenizer.to_json()["kind"], "vocab_size": tokenizer.vocab_size}
  return LoadedModel(scorer, tokenizer, model_cfg.max_len, info)


def hf_perplexity(directory: str, text_file: str | None, *, output: str | None,
                  batch_size: int) -> dict:
  """Perplexity and bits per byte of a Hugging Face checkpoint on a text file (the protocol
  of lm/hf/evaluate.py); printed, and written to `output` if given."""
  from lm.hf import evaluate  # Deferred: only this path needs the Hugging Face libraries.
  if not text_file:
    raise DataError("--hf_checkpoint perplexity needs --text_file")
  r = evaluate.evaluate_file(directory, text_file, batch_size=batch_size)
  if output:
    run_files.write_json(output, r)
  print(f"{text_file}: perplexity {r['perplexity']:.3f} | {r['bits_per_byte']:.4f} bits per "
        f"byte | {r['nll']:.4f} nats/token | {r['tokens']:.0f} tokens, {r['bytes']} bytes, "
        f"windows of {r['context']}" + (f" -> {output}" if output else ""))
  return r


def print_perplexity(results: dict[str, dict]) -> None:
  for split, r in results.items():
    print(f"{split}: loss {r['nll']:.4f} nats/token | perplexity {r['perplexity']:.2f} | "
          f"bits/byte {r['bits_per_byte']:.4f} | word perplexity {r['word_perplexity']:.2f} | "
          f"{r['tokens']} tokens | {r['protocol']['description']}")


def print_mmlu(r: dict, shots: int, path: str) -> None:
  for subject, s in r["subjects"].items():
    print(f"{subject:45s} n={s['n']:4d} acc_letter {s['acc_letter']:.3f} acc {s['acc']:.3f} "
          f"acc_norm {s['acc_norm']:.3f}")
  for avg in ("macro", "micro"):
    print(f"{avg} average: " + " ".join(f"{k} {r[avg][k]:.3f}"
                                        for k in ("acc_letter", "acc", "acc_norm")))
  n, acc = r["micro"]["n"], r["micro"]["acc_letter"]
  print(f"{n} questions, {shots}-shot; chance is {r['chance']:.1%} and acc_letter "
        f"{acc:.1%} +- {(acc * (1 - acc) / n) ** 0.5:.1%} (1 s.e.): a small model is expected "
        f"near chance ({r['note']}) -> {path}")


def default_prefix(tokenizer) -> str | None:
  """'<eos>' for the word tokenizer (PTB convention: the text follows a line end), else
  None: the other tokenizers' models never saw a BOS token in training."""
  return "<eos>" if tokenizer.to_json()["kind"] == "word" else None


def perplexity(model: LoadedModel, workdir: str, splits, *, stride: int | None = None,
               prefix: str | None = "auto", batch_size: int = 32) -> dict[str, dict]:
  """Scores each split of the run's data source; writes `<workdir>/eval_<split>.json`."""
  if model.config is None:
    raise DataError("perplexity on the training splits needs a run's config (a workdir)")
  d = model.config.data
  protocol = evaluation.Protocol(window=model.max_len, stride=stride,
                                 prefix=default_prefix(model.tokenizer) if prefix == "auto"
                                 else prefix)
  out = {}
  for split in splits:
    text = sources.load_text(d.source, split, data_dir=d.data_dir, manual_dir=d.manual_dir,
                             text_file=d.text_file, split_fractions=tuple(d.split_fractions))
    result = evaluation.text_metrics(model.scorer, model.tokenizer, text, protocol,
                                     batch_size=batch_size)
    result.update(split=split, model=model.info)
    run_files.write_json(os.path.join(workdir, f"eval_{split}.json"), result)
    out[split] = result
  return out


def mmlu(model: LoadedModel, data_dir: str, *, shots: int = 5, subjects=None,
         max_per_subject: int | None = None, batch_size: int = 32) -> dict:
  """MMLU test accuracy with `shots` dev examples per prompt (see lm.multiple_choice)."""
  test = multiple_choice.read_mmlu(data_dir, "test", subjects)
  dev = multiple_choice.read_mmlu(data_dir, "dev", subjects)
  ll = multiple_choice.model_loglikelihood(model.scorer, model.tokenizer,
                                           max_len=model.max_len, batch_size=batch_size)
  result = multiple_choice.evaluate_mmlu(test, dev, ll, shots=shots,
                                         max_per_subject=max_per_subject)
  result["model"] = model.info
  result["note"] = (f"prompts longer than the model's {model.max_len} tokens keep only their "
                    f"last {model.max_len} tokens")
  return result


def write_json(path: str, obj) -> None:
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  run_files.write_json(path, json.loads(json.dumps(obj, default=float)))
