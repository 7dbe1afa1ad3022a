"""Transformer layers shared by every model family.

Parameters carry logical axis names (`nn.with_logical_partitioning`) so that sharding over a
device mesh is a rule table in the config, not a rewrite. The logical axes are:
  vocab, embed, heads, kv_heads, head_dim, mlp, length.
"""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from lm.models.config import ModelConfig


def _normal(std: float, axes: tuple[str, ...]):
  return nn.with_logical_partitioning(nn.initializers.normal(std), axes)


def _zeros(axes):
  return nn.with_logical_partitioning(nn.initializers.zeros_init(), axes)


def _ones(axes):
  return nn.with_logical_partitioning(nn.initializers.ones_init(), axes)


class Norm(nn.Module):
  """LayerNorm or RMSNorm over the last axis, computed in float32 for stability."""

  config: ModelConfig

  @nn.compact
  def __call__(self, x):
    """x: [..., width] -> [..., width] in the compute dtype."""
    cfg = self.config
    scale = self.param("scale", _ones(("embed",)), (cfg.width,), cfg.storage_dtype)
    x32 = x.astype(jnp.float32)
    if cfg.norm == "layernorm":
      x32 = x32 - x32.mean(-1, keepdims=True)
    y = x32 * jax.lax.rsqrt(jnp.square(x32).mean(-1, keepdims=True) + cfg.norm_eps)
    y = y * scale.astype(jnp.float32)
    if cfg.norm == "layernorm" and cfg.use_bias:
      y = y + self.param("bias", _zeros(("embed",)), (cfg.width,), cfg.storage_dtype)
    return y.astype(cfg.compute_dtype)


class Dense(nn.Module):
  """x @ kernel (+ bias) over the last `len(in_axes)` axes of x, with named axes."""

  features: tuple[int, ...]
  in_axes: tuple[str, ...]
  out_axes: tuple[str, ...]
  config: ModelConfig
  std: float

  @nn.compact
  def __call__(self, x):
    cfg = self.config
    n_in = len(self.in_axes)
    shape = x.shape[-n_in:] + self.features
    kernel = self.param("kernel", _normal(self.std, self.in_axes + self.out_axes), shape,
                        cfg.storage_dtype)
    # One 2-D matmul [tokens, in] @ [in, out]. XLA:CPU turns the weight gradient of a 3-D
    # dot_general into a transposed-layout fusion that made the whole train step 1.5x slower
    # (10.5k vs 16k tokens/s for nanoGPT's baby GPT); on GPU/TPU the two forms are the same.
    lead = x.shape[:-n_in]
    x2 = x.reshape(-1, math.prod(x.shape[-n_in:])).astype(cfg.compute_dtype)
    k2 = kernel.reshape(x2.shape[1], -1).astype(cfg.compute_dtype)
    y = (x2 @ k2).reshape(*lead, *self.features)
    if cfg.use_bias:
      bias = self.param("bias", _zeros(self.out_axes), self.features, cfg.storage_dtype)
      y = y + bias.astype(cfg.compute_dtype)
    return y


def rotary(x, positions, theta: float):
  """Rotary position embedding (Su et al. 2021), rotating pairs (i, i + d/2).

  x: [batch, length, heads, head_dim]; positions: [batch, length] int.
  """
  half = x.shape[-1] // 2
  freq = theta ** (-jnp.arange(half, dtype=jnp.float32) / half)  # [half]
  angle = positions[..., None].astype(jnp.float32) * freq  # [batch, length, half]
  sin, cos = jnp.sin(angle)[:, :, None, :], jnp.cos(angle)[:, :, None, :]
  x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return out.astype(x.dtype)


