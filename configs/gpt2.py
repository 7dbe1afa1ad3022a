"""GPT-2-sized decoders for scale-out runs and memory planning.

Variants (`--config=configs/gpt2.py:VARIANT`):
  small   GPT-2 small: 12 layers, 12 heads, width 768, context 1024 (124M params with
          GPT-2's vocabulary; the planner pads it to 50304 as nanoGPT does).
  medium  GPT-2 medium: 24 layers, 16 heads, width 1024 (350M).
  tiny    2 layers, width 64, context 64: the same code paths in seconds (tests).
Compute is bfloat16 with float32 master weights; `--config.model.dtype=float32` for
float32 compute. Plan memory per device before renting accelerators:

  ./launch.sh compile --config=configs/gpt2.py:small --cpu_devices=8 \
      --mesh=data:8 --mesh=fsdp:8 --mesh=data:2,fsdp:2,tensor:2 --mesh=fsdp:2,tensor:4

Train (byte tokenizer on Tiny Shakespeare here; any `--config.data.*` source works) on a
TPU VM, FSDP over 8 chips with 2-way tensor parallelism:

  ./launch.sh tpu --name=gpt2 --zone=us-central2-b --accelerator=v4-16 -- \
      train --config=configs/gpt2.py:small --workdir=/mnt/runs/gpt2 \
      --config.mesh.shape=fsdp:4,tensor:2
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant = common.parse_variant(arg, ("small", "medium", "tiny"), default="small")
  c = common.base_config()
  c.data.tokenizer = "byte"
  c.data.context = 1024
  c.model.num_layers, c.model.num_heads, c.model.width = 12, 12, 768
  c.model.dtype, c.model.param_dtype = "bfloat16", "float32"
  c.model.dropout = 0.0
  c.train.batch_size, c.train.accum_steps = 32, 4  # 32k tokens per step.
  c.train.steps = 5000
  c.optim.lr, c.optim.min_lr, c.optim.warmup_steps = 6e-4, 6e-5, 200
  c.optim.b2 = 0.95
  c.train.log_every, c.train.eval_every, c.train.checkpoint_every = 10, 500, 500
  c.eval.batch_size, c.eval.max_batches = 32, 20
  if variant == "medium":
    c.model.num_layers, c.model.num_heads, c.model.width = 24, 16, 1024
  elif variant == "tiny":
    c.model.num_layers, c.model.num_heads, c.model.width = 2, 4, 64
    c.data.context = 64
    c.train.batch_size, c.train.accum_steps, c.train.steps = 16, 2, 20
    c.eval.batch_size, c.eval.max_batches = 16, 2
    c.sample.num_tokens = 16
  return common.lock(c)
