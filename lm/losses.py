"""Losses shared by every training stage. Keyword-only pure functions.

Each loss returns *sums and weights*, never means: the caller divides once, after summing
over micro-batches, devices and eval batches, so averages are exactly token-weighted.
"""

import jax
import jax.numpy as jnp

from lm.errors import ConfigError


def cross_entropy(*, logits, targets, weights, label_smoothing: float = 0.0,
                  z_loss: float = 0.0, per_sequence: bool = False):
  """Next-token cross entropy under teacher forcing.

  Args:
    logits: [batch, length, vocab] float; position t predicts targets[:, t].
    targets: [batch, length] int.
    weights: [batch, length] float; 0 for padding / prompt tokens.
    label_smoothing: eps; the target distribution is (1 - eps) one-hot + eps / vocab.
    z_loss: coefficient of log(Z)^2 per token (PaLM, Chowdhery et al. 2022), which keeps the
      softmax normaliser near 1. Added to 'loss_sum'; also reported alone as 'z_loss_sum'.
    per_sequence: False: every token weighs the same (sum over tokens, weight = token
      count). True: every sequence weighs the same (each row's weighted mean, then summed
      over rows with weight = number of rows that have any weight).

  Returns:
    dict of scalars: 'loss_sum' (what to optimise, divided by 'weight_sum'), 'weight_sum',
    'nll_sum' (plain negative log-likelihood, no smoothing or z-loss, for perplexity),
    'z_loss_sum', 'token_sum' (weighted token count, whatever the mode), 'correct_sum'
    (weighted argmax hits).
  """
  logits = logits.astype(jnp.float32)
  weights = weights.astype(jnp.float32)
  log_z = jax.nn.logsumexp(logits, axis=-1)  # [batch, length]
  target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
  nll = log_z - target_logit
  loss = nll
  if label_smoothing:
    # Cross entropy against the uniform part: mean over vocab of -log p.
    uniform = log_z - logits.mean(-1)
    loss = (1.0 - label_smoothing) * nll + label_smoothing * uniform
  z = z_loss * jnp.square(log_z)
  loss = loss + z
  correct = (jnp.argmax(logits, -1) == targets).astype(jnp.float32)
  if per_sequence:
    row_weight = weights.sum(-1)
    row_scale = jnp.where(row_weight > 0, 1.0 / jnp.maximum(row_weight, 1e-30), 0.0)
    token_scale = weights * row_scale[:, None]
    weight_sum = (row_weight > 0).sum().astype(jnp.float32)
  else:
    token_scale = weights
    weight_sum = weights.sum()
  return {
      "loss_sum": (loss * token_scale).sum(),
      "weight_sum": weight_sum,
      "nll_sum": (nll * weights).sum(),
      "z_loss_sum": (z * token_scale).sum(),
      "token_sum": weights.sum(),
      "correct_sum": (correct * weights).sum(),
  }


LOSSES = {"cross_entropy": cross_entropy}


def get(name: str):
  """The loss function registered under `name`."""
  if name not in LOSSES:
    raise ConfigError(f"unknown loss {name!r}; known: {sorted(LOSSES)}")
  return LOSSES[name]
