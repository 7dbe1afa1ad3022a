"""Character-level GPT on Tiny Shakespeare (nanoGPT's `shakespeare_char`).

Variants (`--config=configs/shakespeare_char.py:VARIANT`):
  baby   nanoGPT's CPU "baby GPT": 4 layers, 4 heads, width 128, context 64, batch 12,
         2000 steps. Run:
           ./launch.sh train --config=configs/shakespeare_char.py:baby --workdir=runs/baby
         Expect validation loss about 1.88 nats/char (perplexity about 6.5) in a few minutes
         on a 2-core CPU.
  gpu    nanoGPT's GPU config: 6 layers, 6 heads, width 384, context 256, batch 64,
         dropout 0.2, 5000 steps. nanoGPT reports validation loss 1.4697.
  smoke  A few seconds: tiny model, 20 steps. For tests and for checking a setup.

Tokenizer sweep (`get_sweep`): the baby model for 1000 steps with character, byte and
SentencePiece (BPE, 1000 pieces trained on the training split) tokens; per-token
perplexities differ widely, bits per byte compare (table in docs/tokenizers.md):

  ./launch.sh sweep --config=configs/shakespeare_char.py:baby --workdir=runs/shakespeare_tok
"""

import ml_collections

from configs import common
from lm import sweep


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant = common.parse_variant(arg, ("baby", "gpu", "smoke"), default="baby")
  c = common.base_config()
  c.data.source = "tiny_shakespeare"
  c.data.tokenizer = "char"
  # nanoGPT baby GPT (README "I only have a macbook" command), float32, no dropout.
  c.model.num_layers, c.model.num_heads, c.model.width = 4, 4, 128
  c.model.dropout = 0.0
  c.data.context = 64
  c.train.batch_size = 12
  c.train.steps = 2000
  c.optim.lr, c.optim.min_lr, c.optim.warmup_steps = 1e-3, 1e-4, 100
  c.optim.b2 = 0.99
  c.optim.weight_decay = 0.1
  c.optim.clip_norm = 1.0
  c.train.log_every = 50
  c.train.eval_every = 250
  c.train.checkpoint_every = 500
  c.eval.batch_size = 64
  if variant == "gpu":
    c.model.num_layers, c.model.num_heads, c.model.width = 6, 6, 384
    c.model.dropout = 0.2
    c.data.context = 256
    c.train.batch_size = 64
    c.train.steps = 5000
    c.eval.batch_size = 64
  elif variant == "smoke":
    c.model.num_layers, c.model.num_heads, c.model.width = 2, 2, 32
    c.data.context = 32
    c.train.batch_size = 8
    c.train.steps = 20
    c.optim.warmup_steps = 5
    c.train.log_every = 5
    c.train.eval_every = 10
    c.train.checkpoint_every = 10
    c.eval.max_batches = 4
    c.sample.num_tokens = 32
  return common.lock(c)


def get_sweep(arg: str | None = None) -> list[dict]:
  """Tokenizers at one model size: char, byte and SentencePiece (1000 pieces; 300 in smoke)."""
  smoke = arg == "smoke"
  tokenizers = sweep.chain(
      sweep.axis("data.tokenizer", ["char", "byte"]),
      [{"data.tokenizer": "sentencepiece", "data.vocab_size": 300 if smoke else 1000}])
  if smoke:
    return tokenizers
  return sweep.product(tokenizers, sweep.axis("train.steps", [1000]))
