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
  """Multi-head or grouped-query attention: self-attention, or cross-attention to another
  sequence (an encoder's output) when given `memory` or precomputed `memory_kv`.

  Grouped-query attention (Ainslie et al. 2023) shares each key/value head among
  `num_heads // kv_heads` query heads; with kv_heads == num_heads it is plain multi-head.
  """

  config: ModelConfig

  @nn.compact
  def __call__(self, x, positions, mask, deterministic: bool, cache=None, cache_index=None,
               *, bias=None, memory=None, memory_kv=None):
    """x: [batch, length, width]; positions: [batch, length]; mask: [batch, 1, q, k] bool.

    Decoding passes `cache` {'k', 'v': [batch, slots, kv_heads, head_dim]} holding the keys
    and values of earlier tokens: this call's are written at slots cache_index (int32 scalar)
    onward, attention covers every slot (mask: [batch, 1, length, slots]) and the call
    returns (out, new cache). Without a cache it returns out, as in training.

    bias: [batch or 1, heads, q, k] added to the attention logits (T5 relative positions).
    memory: [batch, s, width]: cross-attention, keys and values come from it (no rotary:
      the two sequences share no position axis); memory_kv: its keys and values {'k', 'v':
      [batch, s, kv_heads, head_dim]} precomputed once per source (decoding, see
      `lm.models.encoder_decoder.memory_kv`). mask is then [batch, 1, q, s].
    """
    cfg = self.config
    h, kv, d = cfg.num_heads, cfg.kv_heads, cfg.dims_per_head
    dense = functools.partial(Dense, config=cfg, in_axes=("embed",), std=cfg.init_std)
    q = dense(features=(h, d), out_axes=("heads", "head_dim"), name="query")(x)
    cross = memory is not None or memory_kv is not None
    if memory_kv is not None:
      k, v = memory_kv["k"], memory_kv["v"]
    else:
      source = x if memory is None else memory
      k = dense(features=(kv, d), out_axes=("kv_heads", "head_dim"), name="key")(source)
      v = dense(features=(kv, d), out_axes=("kv_heads", "head_dim"), name="value")(source)
    if cfg.position == "rope" and not cross:
      q, k = rotary(q, positions, cfg.rope_theta), rotary(k, positions, cfg.rope_theta)
    if cache is not None:
      start = (0, cache_index, 0, 0)
      k = jax.lax.dynamic_update_slice(cache["k"], k.astype(cache["k"].dtype), start)
      v = jax.lax.dynamic_update_slice(cache["v"], v.astype(cache["v"].dtype), start)
      cache = {"k": k, "v": v}
    b, t = x.shape[:2]
    q = q.reshape(b, t, kv, h // kv, d)
    if cfg.scale_attention:  # T5 folds 1/sqrt(d) into its init instead.
      q = q * d**-0.5
    logits = jnp.einsum("bqkgd,bskd->bkgqs", q, k).astype(jnp.float32)
    if bias is not None:
      logits = logits + bias.reshape(bias.shape[0], kv, h // kv, *bias.shape[2:])
    logits = jnp.where(mask[:, :, None], logits, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(logits, axis=-1).astype(cfg.compute_dtype)
    probs = nn.Dropout(cfg.dropout)(probs, deterministic=deterministic)
    out = jnp.einsum("bkgqs,bskd->bqkgd", probs, v).reshape(b, t, h, d)
    residual_std = cfg.init_std / math.sqrt(2 * cfg.num_layers)
    out = Dense(features=(cfg.width,), in_axes=("heads", "head_dim"), out_axes=("embed",),
                config=cfg, std=residual_std, name="out")(out)
    return out if cache is None else (out, cache)


_ACTIVATIONS = {
    "gelu": functools.partial(nn.gelu, approximate=True),  # GPT-2's tanh approximation.
    "gelu_exact": functools.partial(nn.gelu, approximate=False),  # BERT's erf GELU.
    "relu": nn.relu,  # T5 v1.0.
    "swiglu": nn.silu,
    "geglu": functools.partial(nn.gelu, approximate=True),  # T5 v1.1 ('gelu_new').
}
GATED = ("swiglu", "geglu")


def activation(name: str):
  return _ACTIVATIONS[name]


class Mlp(nn.Module):
  """Two-matrix MLP (gelu, gelu_exact, relu) or gated (Shazeer 2020, three matrices):
  swiglu = silu(gate x) * up x, geglu = gelu(gate x) * up x."""

  config: ModelConfig

  @nn.compact
  def __call__(self, x):
    """x: [batch, length, width] -> [batch, length, width]."""
    cfg = self.config
    up = functools.partial(Dense, features=(cfg.hidden_width,), in_axes=("embed",),
                           out_axes=("mlp",), config=cfg, std=cfg.init_std)
    act = activation(cfg.mlp)
    if cfg.mlp in GATED:
      hidden = act(up(name="gate")(x)) * up(name="up")(x)
    else:
      hidden = act(up(name="up")(x))
    return Dense(features=(cfg.width,), in_axes=("mlp",), out_axes=("embed",), config=cfg,
                 std=cfg.init_std / math.sqrt(2 * cfg.num_layers), name="down")(hidden)


class Block(nn.Module):
  """Residual block: self-attention, optional cross-attention (`cross`), then MLP.

  norm_position 'pre' (GPT-2, T5): x + f(norm(x)); 'post' (BERT): norm(x + f(x)).
  """

  config: ModelConfig
  cross: bool = False  # Cross-attention to `memory` (encoder-decoder's decoder blocks).

  @nn.compact
  def __call__(self, x, positions, mask, deterministic: bool, cache=None, cache_index=None,
               *, bias=None, memory=None, memory_kv=None, memory_mask=None):
    """Returns x, or (x, new cache) when given an attention `cache` (see Attention).

    bias: self-attention logit bias; memory / memory_kv, memory_mask [batch, 1, q, s]: the
    cross-attention's source (see Attention).
    """
    cfg = self.config
    drop = nn.Dropout(cfg.dropout)

    def residual(x, name, fn):
      norm = Norm(cfg, name=f"{name}_norm")
      if cfg.norm_position == "post":
        return norm(x + drop(fn(x), deterministic=deterministic))
      return x + drop(fn(norm(x)), deterministic=deterministic)

    new_cache = []

    def self_attention(y):
      out = Attention(cfg, name="attention")(y, positions, mask, deterministic, cache,
                                             cache_index, bias=bias)
      if cache is not None:
        out, c = out
        new_cache.append(c)
      return out

    x = residual(x, "attention", self_attention)
    if self.cross:
      x = residual(x, "cross_attention", lambda y: Attention(cfg, name="cross_attention")(
          y, None, memory_mask, deterministic, memory=memory, memory_kv=memory_kv))
    x = residual(x, "mlp", Mlp(cfg, name="mlp"))
    return x if cache is None else (x, new_cache[0])


def relative_position_bucket(relative_position, *, bidirectional: bool, num_buckets: int,
                             max_distance: int):
  """T5's bucket of each (key - query) offset, exactly as HF `T5Attention._relative_position_bucket`.

  With n = num_buckets (halved when bidirectional, the upper half then holding offsets
  r > 0) and r the offset (|r| bidirectional; max(-r, 0) otherwise, i.e. only keys before
  the query are distinguished), and max_exact = n // 2:
    bucket = r                                                     if r < max_exact
    bucket = min(n - 1, max_exact + floor(log(r / max_exact) / log(max_distance / max_exact)
                                           * (n - max_exact)))     otherwise,
  the logarithm computed in float32 as HF does. relative_position: int array, any shape.
  """
  rel = jnp.asarray(relative_position, jnp.int32)
  buckets = jnp.zeros_like(rel)
  if bidirectional:
    num_buckets //= 2
    buckets = buckets + (rel > 0).astype(jnp.int32) * num_buckets
    rel = jnp.abs(rel)
  else:
    rel = -jnp.minimum(rel, 0)
  max_exact = num_buckets // 2
  is_small = rel < max_exact
  safe = jnp.maximum(rel, 1).astype(jnp.float32)  # log(0) is never selected below.
  large = max_exact + (jnp.log(safe / max_exact) / math.log(max_distance / max_exact)
                       * (num_buckets - max_exact)).astype(jnp.int32)
  large = jnp.minimum(large, num_buckets - 1)
  return buckets + jnp.where(is_small, rel, large)


class RelativeBias(nn.Module):
  """T5's learned per-head bias of the attention logits, by bucketed (key - query) offset.

  One table per stack, shared by all its layers (HF keeps it in layer 0 and passes the
  computed bias on; the same thing).
  """

  config: ModelConfig
  bidirectional: bool

  @nn.compact
  def __call__(self, query_positions, key_positions):
    """query_positions: [batch or 1, q]; key_positions: [batch or 1, k] -> [b, heads, q, k]
    float32."""
    cfg = self.config
    table = self.param("embedding", _normal(cfg.init_std, ("relpos_buckets", "heads")),
                       (cfg.relative_buckets, cfg.num_heads), cfg.storage_dtype)
    rel = key_positions[:, None, :] - query_positions[:, :, None]
    bucket = relative_position_bucket(rel, bidirectional=self.bidirectional,
                                      num_buckets=cfg.relative_buckets,
                                      max_distance=cfg.relative_max_distance)
    return jnp.take(table, bucket, axis=0).astype(jnp.float32).transpose(0, 3, 1, 2)


def padding_mask(query_valid, key_valid):
  """[batch, 1, q, k] bool: real queries see real keys. Args: [batch, q], [batch, k] bool.

  Padding queries see every real key too (their outputs are ignored, but a row of all
  -inf logits would give NaN gradients); a row with no real key at all is an input error
  caught before this (empty example).
  """
  del query_valid
  return jnp.broadcast_to(key_valid[:, None, None, :],
                          (key_valid.shape[0], 1, 1, key_valid.shape[1]))


def causal_mask(length: int, segment_ids=None):
  """[1 or batch, 1, length, length] bool: query q sees key k iff k <= q (same segment)."""
  mask = jnp.tril(jnp.ones((length, length), jnp.bool_))[None, None]
  if segment_ids is not None:
    mask = mask & (segment_ids[:, None, :, None] == segment_ids[:, None, None, :])
  return mask
