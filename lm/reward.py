"""A reward model: the decoder with a scalar head, trained with the Bradley-Terry loss.

    rewards, aux = RewardModel(cfg).apply({'params': p}, tokens)   # rewards [batch, length]

The reward of a sequence is the head's output at its last response position (see
`lm.losses.bradley_terry`); with the chat template ending each response in '<eos>' that
position has read the whole response. Params are {'decoder': ..., 'head': ...}; a run
with init_from starts the decoder from that run's params and the head at zero.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from lm import losses, stages, steps
from lm.data import instruct
from lm.models import decoder
from lm.models.config import ModelConfig


class RewardModel(nn.Module):
  """Token ids in, a scalar reward per position out."""

  config: ModelConfig

  @nn.compact
  def __call__(self, tokens, *, positions=None, segment_ids=None, deterministic: bool = True):
    """tokens [batch, length] -> rewards [batch, length] float32, and the decoder's aux."""
    _, aux = decoder.Decoder(self.config, name="decoder")(
        tokens, positions=positions, segment_ids=segment_ids, deterministic=deterministic)
    reward = nn.Dense(1, kernel_init=nn.initializers.zeros, name="head")(
        aux["hidden"].astype(jnp.float32))
    return reward[..., 0], aux


def init_params(cfg: ModelConfig, rng, decoder_params=None):
  """Plain params of a RewardModel; `decoder_params` (if given) replace the decoder's."""
  tokens = jnp.zeros((1, cfg.max_len), jnp.int32)
  params = nn.meta.unbox(RewardModel(cfg).init(rng, tokens)["params"])
  if decoder_params is not None:
    params = {**params, "decoder": decoder_params}
  return params


def stage(config, tokenizer, model_cfg, start_params, mesh) -> "stages.Stage":
  """The 'reward' stage: preference rows, Bradley-Terry loss, held-out pairwise accuracy."""
  rows, counts = stages.pair_rows(config, tokenizer)
  model = RewardModel(model_cfg)
  loss_fn = losses.bradley_terry
  step = jax.jit(functools.partial(steps.eval_step, model=model, loss_fn=loss_fn))

  def evaluate(params):
    return stages.evaluate_rows(step, params, rows["eval"], batch_size=config.eval.batch_size,
                                mesh=mesh, group=2)

  batches = instruct.RowBatches(rows["train"], batch_size=config.train.batch_size,
                                seed=config.seed, group=2)
  return stages.Stage(model, loss_fn, batches, evaluate,
                      lambda rng: init_params(model_cfg, rng, start_params), counts)
