"""Decoder-only transformer (GPT): causal self-attention over a token sequence.

    params = Decoder(cfg).init(rng, tokens)["params"]          # or `init_params` below
    logits, aux = Decoder(cfg).apply({"params": params}, tokens)
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from lm.models.config import ModelConfig
from lm.models.layers import Block, Norm, causal_mask


class Decoder(nn.Module):
  """Token ids in, next-token logits out."""

  config: ModelConfig

  @nn.compact
  def __call__(self, tokens, *, positions=None, segment_ids=None, deterministic: bool = True):
    """Forward pass.

    Args:
      tokens: [batch, length] int32.
      positions: [batch, length] int32; default 0..length-1 on every row.
      segment_ids: [batch, length] int32; tokens only attend within their segment (packing).
      deterministic: False turns dropout on (needs a 'dropout' rng).

    Returns:
      logits [batch, length, vocab] float32 and a dict of named intermediates
      ('hidden': the final normalised residual stream [batch, length, width]).
    """
    cfg = self.config
    length = tokens.shape[1]
    if positions is None:
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
    mask = causal_mask(length, segment_ids)
    for i in range(cfg.num_layers):
      x = Block(cfg, name=f"block_{i}")(x, positions, mask, deterministic)
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
    return logits.astype(jnp.float32), {"hidden": hidden}


def abstract_params(cfg: ModelConfig):
  """Shapes, dtypes and logical axis names of the params, without allocating them."""
  tokens = jax.ShapeDtypeStruct((1, cfg.max_len), jnp.int32)
  return jax.eval_shape(lambda: Decoder(cfg).init(jax.random.key(0), tokens))["params"]


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
  params = nn.meta.unbox(abstract_params(cfg))
  matmul = sum(x.size for x in jax.tree.leaves(params) if x.ndim >= 2)
  matmul -= params["embedding"].size + params.get("position_embedding", jnp.zeros(0)).size
  matmul += cfg.width * cfg.vocab_size  # Output projection, tied or not.
  attention = cfg.num_layers * 2 * 2 * cfg.num_heads * cfg.dims_per_head * (length + 1) / 2
  return 3 * (2 * matmul + attention)
