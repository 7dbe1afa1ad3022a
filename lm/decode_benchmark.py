"""Decode tokens/s with and without the KV cache (what experiments/benchmark_decode.py runs).

Both paths run the same `lm.decoding` loop (greedy, no early stop); only the callback
differs: the cached one feeds one token per step, the uncached one reruns the model over the
whole sequence buffer (prompt + new tokens, 256 slots for the `gpu` model) at every step,
like a sampler without a cache. Params are random: speed does not depend on their values.
"""

import time

import jax
import numpy as np

from lm import decoding
from lm import logits_processing as lp
from lm.models import decoder
from lm.models.config import ModelConfig


def decode_throughput(cfg: ModelConfig, *, batch_size: int, new_tokens: int, kv_cache: bool,
                      prompt_len: int = 1, runs: int = 3) -> dict:
  """Best-of-`runs` decode speed (compilation excluded) of `batch_size` prompts.

  Returns {'tokens_per_s', 'seconds', 'compile_s', 'tokens'}; tokens = batch * new_tokens.
  """
  model = decoder.decoding_model(cfg, decoder.init_params(cfg, jax.random.PRNGKey(0)),
                                 kv_cache=kv_cache)
  prompts = [[(i + j) % cfg.vocab_size for j in range(prompt_len)] for i in range(batch_size)]
  decoding.check_lengths([prompt_len] * batch_size, new_tokens, model.max_len)
  tokens, start = decoding.left_pad(prompts)
  stops, seqs = decoding.stop_arrays([[]] * batch_size, [[]] * batch_size)
  args = (model, tokens, start, stops, seqs, jax.random.PRNGKey(0))
  begin = time.perf_counter()
  compiled = decoding._generate.lower(  # Ahead of time, so no timed run pays for it.
      *args, max_new_tokens=new_tokens, strategy=lp.Greedy(), processors=(),
      pad_id=0).compile()
  compile_s = time.perf_counter() - begin
  best = float("inf")
  for _ in range(runs):
    begin = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    best = min(best, time.perf_counter() - begin)
  assert np.all(np.asarray(out.lengths) == new_tokens)
  n = batch_size * new_tokens
  return {"tokens_per_s": n / best, "seconds": best, "compile_s": compile_s, "tokens": n}


def compare(cfg: ModelConfig, *, batch_sizes=(1, 8), new_tokens: int = 256,
            runs: int = 3) -> list[dict]:
  """Cached and uncached decode_throughput for each batch size, with the speed-up."""
  rows = []
  for b in batch_sizes:
    cached = decode_throughput(cfg, batch_size=b, new_tokens=new_tokens, kv_cache=True,
                               runs=runs)
    full = decode_throughput(cfg, batch_size=b, new_tokens=new_tokens, kv_cache=False,
                             runs=runs)
    rows.append({"batch_size": b, "new_tokens": new_tokens,
                 "cached_tokens_per_s": cached["tokens_per_s"],
                 "uncached_tokens_per_s": full["tokens_per_s"],
                 "speedup": cached["tokens_per_s"] / full["tokens_per_s"]})
  return rows
