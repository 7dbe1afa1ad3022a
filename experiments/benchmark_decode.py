r"""Decode tokens/s with and without the KV cache, batch 1 and 8, 256 new tokens.

  ./launch.sh benchmark_decode --config=configs/shakespeare_char.py:gpu

The cached path must be at least 5x faster than recomputing the full context; the numbers
measured on a 2-core CPU are in the README (Decoding).
"""

import dataclasses
import json

import jax
from absl import flags
from ml_collections import config_flags

from lm import cli, decode_benchmark, train

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file[:variant].",
                                          lock_config=True)
_VOCAB = flags.DEFINE_integer("vocab_size", 65, "Vocabulary size (65: Shakespeare chars).")
_BATCH = flags.DEFINE_list("batch_sizes", ["1", "8"], "Prompts decoded together.")
_NEW = flags.DEFINE_integer("new_tokens", 256, "New tokens per prompt (1-token prompts).")
_RUNS = flags.DEFINE_integer("runs", 3, "Timed runs of each; the best is reported.")
_OUTPUT = flags.DEFINE_string("output", None, "Also write the numbers to this JSON file.")
flags.mark_flag_as_required("config")


def main(argv):
  del argv
  # Decoding runs without dropout; the model config is otherwise the training one.
  cfg = dataclasses.replace(train.model_config(_CONFIG.value, _VOCAB.value), dropout=0.0)
  rows = decode_benchmark.compare(cfg, batch_sizes=[int(b) for b in _BATCH.value],
                                  new_tokens=_NEW.value, runs=_RUNS.value)
  device = jax.devices()[0].device_kind
  for r in rows:
    print(f"{device} | batch {r['batch_size']} | {r['new_tokens']} new tokens | "
          f"KV cache {r['cached_tokens_per_s']:,.0f} tokens/s | full recompute "
          f"{r['uncached_tokens_per_s']:,.0f} tokens/s | {r['speedup']:.1f}x")
  if _OUTPUT.value:
    with open(_OUTPUT.value, "w") as f:
      json.dump({"device": device, "rows": rows}, f, indent=2)


if __name__ == "__main__":
  cli.run(main)
