"""Sampling text from a trained run: what `experiments/sample.py` calls.

Loads the run's checkpoint and tokenizer, decodes a batch of prompts with one strategy
('greedy', 'sample' with temperature and filters, or 'beam') and reports tokens/s, first
including compilation and then for a second, already compiled call.
"""

import dataclasses
import time
from typing import Sequence

import jax

from lm import beam_search, decoding, run_files
from lm import logits_processing as lp
from lm.errors import ConfigError
from lm.models import decoder

STRATEGIES = ("greedy", "sample", "beam")


@dataclasses.dataclass(frozen=True)
class Settings:
  """How to decode; None leaves an option off."""

  strategy: str = "sample"
  max_new_tokens: int | None = None  # None: fill the model's context.
  temperature: float = 0.8
  top_k: int | None = None
  top_p: float | None = None
  min_p: float | None = None
  typical_p: float | None = None
  repetition_penalty: float | None = None
  presence_penalty: float = 0.0
  frequency_penalty: float = 0.0
  no_repeat_ngram: int | None = None
  min_new_tokens: int | None = None
  num_samples: int = 1  # Samples per prompt; > 1 with strategy 'sample' keeps the best.
  beam_size: int = 4
  length_penalty: float = 1.0
  stop: tuple[str, ...] = ()  # Stop strings (each must encode to at least one token).
  seed: int = 0

  def __post_init__(self):
    if self.strategy not in STRATEGIES:
      raise ConfigError(f"strategy={self.strategy!r}: expected one of {STRATEGIES}")


def processors(s: Settings) -> tuple:
  """The logits processors `s` asks for, in the documented order."""
  out = []
  if s.repetition_penalty is not None:
    out.append(lp.RepetitionPenalty(s.repetition_penalty))
  if s.presence_penalty or s.frequency_penalty:
    out.append(lp.PresenceFrequencyPenalty(s.presence_penalty, s.frequency_penalty))
  if s.no_repeat_ngram is not None:
    out.append(lp.NoRepeatNgram(s.no_repeat_ngram))
  if s.min_new_tokens is not None:
    out.append(lp.MinNewTokens(s.min_new_tokens))
  return tuple(out)


def decode(model: decoding.Model, prompts: Sequence[Sequence[int]], s: Settings,
           stop_sequences=(), stop_tokens=None) -> list[list[int]]:
  """New tokens for each prompt (the best beam or best of `num_samples` samples)."""
  longest = max((len(p) for p in prompts), default=0)
  new = s.max_new_tokens or (model.max_len - longest + 1 if model.max_len else 256)
  rng = jax.random.PRNGKey(s.seed)
  if s.strategy == "beam":
    return beam_search.beam_search(model, prompts, beam_size=s.beam_size, max_new_tokens=new,
                                   length_penalty=s.length_penalty,
                                   stop_tokens=stop_tokens).best()
  strategy = lp.Greedy() if s.strategy == "greedy" else lp.Sample(
      s.temperature, s.top_k, s.top_p, s.min_p, s.typical_p)
  kwargs = dict(max_new_tokens=new, strategy=strategy, processors=processors(s),
                stop_sequences=[list(q) for q in stop_sequences] or None,
                stop_tokens=stop_tokens)
  if s.num_samples > 1:
    return decoding.best_of_n(model, prompts, n=s.num_samples, rng=rng, **kwargs)[0].lists()
  return decoding.generate(model, prompts, rng=rng, **kwargs).lists()


def sample_run(workdir: str | None, prompts: Sequence[str], settings: Settings, *,
               step: int | None = None, hf_checkpoint: str | None = None) -> list[dict]:
  """Decodes `prompts` with the run in `workdir` (or the Hugging Face checkpoint directory
  `hf_checkpoint` instead); prints each sample and the speed."""
  if not prompts:
    raise ConfigError("no prompts given")
  if bool(workdir) == bool(hf_checkpoint):
    raise ConfigError("give exactly one of --workdir and --hf_checkpoint")
  if hf_checkpoint:
    from lm import hf  # Deferred: only this branch needs the HF libraries.
    model_cfg, params, tokenizer = hf.load(hf_checkpoint)
    if tokenizer is None:
      raise ConfigError(f"{hf_checkpoint} has no tokenizer files to encode the prompts")
  else:
    _, tokenizer, model_cfg, params = run_files.load_run(workdir, step)
  ids = [tokenizer.encode(p) for p in prompts]
  stops = [tokenizer.encode(q) for q in settings.stop]
  stop_tokens = None
  if model_cfg.family == "encoder_decoder" and hf_checkpoint:  # T5: see lm.hf.t5.
    from lm.hf import safetensors_io, t5
    model, ids, stop_tokens = t5.source_decoding(
        model_cfg, params, safetensors_io.read_config(hf_checkpoint), ids)
  elif model_cfg.family == "encoder_decoder":  # Prompts are sources; the decoder starts at BOS.
    from lm import families
    model, ids, stop_tokens = families.source_decoding(model_cfg, params, tokenizer, ids)
  elif model_cfg.family == "encoder":
    raise ConfigError("an encoder-only model (a run or a BERT checkpoint) does not generate "
                      "text; use evaluate")
  else:
    model = decoder.decoding_model(model_cfg, params)
  timings = []
  for _ in range(2):  # The second call reuses the compilation.
    start = time.perf_counter()
    out = decode(model, ids, settings, stops, stop_tokens)
    timings.append((sum(len(o) for o in out), time.perf_counter() - start))
  results = []
  for prompt, new in zip(prompts, out):
    text = tokenizer.decode(new)
    print(f"--- {prompt!r}\n{prompt}{text}")
    results.append({"prompt": prompt, "text": text, "tokens": len(new)})
  (n0, t0), (n1, t1) = timings
  print(f"{n0} tokens in {t0:.2f}s incl. compilation ({n0 / t0:,.0f} tokens/s); "
        f"compiled: {n1 / t1:,.0f} tokens/s ({len(prompts)} prompts, "
        f"{jax.devices()[0].platform})")
  return results


def read_prompts(path: str) -> list[str]:
  """One prompt per non-empty line; the two characters \\n in a line become a newline."""
  with open(path, encoding="utf-8") as f:
    prompts = [line.rstrip("\n").replace("\\n", "\n") for line in f]
  prompts = [p for p in prompts if p]
  if not prompts:
    raise ConfigError(f"no prompts in {path}")
  return prompts


def sample_text(params, model_cfg, prompt: Sequence[int], *, num_tokens: int,
                temperature: float, rng) -> list[int]:
  """`num_tokens` tokens continuing `prompt` (temperature 0: greedy), even past the context:
  the end-of-training sample."""
  return decoding.continue_text(decoder.decoding_model(model_cfg, params), list(prompt),
                                num_tokens=num_tokens, strategy=lp.Sample(temperature), rng=rng)
