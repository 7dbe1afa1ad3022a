r"""The alignment pipeline on synthetic tasks with a known answer (README: "Instruction tuning and preference alignment").

Task: 'rev:abc=' -> 'cba' plus a closing mark. In the instruction data the mark is '.' or
'!' at random; the preference pairs prefer '.' (chosen 'cba.', rejected 'cba!'). So SFT must
learn to reverse (held-out exact match), and DPO must move the 50/50 choice of mark to '.'
(held-out preference accuracy) while the reversal, and the KL to the SFT model, stay small.

  ./launch.sh demo_align --workdir=runs/demo     # All stages: 1 min 33 s on 2 CPU cores.

Measured (held out: 200 words never seen in training; `<workdir>/demo.json`):
  pretrain  validation loss 2.007 nats/byte (1500 steps)
  sft       exact match 1.000 (greedy; reversal then one mark), 2000 steps
  dpo       preference accuracy 0.50 -> 1.000 (implicit reward; ties count 1/2), policy
            log-prob accuracy 0.64 -> 0.915, greedy answers ending in '.' 0.64 -> 0.915,
            exact match 1.000 -> 0.965, KL to the SFT model 0.040 nats per response token
  reward    held-out pairwise accuracy 1.000

`lm.demo_align.run` writes the data into the workdir and fills in align.train_file,
align.eval_file and init_from; variants: pretrain, sft, dpo, reward (':VARIANT').
"""

import ml_collections

from configs import common

VARIANTS = ("pretrain", "sft", "dpo", "reward")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  stage = common.parse_variant(arg, VARIANTS, default="pretrain")
  c = common.base_config()
  c.stage = stage
  c.data.source = "text"
  c.data.tokenizer = "byte"
  c.data.context = 32
  c.model.num_layers, c.model.num_heads, c.model.width = 3, 4, 64
  c.align.template.bos = "<bos>"
  c.align.template.system = "{content}\n"
  c.align.template.user = "{content}="
  c.align.template.assistant = "{content}<eos>"
  c.align.packing = True
  c.align.truncation = "error"
  c.optim.weight_decay = 0.0
  c.train.log_every = 100
  c.train.eval_every = 500
  c.train.checkpoint_every = 500
  c.eval.batch_size = 100
  c.sample.prompt = "rev:abcd="
  c.sample.num_tokens = 8
  c.sample.temperature = 0.0
  if stage == "pretrain":
    c.train.batch_size, c.train.steps = 32, 1500
    c.optim.lr, c.optim.min_lr, c.optim.warmup_steps = 1e-3, 1e-4, 30
    c.eval.max_batches = 4
  elif stage == "sft":
    c.train.batch_size, c.train.steps = 32, 2000
    c.optim.lr, c.optim.min_lr, c.optim.warmup_steps = 1e-3, 1e-4, 50  # 3e-3 stalled in a trial.
  elif stage == "dpo":
    c.align.packing = False
    # Adam moves every weight by about lr a step, and the pairs differ in one mark, so DPO
    # easily overshoots: at beta 0.1 / lr 2e-5 it reached preference accuracy 1.0 but the
    # KL to the SFT model grew to 3.3 nats/token and the reversals broke (exact match 0.01).
    c.align.loss, c.align.beta = "dpo", 1.0
    c.train.batch_size, c.train.steps = 16, 100
    c.train.eval_every = 50
    c.train.log_every = 25
    c.optim.lr, c.optim.min_lr, c.optim.warmup_steps = 2.5e-6, 2.5e-7, 10
  else:  # reward
    c.align.packing = False
    c.train.batch_size, c.train.steps = 16, 300
    c.optim.lr, c.optim.min_lr, c.optim.warmup_steps = 1e-3, 1e-4, 20
  return common.lock(c)
