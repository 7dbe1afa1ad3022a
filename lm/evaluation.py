"""Scoring token sequences: loss and perplexity of a whole split, every token once."""

import functools

import jax

from lm import metrics, sharding, steps
from lm.data import windows


def evaluate_tokens(params, tokens, *, model, loss_fn, context: int, batch_size: int,
                    max_batches: int | None = None, mesh=None) -> dict:
  """Metrics of `tokens` [n] scored in contiguous windows of `context` tokens.

  Every target token (tokens[1:]) is scored exactly once, with the context available
  inside its window (0 to context - 1 earlier tokens). `max_batches` None: the whole split.
  Returns `lm.metrics.summarize` of the sums: loss, nll, perplexity, accuracy, tokens.
  """
  mesh = mesh or sharding.data_mesh()
  step = _eval_step(model, loss_fn)
  total = None
  for i, batch in enumerate(windows.eval_batches(tokens, context=context,
                                                 batch_size=batch_size)):
    if max_batches is not None and i >= max_batches:
      break
    total = metrics.add(total, step(params, sharding.put_batch(batch, mesh)))
  return metrics.summarize(jax.device_get(total))


@functools.lru_cache(maxsize=16)
def _eval_step(model, loss_fn):
  # Cached so repeated evaluations in one run reuse one compiled function.
  return jax.jit(functools.partial(steps.eval_step, model=model, loss_fn=loss_fn))
