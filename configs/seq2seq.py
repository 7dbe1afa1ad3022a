"""Encoder-decoder (T5-style) models: a task with a known answer, and span corruption.

Variants (`--config=configs/seq2seq.py:VARIANT`):
  reverse  Reverse random strings of 1-12 lowercase letters. 2+2 layers, width 128, learned
           absolute positions, otherwise T5 v1.0 (pre-RMSNorm, ReLU MLP, unscaled attention,
           tied embeddings with the width**-0.5 output scale), 3500 steps. 500 held-out
           strings never seen in training; exact match of greedy and beam (4) decoding.
           (With T5's relative bias, --config.model.position=relative, the same budget
           reaches only ~23% exact match: cross-attention carries no position, so the
           model must first learn absolute positions from the bias.) Run:
             ./launch.sh train --config=configs/seq2seq.py:reverse --workdir=runs/reverse
           Expect exact match 0.990 greedy and 0.990 beam, per-character accuracy 0.999
           (about 10 min on a shared 2-core CPU).
  span     T5 span corruption (15% noise, mean span 3, sentinels) on Tiny Shakespeare
           characters, context 64.
  smoke, span_smoke  Seconds-long versions for tests.
"""

import ml_collections

from configs import common

SENTINELS = tuple(f"<extra_id_{i}>" for i in range(16))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant = common.parse_variant(arg, ("reverse", "span", "smoke", "span_smoke"),
                                 default="reverse")
  c = common.base_config()
  c.stage = "span_corruption" if "span" in variant else "seq2seq"
  c.data.source = "tiny_shakespeare"
  c.data.tokenizer = "char"
  c.data.char_specials = True
  c.data.special_tokens = ("<pad>", "<bos>", "<eos>") + SENTINELS
  c.data.context = 64 if c.stage == "span_corruption" else 16
  c.model.family = "encoder_decoder"
  c.model.num_layers, c.model.num_heads, c.model.width = 2, 4, 128
  c.model.position = "learned" if c.stage == "seq2seq" else "relative"
  c.model.relative_buckets, c.model.relative_max_distance = 32, 128
  c.model.norm = "rmsnorm"
  c.model.mlp = "relu"
  c.model.scale_attention = False
  c.model.scale_tied_logits = True
  c.model.init_std = 0.05
  c.task.seq2seq = "reverse"
  c.task.min_len, c.task.max_len = 1, 12
  c.task.num_eval = 500
  c.train.batch_size = 64
  c.train.steps = 3500 if c.stage == "seq2seq" else 1500
  c.optim.lr, c.optim.min_lr, c.optim.warmup_steps = 2e-3, 1e-4, 100
  c.optim.weight_decay = 0.0
  c.train.log_every = 50
  c.train.eval_every = 500
  c.train.checkpoint_every = 500
  c.eval.batch_size = 250
  if c.stage == "span_corruption":
    c.eval.batch_size = 64
    c.eval.max_batches = 4
  if variant in ("smoke", "span_smoke"):
    c.model.num_layers, c.model.num_heads, c.model.width = 1, 2, 32
    c.train.batch_size = 8
    c.train.steps = 6
    c.optim.warmup_steps = 2
    c.train.log_every = 3
    c.train.eval_every = 6
    c.train.checkpoint_every = 6
    c.task.num_eval = 8
    c.task.beam_size = 2
    c.eval.batch_size = 8
    c.eval.max_batches = 2
  return common.lock(c)
