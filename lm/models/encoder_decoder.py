"""Encoder-decoder transformer (T5): a bidirectional encoder reads the source; a causal
decoder with cross-attention to the encoder output predicts the target.

    logits, aux = EncoderDecoder(cfg).apply({'params': p}, source, decoder_inputs=d,
                                            padding_mask=source_valid)  # [b, t, vocab]

Params: `embedding` (shared by encoder, decoder and, tied, the output), `encoder/...` and
`decoder/...` stacks (`block_i`, `final_norm`, and `relative_bias` or `position_embedding`),
`unembedding` if untied. The decoder's blocks add `cross_attention{,_norm}`.

Decoding (`decoding_model`) runs the encoder once per source at prefill and keeps each
decoder layer's cross-attention keys/values in the cache beside the self-attention KV cache;
every cache leaf has the batch as leading axis, so beam search copies and reorders them.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from lm.errors import ConfigError
from lm.models import decoder as decoder_lib
from lm.models.config import ModelConfig
from lm.models.encoder import _embed_param, run_blocks
from lm.models.layers import Dense, causal_mask, padding_mask as make_padding_mask


class Stack(nn.Module):
  """Embedded tokens -> hidden states: the encoder (causal=False) or decoder stack."""

  config: ModelConfig
  causal: bool

  @nn.compact
  def __call__(self, x, positions, mask, deterministic, *, memory=None, memory_kv=None,
               memory_mask=None, cache=None, key_positions=None):
    cfg = self.config
    if cfg.position == "learned":
      table = _embed_param(self, "position_embedding", (cfg.max_len, cfg.width),
                           ("length", "embed"), cfg)
      x = x + jnp.take(table, positions, axis=0).astype(cfg.compute_dtype)
    x = nn.Dropout(cfg.dropout)(x, deterministic=deterministic)
    layers = cfg.num_layers if self.causal else cfg.encoder_layers
    return run_blocks(cfg, x, positions, mask, deterministic, num_layers=layers,
                      bidirectional=not self.causal, cross=self.causal, memory=memory,
                      memory_kv=memory_kv, memory_mask=memory_mask, cache=cache,
                      key_positions=key_positions)


class EncoderDecoder(nn.Module):
  config: ModelConfig

  def setup(self):
    cfg = self.config
    self.embedding = _embed_param(self, "embedding", (cfg.vocab_size, cfg.width),
                                  ("vocab", "embed"), cfg)
    self.encoder = Stack(cfg, causal=False)
    self.decoder = Stack(cfg, causal=True)
    if not cfg.tie_embeddings:
      self.unembedding = _embed_param(self, "unembedding", (cfg.width, cfg.vocab_size),
                                      ("embed", "vocab"), cfg)

  def _embed(self, tokens):
    return jnp.take(self.embedding, tokens, axis=0).astype(self.config.compute_dtype)

  def encode(self, tokens, padding_mask=None, deterministic: bool = True):
    """tokens [batch, s] int32, padding_mask [batch, s] bool -> [batch, s, width]."""
    valid = jnp.ones(tokens.shape, bool) if padding_mask is None else padding_mask.astype(bool)
    positions = jnp.broadcast_to(jnp.arange(tokens.shape[1], dtype=jnp.int32), tokens.shape)
    hidden, _ = self.encoder(self._embed(tokens), positions,
                             make_padding_mask(valid, valid), deterministic)
    return hidden

  def decode(self, tokens, *, memory=None, memory_mask, deterministic: bool = True,
             cache=None):
    """Target-side logits [batch, t, vocab] float32 and aux ({'hidden'}, plus 'cache').

    memory: encoder output [batch, s, width] (teacher forcing), or None with a `cache`
    holding 'memory_kv' (decoding). memory_mask: [batch, s] bool.
    """
    cfg = self.config
    length = tokens.shape[1]
    key_positions = None
    if cache is None:
      positions = jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), tokens.shape)
      mask = causal_mask(length)
    else:
      positions, mask = decoder_lib._cached_positions_and_mask(cache, length)
      slots = cache["layers"]["block_0"]["k"].shape[1]
      key_positions = jnp.maximum(jnp.arange(slots, dtype=jnp.int32)[None]
                                  - cache["start"][:, None], 0)
    hidden, layers = self.decoder(
        self._embed(tokens), positions, mask, deterministic, memory=memory,
        memory_kv=None if cache is None else cache["memory_kv"],
        memory_mask=memory_mask.astype(bool)[:, None, None, :], cache=cache,
        key_positions=key_positions)
    if cfg.tie_embeddings:
      unembed = self.embedding.T
      if cfg.scale_tied_logits:
        hidden = hidden * cfg.width**-0.5
    else:
      unembed = self.unembedding
    logits = hidden.reshape(-1, cfg.width) @ unembed.astype(cfg.compute_dtype)
    logits = logits.reshape(*tokens.shape, cfg.vocab_size).astype(jnp.float32)
    aux = {"hidden": hidden}
    if cache is not None:
      aux["cache"] = {**cache, "index": cache["index"] + length, "layers": layers}
    return logits, aux

  def __call__(self, inputs, *, decoder_inputs, padding_mask=None, deterministic: bool = True):
    """inputs: source [batch, s]; decoder_inputs: [batch, t] (target shifted right behind
    a start token); padding_mask: source [batch, s] bool. -> (logits [b, t, vocab], aux)."""
    valid = jnp.ones(inputs.shape, bool) if padding_mask is None else padding_mask.astype(bool)
    memory = self.encode(inputs, valid, deterministic)
    logits, aux = self.decode(decoder_inputs, memory=memory, memory_mask=valid,
                              deterministic=deterministic)
    return logits, {**aux, "memory": memory}


def memory_kv(cfg: ModelConfig, params, memory):
  """{'block_i': {'k', 'v': [batch, s, kv_heads, head_dim]}}: each decoder layer's
  cross-attention keys and values of the encoder output `memory` [batch, s, width]."""
  dense = Dense(features=(cfg.kv_heads, cfg.dims_per_head), in_axes=("embed",),
                out_axes=("kv_heads", "head_dim"), config=cfg, std=cfg.init_std)
  out = {}
  for i in range(cfg.num_layers):
    p = params["decoder"][f"block_{i}"]["cross_attention"]
    out[f"block_{i}"] = {name: dense.apply({"params": p[param]}, memory)
                         for name, param in (("k", "key"), ("v", "value"))}
  return out


@dataclasses.dataclass(frozen=True)
class _Forward:
  """(params, source, source_mask, tokens, cache) -> (logits, cache). The first call (the
  prefill, whose cache has no 'memory_kv' yet) encodes the source once."""

  config: ModelConfig

  def __call__(self, params, source, source_mask, tokens, cache):
    model = EncoderDecoder(self.config)
    if "memory_kv" not in cache:
      memory = model.apply({"params": params}, source, source_mask, method="encode")
      cache = {**cache, "memory_kv": memory_kv(self.config, params, memory),
               "memory_mask": source_mask}
    logits, aux = model.apply({"params": params}, tokens, memory_mask=cache["memory_mask"],
                              cache=cache, method="decode")
    return logits, aux["cache"]


@dataclasses.dataclass(frozen=True)
class _InitCache:
  config: ModelConfig

  def __call__(self, start, slots: int):
    return decoder_lib.init_cache(self.config, start, slots)


def decoding_model(cfg: ModelConfig, params, source, source_mask=None):
  """The `lm.decoding.Model` that continues decoder prompts (usually one start token per
  row) given `source` [batch, s] int32 (right-padded; source_mask [batch, s] bool).

  Decoding prompts must come one per source row, in order.
  """
  from lm import decoding  # Deferred, as in lm.models.decoder.
  source = jnp.asarray(source, jnp.int32)
  if source_mask is None:
    source_mask = jnp.ones(source.shape, bool)
  if cfg.position == "learned" and source.shape[1] > cfg.max_len:
    raise ConfigError(f"source of {source.shape[1]} tokens is longer than the encoder's "
                      f"context (max_len={cfg.max_len})")
  if not bool(jnp.all(jnp.any(source_mask, axis=1))):
    raise ConfigError("a source is empty: every row needs at least one token")
  forward = jax.tree_util.Partial(_Forward(cfg), params, source, jnp.asarray(source_mask, bool))
  return decoding.Model(tokens_to_logits=forward, init_cache=_InitCache(cfg),
                        max_len=cfg.max_len, vocab_size=cfg.vocab_size)


def _dummy(cfg):
  return (jnp.zeros((1, cfg.max_len), jnp.int32), jnp.zeros((1, cfg.max_len), jnp.int32))


def init_params(cfg: ModelConfig, rng):
  src, tgt = _dummy(cfg)
  return nn.meta.unbox(EncoderDecoder(cfg).init(rng, src, decoder_inputs=tgt)["params"])


def abstract_params(cfg: ModelConfig):
  return jax.eval_shape(lambda: EncoderDecoder(cfg).init(
      jax.random.key(0), *_dummy(cfg)[:1], decoder_inputs=_dummy(cfg)[1]))["params"]
