r"""Train-step tokens/s, model TFLOP/s and MFU against a matmul peak measured in this run.

  ./launch.sh benchmark --config=configs/shakespeare_char.py:baby --cpu_devices=2
"""

import json

import jax
from absl import flags
from ml_collections import config_flags

from lm import benchmark, cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file[:variant].",
                                          lock_config=True)
_VOCAB = flags.DEFINE_integer("vocab_size", 65, "Vocabulary size (65: Shakespeare chars).")
_STEPS = flags.DEFINE_integer("steps", 20, "Train steps per timed run.")
_RUNS = flags.DEFINE_integer("runs", 5, "Timed runs; the median is reported.")
_OUTPUT = flags.DEFINE_string("output", None, "Also write the numbers to this JSON file.")
flags.mark_flag_as_required("config")


def main(argv):
  del argv
  peak = benchmark.matmul_peak(_CONFIG.value.model.dtype)
  result = benchmark.train_step_throughput(_CONFIG.value, vocab_size=_VOCAB.value,
                                           steps_per_run=_STEPS.value, runs=_RUNS.value)
  result["peak_flops"], result["peak_matmul_size"] = peak["flops"], peak["size"]
  result["mfu"] = result["model_flops"] / peak["flops"]
  result["device"] = str(jax.devices()[0].device_kind)
  print(f"{result['device']} x{result['devices']} {result['dtype']} | "
        f"{result['params']:,} params | {result['tokens_per_s']:,.0f} tokens/s (median of "
        f"{len(result['tokens_per_s_runs'])}: "
        f"{', '.join(f'{r:,.0f}' for r in result['tokens_per_s_runs'])}) | "
        f"{result['model_flops'] / 1e12:.4f} model TFLOP/s | matmul peak "
        f"{peak['flops'] / 1e12:.4f} TFLOP/s (n={peak['size']}) | MFU {result['mfu']:.1%}")
  if _OUTPUT.value:
    with open(_OUTPUT.value, "w") as f:
      json.dump(result, f, indent=2)


if __name__ == "__main__":
  cli.run(main)
