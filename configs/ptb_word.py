r"""Word-level Transformer LMs on Penn Treebank (Mikolov's 10k vocabulary, <eos> per line).

Variants (`--config=configs/ptb_word.py:VARIANT`):
  small   the sweep's base: 2 layers, width 256, context 64; the sweep sets the sizes.
  smoke   seconds: tiny model, 20 steps, for tests.

The sweep (`get_sweep`) trains three sizes one after another and writes the perplexity
table (valid/test perplexity, bits per byte, protocol in the header):

  ./launch.sh sweep --config=configs/ptb_word.py --workdir=runs/ptb_word

Reference test perplexities: Kneser-Ney 5-gram 141.2 (Mikolov & Zweig 2012); Zaremba et
al.'s small LSTM 114.5. Measured (docs/evaluation.md): width 256, 2000 steps -> valid 129.2,
test 119.7; about 12 minutes of training on a quiet 2-core CPU (5,778 tokens/s).
"""

import ml_collections

from configs import common
from lm import sweep

PTB_DIR = "../shared/data/ptb"  # Offline copy of ptb.{train,valid,test}.txt (relative to the repo).


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant = common.parse_variant(arg, ("small", "smoke"), default="small")
  c = common.base_config()
  c.data.source = "ptb"
  c.data.manual_dir = PTB_DIR
  c.data.tokenizer = "word"
  c.data.context = 64
  c.model.num_layers, c.model.num_heads, c.model.width = 2, 4, 256
  c.model.position = "rope"
  c.model.tie_embeddings = True  # The 10k x width table is most of the parameters.
  c.model.dropout = 0.3  # PTB overfits within a few epochs without it.
  c.train.batch_size = 32
  c.train.steps = 2000
  c.optim.lr, c.optim.min_lr, c.optim.warmup_steps = 2e-3, 1e-4, 200
  c.optim.b2 = 0.99
  c.optim.weight_decay = 0.1
  c.train.log_every = 100
  c.train.eval_every = 500
  c.train.checkpoint_every = 500
  c.eval.batch_size = 64
  c.sample.prompt = "the company said"
  c.sample.num_tokens = 30
  if variant == "smoke":
    c.model.num_layers, c.model.num_heads, c.model.width = 1, 2, 32
    c.data.context = 16
    c.train.batch_size = 8
    c.train.steps = 20
    c.optim.warmup_steps = 5
    c.train.log_every = 5
    c.train.eval_every = 10
    c.train.checkpoint_every = 10
    c.eval.max_batches = 4
    c.sample.num_tokens = 8
  return common.lock(c)


def get_sweep(arg: str | None = None) -> list[dict]:
  """Three widths (2 layers, head size 64); the larger ones train longer (2048 tokens a step).

  'smoke': two tiny points of a few steps, for tests.
  """
  if arg == "smoke":
    return sweep.product(sweep.axis("model.width", [16, 32]), sweep.axis("train.steps", [4]))
  return sweep.zip_(sweep.axis("model.width", [128, 192, 256]),
                    sweep.axis("model.num_heads", [2, 3, 4]),
                    sweep.axis("train.steps", [500, 500, 2000]))
