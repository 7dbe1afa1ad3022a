"""Optimizer and learning-rate schedule built from `config.optim`."""

import jax
import optax


def schedule(cfg, total_steps: int):
  """Linear warmup from 0 to `lr`, then cosine decay to `min_lr` at `decay_steps`.

  `decay_steps` None means the end of training (`total_steps`). After it the rate stays
  at `min_lr`.
  """
  decay_steps = cfg.decay_steps or total_steps
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=cfg.lr, warmup_steps=cfg.warmup_steps,
      decay_steps=max(decay_steps, cfg.warmup_steps + 1), end_value=cfg.min_lr)


def decay_mask(params):
  """Weight decay on matrices (and embedding tables) only; never on norms or biases."""
  return jax.tree.map(lambda p: p.ndim >= 2, params)


def build(cfg, total_steps: int) -> optax.GradientTransformation:
  """AdamW with global-norm clipping (clipping first, as in nanoGPT and PyTorch)."""
  chain = []
  if cfg.clip_norm:
    chain.append(optax.clip_by_global_norm(cfg.clip_norm))
  chain.append(optax.adamw(schedule(cfg, total_steps), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
                           weight_decay=cfg.weight_decay, mask=decay_mask))
  return optax.chain(*chain)