class Attention(nn.Module):
  """Multi-head or grouped-query self-attention.

  Grouped-query attention (Ainslie et al. 2023) shares each key/value head among
  `num_heads // kv_heads` query heads; with kv_heads == num_heads it is plain multi-head.
  """

  config: ModelConfig

  @nn.compact
  def __call__(self, x, positions, mask, deterministic: bool, cache=None, cache_index=None):
    """x: [batch, length, width]; positions: [batch, length]; mask: [batch, 1, q, k] bool.

    Decoding passes `cache` {'k', 'v': [batch, slots, kv_heads, head_dim]} holding the keys
    and values of earlier tokens: this call's are written at slots cache_index (int32 scalar)
    onward, attention covers every slot (mask: [batch, 1, length, slots]) and the call
    returns (out, new cache). Without a cache it returns out, as in training.
    """
    cfg = self.config
    h, kv, d = cfg.num_heads, cfg.kv_heads, cfg.dims_per_head
    dense = functools.partial(Dense, config=cfg, in_axes=("embed",), std=cfg.init_std)
    q = dense(features=(h, d), out_axes=("heads", "head_dim"), name="query")(x)
    k = dense(features=(kv, d), out_axes=("kv_heads", "head_dim"), name="key")(x)
    v = dense(features=(kv, d), out_axes=("kv_heads", "head_dim"), name="value")(x)
    if cfg.position == "rope":
      q, k = rotary(q, positions, cfg.rope_theta), rotary(k, positions, cfg.rope_theta)
    if cache is not None:
      start = (0, cache_index, 0, 0)
      k = jax.lax.dynamic_update_slice(cache["k"], k.astype(cache["k"].dtype), start)
      v = jax.lax.dynamic_update_slice(cache["v"], v.astype(cache["v"].dtype), start)
      cache = {"k": k, "v": v}
    b, t = x.shape[:2]
    q = q.reshape(b, t, kv, h // kv, d) * d**-0.5
    logits = jnp.einsum("bqkgd,bskd->bkgqs", q, k).astype(jnp.float32)
    logits = jnp.where(mask[:, :, None], logits, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(logits, axis=-1).astype(cfg.compute_dtype)
    probs = nn.Dropout(cfg.dropout)(probs, deterministic=deterministic)
    out = jnp.einsum("bkgqs,bskd->bqkgd", probs, v).reshape(b, t, h, d)
    residual_std = cfg.init_std / math.sqrt(2 * cfg.num_layers)
    out = Dense(features=(cfg.width,), in_axes=("heads", "head_dim"), out_axes=("embed",),
                config=cfg, std=residual_std, name="out")(out)
    return out if cache is None else (out, cache)


class Mlp(nn.Module):
  """GELU MLP (two matrices) or SwiGLU (Shazeer 2020, three matrices)."""

  config: ModelConfig

  @nn.compact
  def __call__(self, x):
    """x: [batch, length, width] -> [batch, length, width]."""
    cfg = self.config
    up = functools.partial(Dense, features=(cfg.hidden_width,), in_axes=("embed",),
                           out_axes=("mlp",), config=cfg, std=cfg.init_std)
    if cfg.mlp == "swiglu":
      hidden = nn.silu(up(name="gate")(x)) * up(name="up")(x)
    else:
      hidden = nn.gelu(up(name="up")(x), approximate=True)
    return Dense(features=(cfg.width,), in_axes=("mlp",), out_axes=("embed",), config=cfg,
                 std=cfg.init_std / math.sqrt(2 * cfg.num_layers), name="down")(hidden)


class Block(nn.Module):
  """Pre-norm residual block: x + attn(norm(x)), then x + mlp(norm(x))."""

  config: ModelConfig

  @nn.compact
  def __call__(self, x, positions, mask, deterministic: bool, cache=None, cache_index=None):
    """Returns x, or (x, new cache) when given an attention `cache` (see Attention)."""
    cfg = self.config
    drop = nn.Dropout(cfg.dropout)
    y = Attention(cfg, name="attention")(Norm(cfg, name="attention_norm")(x), positions, mask,
                                         deterministic, cache, cache_index)
    if cache is not None:
      y, cache = y
    x = x + drop(y, deterministic=deterministic)
    y = Mlp(cfg, name="mlp")(Norm(cfg, name="mlp_norm")(x))
    x = x + drop(y, deterministic=deterministic)
    return x if cache is None else (x, cache)


def causal_mask(length: int, segment_ids=None):
  """[1 or batch, 1, length, length] bool: query q sees key k iff k <= q (same segment)."""
  mask = jnp.tril(jnp.ones((length, length), jnp.bool_))[None, None]
  if segment_ids is not None:
    mask = mask & (segment_ids[:, None, :, None] == segment_ids[:, None, None, :])
  return mask
