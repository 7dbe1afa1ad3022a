r"""Train-step tokens/s (total and per device), model TFLOP/s and MFU on the config's mesh.

  ./launch.sh benchmark --config=configs/shakespeare_char.py:baby --cpu_devices=2
  ./launch.sh benchmark --config=configs/gpt2.py:small --config.mesh.shape=fsdp:8

MFU is against the device's peak: the table in lm/throughput.py (TPU v4/v5e/v5p/v6e, NVIDIA
A100/H100/H200, dense bf16), --peak_flops, or on CPU a square matmul measured in this run.
"""

import json

import jax
from absl import flags
from ml_collections import config_flags

from lm import benchmark, cli, throughput

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file[:variant].",
                                          lock_config=True)
_VOCAB = flags.DEFINE_integer("vocab_size", 65, "Vocabulary size (65: Shakespeare chars).")
_STEPS = flags.DEFINE_integer("steps", 20, "Train steps per timed run.")
_RUNS = flags.DEFINE_integer("runs", 5, "Timed runs; the median is reported.")
_PEAK = flags.DEFINE_float("peak_flops", None, "Peak FLOP/s per device (overrides the table "
                           "and config.train.peak_flops).")
_OUTPUT = flags.DEFINE_string("output", None, "Also write the numbers to this JSON file.")
flags.mark_flag_as_required("config")


def main(argv):
  del argv
  config = _CONFIG.value
  kind = jax.devices()[0].device_kind
  override = _PEAK.value or config.train.peak_flops
  if override or throughput.table_peak(kind):
    peak, source = throughput.device_peak(override)
  else:  # CPU: the best of a few matmul sizes, measured now on every device at once.
    measured = throughput.matmul_peak(config.model.dtype)
    peak, source = measured["flops"], f"measured {config.model.dtype} matmul n={measured['size']}"
  r = benchmark.train_step_throughput(config, vocab_size=_VOCAB.value,
                                      steps_per_run=_STEPS.value, runs=_RUNS.value)
  r.update(peak_flops_per_device=peak, peak_source=source, device=kind,
           mfu=throughput.mfu(r["tokens_per_s"], r["flops_per_token"], r["devices"], peak))
  print(f"{kind} x{r['devices']} mesh {r['mesh']} {r['dtype']} | {r['params']:,} params | "
        f"{r['tokens_per_s']:,.0f} tokens/s ({r['tokens_per_s_per_device']:,.0f}/device; median "
        f"of {', '.join(f'{x:,.0f}' for x in r['tokens_per_s_runs'])}) | "
        f"{r['model_flops'] / r['devices'] / 1e12:.4f} model TFLOP/s per device | peak "
        f"{peak / 1e12:.4f} TFLOP/s per device ({source}) | MFU {r['mfu']:.1%}")
  if _OUTPUT.value:
    with open(_OUTPUT.value, "w") as f:
      json.dump(r, f, indent=2)


if __name__ == "__main__":
  cli.run(main)
