"""Decoder-only transformer (GPT): causal self-attention over a token sequence.

    params = Decoder(cfg).init(rng, tokens)["params"]          # or `init_params` below
    logits, aux = Decoder(cfg).apply({"params": params}, tokens)

For decoding, `decoding_model(cfg, params)` wraps it for `lm.decoding` (a KV cache that is
passed in and returned; see `init_cache`).
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from lm.models.config import ModelConfig
from lm.models.layers import Block, Norm, causal_mask


class Decoder(nn.Module):
  """Token ids in, next-token logits out."""

  config: ModelConfig

  @nn.compact
  def __call__(self, tokens, *, positions=None, segment_ids=None, deterministic: bool = True,
               cache=None):
    """Forward pass.

    Args:
      tokens: [batch, length] int32.
      positions: [batch, length] int32; default 0..length-1 on every row.
      segment_ids: [batch, length] int32; tokens only attend within their segment (packing).
      deterministic: False turns dropout on (needs a 'dropout' rng).
      cache: a KV cache from `init_cache`: tokens continue it (positions and the mask come
        from the cache; `positions` and `segment_ids` must be None).

    Returns:
      logits [batch, length, vocab] float32 and a dict of named intermediates
      ('hidden': the final normalised residual stream [batch, length, width]; with a cache,
      'cache': the cache holding these tokens too).
    """
    cfg = self.config
    length = tokens.shape[1]
    if cache is not None:
      positions, mask = _cached_positions_and_mask(cache, length)
    elif positions is None:
      positions = jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), tokens.shape)
    embedding = self.param(
        "embedding",
        nn.with_logical_partitioning(nn.initializers.normal(cfg.init_std), ("vocab", "embed")),
        (cfg.vocab_size, cfg.width), cfg.storage_dtype)
    x = jnp.take(embedding, tokens, axis=0).astype(cfg.compute_dtype)
    if cfg.position == "learned":
      table = self.param(
          "position_embedding",
          nn.with_logical_partitioning(nn.initializers.normal(cfg.init_std), ("length", "embed")),
          (cfg.max_len, cfg.width), cfg.storage_dtype)
      x = x + jnp.take(table, positions, axis=0).astype(cfg.compute_dtype)
    x = nn.Dropout(cfg.dropout)(x, deterministic=deterministic)
    if cache is None:
      mask = causal_mask(length, segment_ids)
    layers = {}
    if cfg.scan_layers:
      x, layers = _ScannedBlocks(cfg, deterministic, name="layers")(
          x, None if cache is None else cache["layers"], positions, mask,
          None if cache is None else cache["index"])
    for i in range(0 if cfg.scan_layers else cfg.num_layers):
      name = f"block_{i}"
      if cache is None:
        x = _block_class(cfg)(cfg, name=name)(x, positions, mask, deterministic)
      else:
        x, layers[name] = Block(cfg, name=name)(x, positions, mask, deterministic,
                                                cache["layers"][name], cache["index"])
    hidden = Norm(cfg, name="final_norm")(x)
    if cfg.tie_embeddings:
      unembed = embedding.T
    else:
      unembed = self.param(
          "unembedding",
          nn.with_logical_partitioning(nn.initializers.normal(cfg.init_std), ("embed", "vocab")),
          (cfg.width, cfg.vocab_size), cfg.storage_dtype)
    # A 2-D matmul, as in layers.Dense (faster weight gradients on XLA:CPU).
    logits = hidden.reshape(-1, cfg.width) @ unembed.astype(cfg.compute_dtype)
    logits = logits.reshape(*tokens.shape, cfg.vocab_size)
    aux = {"hidden": hidden}
    if cache is not None:
      aux["cache"] = {**cache, "index": cache["index"] + length, "layers": layers}
    return logits.astype(jnp.float32), aux


_REMAT_POLICIES = {"full": None, "dots_saveable": jax.checkpoint_policies.dots_saveable}


def _block_class(cfg: ModelConfig):
  """Block, or Block under `nn.remat` with the policy `cfg.remat` names (training only).

  'full' saves only each block's input and recomputes the rest in the backward pass;
  'dots_saveable' keeps the matmul outputs and recomputes the cheap elementwise ops.
  """
  if cfg.remat == "none":
    return Block
  # static_argnums counts `self` as 0: argument 4 is `deterministic`.
  return nn.remat(Block, policy=_REMAT_POLICIES[cfg.remat], static_argnums=(4,))


class _ScanBody(nn.Module):
  """One block as a scan body: (x, layer cache) -> (x, new layer cache)."""

  config: ModelConfig
  deterministic: bool

  @nn.compact
  def __call__(self, x, layer_cache, positions, mask, cache_index):
    cfg = self.config
    if layer_cache is None:
      return _block_class(cfg)(cfg, name="block")(x, positions, mask, self.deterministic), None
    return Block(cfg, name="block")(x, positions, mask, self.deterministic, layer_cache,
                                    cache_index)


def _ScannedBlocks(cfg: ModelConfig, deterministic: bool, name: str):  # noqa: N802
  """All blocks as one `nn.scan`: params and KV cache stacked on a leading [layers] axis.

  One block is traced and compiled instead of `num_layers`, so compile time and program
  size stop growing with depth. The stacked axis carries the logical name 'layers'.
  """
  scanned = nn.scan(_ScanBody, variable_axes={"params": 0},
                    split_rngs={"params": True, "dropout": True},
                    in_axes=(0, nn.broadcast, nn.broadcast, nn.broadcast),
                    length=cfg.num_layers, metadata_params={nn.PARTITION_NAME: "layers"})
  return scanned(cfg, deterministic, name=name)


# KV cache. Prompts of different lengths are left-padded to one length (see lm.decoding), so
# every row writes its next token into the same slot and one dynamic_update_slice serves the
# whole batch. Each row's padding is masked out and its positions count from its first real
# token, so learned and rotary positions both see exactly what an unpadded forward pass sees.


def init_cache(cfg: ModelConfig, start, slots: int):
  """An empty KV cache for `slots` tokens per row.

  Args:
    start: [batch] int32, the first real slot of each row (its left-padding length).
    slots: cache length: the longest prompt plus the tokens to generate.

  Returns:
    {'index': int32 [] (slots filled so far), 'start': [batch],
     'layers': {'block_i': {'k', 'v': [batch, slots, kv_heads, head_dim] compute dtype}}};
    with cfg.scan_layers, 'layers' is {'k', 'v': [layers, batch, slots, kv_heads, head_dim]}.
  """
  shape = (start.shape[0], slots, cfg.kv_heads, cfg.dims_per_head)
  if cfg.scan_layers:
    shape = (cfg.num_layers, *shape)
    layers = {"k": jnp.zeros(shape, cfg.compute_dtype), "v": jnp.zeros(shape, cfg.compute_dtype)}
  else:
    zeros = lambda: jnp.zeros(shape, cfg.compute_dtype)  # noqa: E731
    layers = {f"block_{i}": {"k": zeros(), "v": zeros()} for i in range(cfg.num_layers)}
  return {"index": jnp.zeros((), jnp.int32), "start": jnp.asarray(start, jnp.int32),
          "layers": layers}


def _cached_positions_and_mask(cache, length: int):
  """Positions [batch, length] and mask [batch, 1, length, slots] of tokens continuing `cache`."""
  slots = jax.tree.leaves(cache["layers"])[0].shape[-3]  # [(layers,) batch, slots, kv, d]
  start = cache["start"][:, None]
  query = cache["index"] + jnp.arange(length, dtype=jnp.int32)  # [length]
  # Padding slots get position 0 (they are masked as keys and their outputs are unused); a
  # negative index would read a NaN-filled row of the learned table.
  positions = jnp.maximum(query[None] - start, 0)
  key = jnp.arange(slots, dtype=jnp.int32)
  mask = (key[None, None] <= query[None, :, None]) & (key[None, None] >= start[:, :, None])
  return positions, mask[:, None]


@dataclasses.dataclass(frozen=True)
class _CachedForward:
  """(params, tokens, cache) -> (logits, cache); hashable, so jit reuses its compilation."""

  config: ModelConfig

  def __call__(self, params, tokens, cache):
    logits, aux = Decoder(self.config).apply({"params": params}, tokens, cache=cache)
    return logits, aux["cache"]


@dataclasses.dataclass(frozen=True)
class _FullForward:
  """Like _CachedForward with no KV cache: keeps the tokens and reruns the whole sequence.

  The "cache" holds only token ids [batch, slots]; every call runs the model over all slots
  (padding and unwritten slots masked) and returns the logits of the new ones. For exactness
  checks and the cached-vs-uncached benchmark.
  """

  config: ModelConfig

  def __call__(self, params, tokens, cache):
    index, start = cache["index"], cache["start"]
    buffer = jax.lax.dynamic_update_slice(cache["tokens"], tokens, (0, index))
    slot = jnp.arange(buffer.shape[1], dtype=jnp.int32)[None]
    logits, _ = Decoder(self.config).apply(
        {"params": params}, buffer, positions=jnp.maximum(slot - start[:, None], 0),
        segment_ids=(slot >= start[:, None]).astype(jnp.int32))
    logits = jax.lax.dynamic_slice_in_dim(logits, index, tokens.shape[1], axis=1)
    return logits, {**cache, "tokens": buffer, "index": index + tokens.shape[1]}


@dataclasses.dataclass(frozen=True)
class _InitCache:
  config: ModelConfig
  kv_cache: bool

  def __call__(self, start, slots: int):
    if self.kv_cache:
      return init_cache(self.config, start, slots)
    return {"index": jnp.zeros((), jnp.int32), "start": jnp.asarray(start, jnp.int32),
            "tokens": jnp.zeros((start.shape[0], slots), jnp.int32)}


def decoding_model(cfg: ModelConfig, params, *, kv_cache: bool = True):
  """The `lm.decoding.Model` of a Decoder: its tokens_to_logits callback and cache maker.

  params are a pytree argument of the callback (jax.tree_util.Partial), not a constant
  baked into the compiled loop, so new params of the same shapes reuse the compilation.
  kv_cache=False recomputes the whole sequence at every step (same results, slower).
  max_len bounds rotary models too: they were trained on sequences of that length.
  """
  from lm import decoding  # Deferred: lm.decoding must not import models, nor models it.
  forward = _CachedForward(cfg) if kv_cache else _FullForward(cfg)
  return decoding.Model(tokens_to_logits=jax.tree_util.Partial(forward, params),
                        init_cache=_InitCache(cfg, kv_cache), max_len=cfg.max_len,
                        vocab_size=cfg.vocab_size)


def abstract_params(cfg: ModelConfig):
  """Shapes, dtypes and logical axis names of the params, without allocating them."""
  tokens = jax.ShapeDtypeStruct((1, cfg.max_len), jnp.int32)
  return jax.eval_shape(lambda t: Decoder(cfg).init(jax.random.key(0), t), tokens)["params"]


def init_params(cfg: ModelConfig, rng):
  """Plain pytree of params (logical-axis boxes removed)."""
  tokens = jnp.zeros((1, cfg.max_len), jnp.int32)
  return nn.meta.unbox(Decoder(cfg).init(rng, tokens)["params"])


def logical_axes(cfg: ModelConfig):
  """A pytree like the params whose leaves are PartitionSpecs of logical axis names."""
  return nn.get_partition_spec(abstract_params(cfg))


def param_count(cfg: ModelConfig, *, embeddings: bool = True) -> int:
  """Number of parameters; embeddings=False leaves out token and position tables."""
  params = nn.meta.unbox(abstract_params(cfg))
  total = sum(x.size for x in jax.tree.leaves(params))
  if not embeddings:
    total -= params["embedding"].size + (params["position_embedding"].size
                                         if "position_embedding" in params else 0)
  return total


def flops_per_token(cfg: ModelConfig, length: int | None = None) -> float:
  """Training FLOPs per token (forward + backward = 3x forward), matmuls only.

  Weight matmuls: 6 per parameter that multiplies activations (every non-embedding
  parameter matrix plus the output projection; token and position lookups are free).
  Attention scores and value mixing: a query at position i attends to i + 1 keys, so over a
  causal sequence of length T a token attends to (T + 1) / 2 keys on average. We count that
  causal half, 2 * 2 * heads * head_dim * (T + 1) / 2 per layer forward, rather than the
  full T that nanoGPT/PaLM count (which assumes no causal saving).
  """
  length = length or cfg.max_len
  # Unscanned shapes: a scanned model's stacked norm scales would look like matrices.
  params = nn.meta.unbox(abstract_params(dataclasses.replace(cfg, scan_layers=False)))
  matmul = sum(x.size for x in jax.tree.leaves(params) if x.ndim >= 2)
  matmul -= params["embedding"].size + params.get("position_embedding", jnp.zeros(0)).size
  matmul += cfg.width * cfg.vocab_size  # Output projection, tied or not.
  attention = cfg.num_layers * 2 * 2 * cfg.num_heads * cfg.dims_per_head * (length + 1) / 2
  return 3 * (2 * matmul + attention)
