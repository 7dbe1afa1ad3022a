r"""Pretrain -> instruction tuning (SFT) -> preference alignment (DPO), byte-level, small.

Each stage starts from the previous stage's workdir (`--config.init_from=...`), whose
tokenizer and params it takes; the model fields must match (they do by default here).
Data: Tiny Shakespeare (pretrain), `../shared/data/instruct/alpaca_en_demo.json` (SFT, 999
Alpaca examples, 10% held out), `../shared/data/preference/dpo_en_demo.jsonl` (DPO and
the reward model, 114 pairs, 10% held out). Examples longer than the context are truncated
and counted (printed at start, and in results.json 'data_counts').

Variants (`--config=configs/pipeline.py:VARIANT`): pretrain, sft, dpo, reward, and each
with '_smoke' (a few steps, for tests and checking a setup). Run on a 2-core CPU:

  ./launch.sh train --config=configs/pipeline.py:pretrain --workdir=runs/p0
  ./launch.sh train --config=configs/pipeline.py:sft --config.init_from=runs/p0 --workdir=runs/p1
  ./launch.sh train --config=configs/pipeline.py:dpo --config.init_from=runs/p1 --workdir=runs/p2
  ./launch.sh train --config=configs/pipeline.py:reward --config.init_from=runs/p1 \
      --workdir=runs/p3

At this size the model learns Shakespeare's spelling, not instructions: the point is that the
real data flows through every stage and each reports its metrics (SFT validation loss on
response bytes; DPO rewards, margin, preference accuracy, KL to the reference; reward-model
pairwise accuracy). See the README's alignment section for the synthetic task with a known answer.
"""

import os

import ml_collections

from configs import common

SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")
STAGES = ("pretrain", "sft", "dpo", "reward")
VARIANTS = STAGES + tuple(f"{s}_smoke" for s in STAGES)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant = common.parse_variant(arg, VARIANTS, default="pretrain")
  stage, smoke = variant.removesuffix("_smoke"), variant.endswith("_smoke")
  c = common.base_config()
  c.stage = stage
  c.data.source = "text"
  c.data.text_file = os.path.join(SHARED, "tinyshakespeare", "input.txt")
  c.data.tokenizer = "byte"
  c.data.context = 64 if smoke else 256
  c.model.num_layers, c.model.num_heads, c.model.width = (2, 2, 32) if smoke else (4, 4, 128)
  c.align.template.bos = "<bos>"
  c.align.template.system = "{content}\n\n"
  c.align.template.user = "### Instruction:\n{content}\n\n"
  c.align.template.assistant = "### Response:\n{content}<eos>"
  c.align.truncation = "truncate"
  c.optim.weight_decay = 0.0 if stage != "pretrain" else 0.1
  c.train.log_every = 5 if smoke else 25
  c.train.eval_every = 10 if smoke else 50
  c.train.checkpoint_every = 10 if smoke else 50
  c.eval.batch_size = 8 if smoke else 32
  c.sample.prompt = "### Instruction:\nWho are you?\n\n### Response:\n"
  c.sample.num_tokens = 32 if smoke else 120
  if stage == "pretrain":
    c.sample.prompt = "\n"
    c.train.batch_size, c.train.steps = (8, 20) if smoke else (16, 400)
    c.optim.lr, c.optim.warmup_steps = 1e-3, 5 if smoke else 100
    c.eval.max_batches = 4 if smoke else 20
  elif stage == "sft":
    c.align.train_file = os.path.join(SHARED, "instruct", "alpaca_en_demo.json")
    c.align.packing = True
    c.train.batch_size, c.train.steps = (4, 10) if smoke else (8, 200)
    c.optim.lr, c.optim.min_lr, c.optim.warmup_steps = 3e-4, 3e-5, 2 if smoke else 20
  else:  # dpo, reward
    c.align.train_file = os.path.join(SHARED, "preference", "dpo_en_demo.jsonl")
    c.align.loss = "dpo"
    c.align.beta = 0.1
    c.train.batch_size, c.train.steps = (4, 10) if smoke else (8, 60)
    c.optim.lr = 1e-5 if stage == "dpo" else 1e-4
    c.optim.min_lr, c.optim.warmup_steps = 1e-6, 2 if smoke else 10
    c.eval.batch_size = 4 if smoke else 8
  return common.lock(c)
