"""Encoder-only (BERT-style) models on Tiny Shakespeare: MLM pretraining, then a classifier.

Variants (`--config=configs/encoder_shakespeare.py:VARIANT`):
  mlm       Character-level masked LM (15% selected, 80/10/10), 4 layers, width 128,
            context 64, bidirectional, learned positions. Run:
              ./launch.sh train --config=configs/encoder_shakespeare.py:mlm --workdir=runs/mlm
            Expect masked-character loss about 1.88, accuracy about 0.47 (10 min on a
            shared 2-core CPU).
  classify  Fine-tunes that encoder (init_from) on 'real' vs 'shuffled' lines: every
            Shakespeare line of 4+ words, half with their words shuffled (built from the
            train and validation splits; task.train_file/eval_file take a CSV/JSONL
            `text,label` instead, task.tfds_name a TFDS dataset prepared as array_record
            in data.data_dir). Pooled first ([CLS]) token. Run:
              ./launch.sh train --config=configs/encoder_shakespeare.py:classify \
                  --workdir=runs/cls --config.init_from=runs/mlm
            Expect held-out accuracy about 0.90 vs a majority baseline of 0.52 (5 min).
  smoke, classify_smoke  Seconds-long versions for tests.
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant = common.parse_variant(arg, ("mlm", "classify", "smoke", "classify_smoke"),
                                 default="mlm")
  c = common.base_config()
  c.stage = "classify" if "classify" in variant else "mlm"
  c.data.source = "tiny_shakespeare"
  c.data.tokenizer = "char"
  c.data.char_specials = True
  c.data.special_tokens = ("<pad>", "<mask>", "<cls>")
  c.data.context = 64
  c.model.family = "encoder"
  c.model.num_layers, c.model.num_heads, c.model.width = 4, 4, 128
  c.model.pooling = "first"
  c.train.batch_size = 32
  c.train.steps = 1500
  c.optim.lr, c.optim.min_lr, c.optim.warmup_steps = 1e-3, 1e-4, 100
  c.train.log_every = 50
  c.train.eval_every = 500
  c.train.checkpoint_every = 500
  c.eval.batch_size = 64
  c.eval.max_batches = 8
  if c.stage == "classify":
    c.task.builtin = "real_vs_shuffled"
    c.train.steps = 600
    c.train.eval_every = 200
    c.optim.lr, c.optim.min_lr, c.optim.warmup_steps = 3e-4, 3e-5, 50
    c.eval.max_batches = None
  if variant in ("smoke", "classify_smoke"):
    c.model.num_layers, c.model.num_heads, c.model.width = 2, 2, 32
    c.train.batch_size = 8
    c.train.steps = 6
    c.optim.warmup_steps = 2
    c.train.log_every = 3
    c.train.eval_every = 6
    c.train.checkpoint_every = 6
    c.eval.max_batches = 2
    c.eval.batch_size = 16
  return common.lock(c)
