r"""Ahead-of-time memory plan: per-device memory of the train step for each mesh layout.

Compiles (never runs) the train step for each --mesh on fake CPU devices and prints params,
optimizer state, batch and XLA temporaries per device, plus the single-device figure:

  ./launch.sh compile --config=configs/gpt2.py:small --cpu_devices=8 \
      --mesh=data:8 --mesh=fsdp:8 --mesh=data:2,fsdp:2,tensor:2 --mesh=fsdp:2,tensor:4
"""

import json

from absl import flags
from ml_collections import config_flags

import jax

from lm import cli, planning

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file[:variant].",
                                          lock_config=True)
_MESH = flags.DEFINE_multi_string("mesh", [], "Mesh layouts to plan, e.g. data:2,fsdp:2,tensor:2 "
                                  "(sizes multiply to --cpu_devices).")
_VOCAB = flags.DEFINE_integer("vocab_size", 50304, "Vocabulary size (50304: GPT-2's 50257 "
                              "padded to a multiple of 64, as nanoGPT does).")
_SINGLE = flags.DEFINE_bool("single", True, "Also plan the one-device layout.")
_OUTPUT = flags.DEFINE_string("output", None, "Also write the numbers to this JSON file.")
flags.mark_flag_as_required("config")


def main(argv):
  del argv
  layouts = ([("1 device", None, jax.devices()[:1])] if _SINGLE.value else []) + [
      (shape, shape, None) for shape in _MESH.value]
  plans = {}
  for name, shape, devices in layouts:
    plans[name] = planning.plan(_CONFIG.value, vocab_size=_VOCAB.value, mesh_shape=shape,
                                devices=devices)
    print(f"{name}: compiled in {plans[name]['compile_s']:.1f}s", flush=True)
  p = next(iter(plans.values()))
  print(f"{p['param_count']:,} params, {_CONFIG.value.model.dtype} compute, "
        f"{_CONFIG.value.model.param_dtype} params, batch {_CONFIG.value.train.batch_size} x "
        f"{_CONFIG.value.data.context} in {_CONFIG.value.train.accum_steps} micro-batches")
  print(planning.format_table(plans))
  if _OUTPUT.value:
    with open(_OUTPUT.value, "w") as f:
      json.dump(plans, f, indent=2)


if __name__ == "__main__":
  cli.run(main)
