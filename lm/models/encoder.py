"""Encoder-only transformer (BERT): bidirectional self-attention, one vector per token.

    hidden, aux = Encoder(cfg).apply({'params': p}, tokens, padding_mask=mask)  # [b, t, w]
    logits, aux = EncoderModel(cfg, head='mlm').apply({'params': p}, tokens, ...)

Heads (`EncoderModel.head`): 'mlm' (masked-token logits [batch, length, vocab], tied to
the token embedding), 'sequence' (label logits [batch, 1, num_labels] from the first token
or the mean of the real tokens, `cfg.pooling`), 'token' (label logits per token [batch,
length, num_labels]). Every head returns logits shaped for `lm.losses.cross_entropy`, so
the shared train step trains them all.

Padding: `padding_mask` [batch, length] bool (True = real token). Padding keys are masked
out of every attention, so real tokens' outputs do not depend on the padding (tested).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from lm.models.config import ModelConfig
from lm.models.layers import Dense, Norm, RelativeBias, activation, Block, padding_mask

HEADS = ("mlm", "sequence", "token")


def _embed_param(module, name, shape, axes, cfg):
  return module.param(name, nn.with_logical_partitioning(nn.initializers.normal(cfg.init_std),
                                                         axes), shape, cfg.storage_dtype)


def run_blocks(cfg: ModelConfig, x, positions, mask, deterministic, *, num_layers: int,
               bidirectional: bool, cross: bool = False, memory=None, memory_kv=None,
               memory_mask=None, cache=None, query_positions=None, key_positions=None):
  """The blocks `block_0..` of the calling module (names live in its scope) and the final
  norm. Used by the encoder and both stacks of the encoder-decoder.

  With position='relative' one `relative_bias` table serves every layer. query_positions /
  key_positions [batch, q] / [batch, k] (default `positions`) place the bias when decoding
  with a cache. Returns (hidden [batch, length, width], new layer caches or None).
  """
  bias = None
  if cfg.position == "relative":
    q = positions if query_positions is None else query_positions
    k = positions if key_positions is None else key_positions
    bias = RelativeBias(cfg, bidirectional, name="relative_bias")(q, k)
  layers = {}
  for i in range(num_layers):
    name = f"block_{i}"
    block = Block(cfg, cross=cross, name=name)
    kw = dict(bias=bias, memory=memory, memory_mask=memory_mask,
              memory_kv=None if memory_kv is None else memory_kv[name])
    if cache is None:
      x = block(x, positions, mask, deterministic, **kw)
    else:
      x, layers[name] = block(x, positions, mask, deterministic, cache["layers"][name],
                              cache["index"], **kw)
  if cfg.norm_position == "pre":  # Post-norm blocks already end in a norm.
    x = Norm(cfg, name="final_norm")(x)
  return x, (layers if cache is not None else None)


class Encoder(nn.Module):
  """Token ids in, one vector per token out."""

  config: ModelConfig

  @nn.compact
  def __call__(self, tokens, *, padding_mask=None, type_ids=None, positions=None,
               deterministic: bool = True):
    """tokens, type_ids, positions: [batch, length] int32; padding_mask: [batch, length]
    bool (None: all real). Returns hidden [batch, length, width] and {'embedding': the
    token table, for tied heads}."""
    cfg = self.config
    if padding_mask is None:
      padding_mask = jnp.ones(tokens.shape, bool)
    padding_mask = padding_mask.astype(bool)
    if positions is None:
      positions = jnp.broadcast_to(jnp.arange(tokens.shape[1], dtype=jnp.int32), tokens.shape)
    embedding = _embed_param(self, "embedding", (cfg.vocab_size, cfg.width),
                             ("vocab", "embed"), cfg)
    x = jnp.take(embedding, tokens, axis=0).astype(cfg.compute_dtype)
    if cfg.position == "learned":
      table = _embed_param(self, "position_embedding", (cfg.max_len, cfg.width),
                           ("length", "embed"), cfg)
      x = x + jnp.take(table, positions, axis=0).astype(cfg.compute_dtype)
    if cfg.type_vocab_size:
      table = _embed_param(self, "type_embedding", (cfg.type_vocab_size, cfg.width),
                           ("vocab", "embed"), cfg)
      types = jnp.zeros_like(tokens) if type_ids is None else type_ids
      x = x + jnp.take(table, types, axis=0).astype(cfg.compute_dtype)
    if cfg.embed_norm:
      x = Norm(cfg, name="embed_norm")(x)
    x = nn.Dropout(cfg.dropout)(x, deterministic=deterministic)
    mask = _mask(padding_mask)
    hidden, _ = run_blocks(cfg, x, positions, mask, deterministic, num_layers=cfg.num_layers,
                           bidirectional=True)
    return hidden, {"embedding": embedding}


def _mask(valid):
  return padding_mask(valid, valid)


class MlmHead(nn.Module):
  """Masked-token logits: [dense + activation + norm (BERT)], tied unembedding, bias."""

  config: ModelConfig

  @nn.compact
  def __call__(self, hidden, embedding):
    cfg = self.config
    if cfg.mlm_transform:
      # A width x width kernel cannot name 'embed' twice (one mesh axis cannot split two
      # dims): its input side is sharded like every matrix's, the output side stays whole.
      hidden = Dense((cfg.width,), ("embed",), (None,), cfg, cfg.init_std, name="transform")(
          hidden)
      hidden = Norm(cfg, name="transform_norm")(activation(cfg.mlp)(hidden))
    logits = hidden.reshape(-1, cfg.width) @ embedding.T.astype(cfg.compute_dtype)
    if cfg.use_bias:
      logits = logits + self.param("bias", nn.with_logical_partitioning(
          nn.initializers.zeros_init(), ("vocab",)), (cfg.vocab_size,), cfg.storage_dtype)
    return logits.reshape(*hidden.shape[:-1], cfg.vocab_size)


def pool(hidden, valid, how: str):
  """[batch, length, width] -> [batch, width]: the first token or the mean of real tokens."""
  if how == "first":
    return hidden[:, 0]
  w = valid.astype(hidden.dtype)[..., None]
  return (hidden * w).sum(1) / jnp.maximum(w.sum(1), 1.0)


class EncoderModel(nn.Module):
  """Encoder plus one head; returns (logits, aux) like the Decoder, for the shared step."""

  config: ModelConfig
  head: str = "mlm"

  @nn.compact
  def __call__(self, tokens, *, padding_mask=None, type_ids=None, positions=None,
               deterministic: bool = True):
    """Logits: 'mlm' [batch, length, vocab]; 'sequence' [batch, 1, labels]; 'token'
    [batch, length, labels], all float32. aux: {'hidden': [batch, length, width]}."""
    cfg = self.config
    valid = jnp.ones(tokens.shape, bool) if padding_mask is None else padding_mask.astype(bool)
    hidden, enc = Encoder(cfg, name="encoder")(tokens, padding_mask=valid, type_ids=type_ids,
                                               positions=positions, deterministic=deterministic)
    if self.head == "mlm":
      logits = MlmHead(cfg, name="mlm_head")(hidden, enc["embedding"])
    else:
      labels = cfg.num_labels
      if labels is None:
        raise ValueError("classifier heads need model.num_labels")
      x = pool(hidden, valid, cfg.pooling)[:, None] if self.head == "sequence" else hidden
      if self.head == "sequence" and cfg.pooler:
        x = jnp.tanh(Dense((cfg.width,), ("embed",), (None,), cfg, cfg.init_std,
                           name="pooler")(x))  # Output whole, as MlmHead's transform.
      x = nn.Dropout(cfg.dropout)(x, deterministic=deterministic)
      logits = Dense((labels,), ("embed",), ("classes",), cfg, cfg.init_std,
                     name="classifier")(x)
    return logits.astype(jnp.float32), {"hidden": hidden}


def encode(cfg: ModelConfig, params, tokens, padding_mask=None, type_ids=None):
  """[batch, length, width] hidden states of the encoder in `params` (any head's tree)."""
  params = params.get("encoder", params)
  hidden, _ = Encoder(cfg).apply({"params": params}, tokens, padding_mask=padding_mask,
                                 type_ids=type_ids)
  return hidden


def init_params(cfg: ModelConfig, rng, head: str = "mlm"):
  tokens = jnp.zeros((1, cfg.max_len), jnp.int32)
  return nn.meta.unbox(EncoderModel(cfg, head).init(rng, tokens)["params"])


def abstract_params(cfg: ModelConfig, head: str = "mlm"):
  tokens = jax.ShapeDtypeStruct((1, cfg.max_len), jnp.int32)
  return jax.eval_shape(lambda t: EncoderModel(cfg, head).init(jax.random.key(0), t),
                        tokens)["params"]
