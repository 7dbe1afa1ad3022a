"""Scoring given continuations of a prompt: classification by prompting a decoder.

    probs = scoring.choice_probabilities(model, tokenizer.encode(
        'The sentiment of the sentence "What a lovely day" is:'),
        [tokenizer.encode(" positive"), tokenizer.encode(" negative")])

gives P(" positive") and P(" negative") after the prompt, renormalised over the two, from
one prefill call on the (left-padded) batch of prompt + continuation.
"""

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lm import decoding
from lm.errors import ConfigError


@jax.jit
def _target_logprobs(model, tokens, start, is_target):
  """Sum over `is_target` slots of log p(token at slot s | tokens before s): [batch]."""
  cache = model.init_cache(start, tokens.shape[1])
  logits, _ = model.tokens_to_logits(tokens, cache)
  logp = jax.nn.log_softmax(logits[:, :-1])  # Slot s predicts slot s + 1.
  picked = jnp.take_along_axis(logp, tokens[:, 1:, None], -1)[..., 0]
  return jnp.sum(jnp.where(is_target[:, 1:], picked, 0.0), -1)


def continuation_logprobs(model: decoding.Model, prompt: Sequence[int],
                          continuations: Sequence[Sequence[int]]) -> np.ndarray:
  """[n] float32: log p(continuation i | prompt), summed over its tokens."""
  if not prompt:
    raise ConfigError("the prompt is empty: give at least one token")
  if not continuations or any(not c for c in continuations):
    raise ConfigError("give at least one continuation, each of at least one token")
  seqs = [list(prompt) + list(c) for c in continuations]
  decoding.check_lengths([len(s) for s in seqs], 1, model.max_len)
  tokens, start = decoding.left_pad(seqs)
  width = tokens.shape[1]
  is_target = np.stack([np.arange(width) >= width - len(c) for c in continuations])
  return np.asarray(_target_logprobs(decoding._as_model(model), tokens, start, is_target))


def choice_probabilities(model: decoding.Model, prompt: Sequence[int],
                         choices: Sequence[Sequence[int]]) -> np.ndarray:
  """[n] float: p(choice i | prompt) renormalised over the choices (they sum to 1)."""
  logp = continuation_logprobs(model, prompt, choices).astype(np.float64)
  p = np.exp(logp - logp.max())
  return p / p.sum()
