"""Decoder: a numpy reference forward pass, causality, options, counts."""

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm.errors import ConfigError
from lm.models import decoder
from lm.models.config import ModelConfig

SMALL = ModelConfig(vocab_size=11, max_len=8, num_layers=2, num_heads=4, width=16)


def _numpy_gpt(p, tokens, cfg):
  """GPT-2 style forward in plain numpy (float64), written from the papers, not our code."""
  def norm(x, scale):
    mu = x.mean(-1, keepdims=True) if cfg.norm == "layernorm" else 0.0
    x = x - mu
    return x / np.sqrt((x**2).mean(-1, keepdims=True) + cfg.norm_eps) * scale

  def gelu(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))

  p = jax.tree.map(lambda a: np.asarray(a, np.float64), p)
  t = tokens.shape[1]
  x = p["embedding"][tokens] + p["position_embedding"][np.arange(t)]
  mask = np.tril(np.ones((t, t), bool))
  for i in range(cfg.num_layers):
    b = p[f"block_{i}"]
    h = norm(x, b["attention_norm"]["scale"])
    a = b["attention"]
    q = np.einsum("btw,whd->bhtd", h, a["query"]["kernel"])
    k = np.einsum("btw,whd->bhtd", h, a["key"]["kernel"])
    v = np.einsum("btw,whd->bhtd", h, a["value"]["kernel"])
    s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(q.shape[-1])
    s = np.where(mask, s, -np.inf)
    w = np.exp(s - s.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    x = x + np.einsum("bhtd,hdw->btw", w @ v, a["out"]["kernel"])
    h = norm(x, b["mlp_norm"]["scale"])
    x = x + gelu(h @ b["mlp"]["up"]["kernel"]) @ b["mlp"]["down"]["kernel"]
  return norm(x, p["final_norm"]["scale"]) @ p["embedding"].T


def test_matches_numpy_reference():
  params = decoder.init_params(SMALL, jax.random.PRNGKey(0))
  tokens = np.array([[1, 2, 3, 4, 5, 6, 7, 8], [0, 10, 9, 3, 3, 3, 1, 2]])
  logits, aux = decoder.Decoder(SMALL).apply({"params": params}, jnp.asarray(tokens))
  np.testing.assert_allclose(logits, _numpy_gpt(params, tokens, SMALL), atol=2e-5)
  assert aux["hidden"].shape == (2, 8, 16)


# Every value of every option, each paired with different others (8 compiles, not 64).
OPTIONS = [(pos, norm, mlp, (None, 2)[i % 2], (True, False)[i // 2 % 2], (False, True)[i // 4])
           for i, (pos, norm, mlp) in enumerate(itertools.product(
               ["learned", "rope"], ["layernorm", "rmsnorm"], ["gelu", "swiglu"]))]


@pytest.mark.parametrize("position,norm,mlp,kv_heads,tie,bias", OPTIONS)
def test_every_option_is_causal(position, norm, mlp, kv_heads, tie, bias):
  cfg = dataclasses.replace(SMALL, position=position, norm=norm, mlp=mlp, num_kv_heads=kv_heads,
                            tie_embeddings=tie, use_bias=bias)
  params = decoder.init_params(cfg, jax.random.PRNGKey(1))
  apply = jax.jit(lambda t: decoder.Decoder(cfg).apply({"params": params}, t)[0])
  tokens = jnp.array([[1, 2, 3, 4, 5, 6, 7, 8]])
  base = apply(tokens)
  assert base.shape == (1, 8, 11) and base.dtype == jnp.float32
  for t in range(7):  # Changing token t + 1 must leave logits at positions <= t unchanged.
    changed = apply(tokens.at[0, t + 1].set((tokens[0, t + 1] + 5) % 11))
    np.testing.assert_array_equal(changed[0, :t + 1], base[0, :t + 1])
    assert not np.allclose(changed[0, t + 1:], base[0, t + 1:])


def test_grouped_query_equals_multi_head_with_repeated_kv():
  gqa = dataclasses.replace(SMALL, num_kv_heads=2)
  mha = dataclasses.replace(SMALL, num_kv_heads=None)
  p = decoder.init_params(gqa, jax.random.PRNGKey(2))
  # Query head h uses kv head h // (heads / kv_heads); repeat kv heads to get plain MHA.
  p_mha = jax.tree.map(lambda x: x, p)
  for i in range(2):
    for name in ("key", "value"):
      k = p[f"block_{i}"]["attention"][name]["kernel"]
      p_mha[f"block_{i}"]["attention"][name]["kernel"] = jnp.repeat(k, 2, axis=1)
  tokens = jnp.array([[3, 1, 4, 1, 5, 9, 2, 6]])
  a = decoder.Decoder(gqa).apply({"params": p}, tokens)[0]
  b = decoder.Decoder(mha).apply({"params": p_mha}, tokens)[0]
  np.testing.assert_allclose(a, b, atol=1e-5)


def test_rope_depends_only_on_relative_positions():
  # A large init makes attention sharp, so positions visibly matter.
  cfg = dataclasses.replace(SMALL, position="rope", init_std=0.5)
  p = decoder.init_params(cfg, jax.random.PRNGKey(3))
  tokens = jnp.array([[3, 1, 4, 1, 5, 9, 2, 6]])
  model = decoder.Decoder(cfg)
  a = model.apply({"params": p}, tokens)[0]
  b = model.apply({"params": p}, tokens, positions=jnp.arange(8)[None] + 37)[0]
  np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
  c = model.apply({"params": p}, tokens, positions=jnp.arange(8)[None] * 2)[0]
  assert not np.allclose(a[0, 1:], c[0, 1:], atol=1e-3)


def test_segment_ids_isolate_packed_sequences():
  model = decoder.Decoder(dataclasses.replace(SMALL, position="rope"))
  p = model.init(jax.random.PRNGKey(4), jnp.zeros((1, 8), jnp.int32))
  tokens = jnp.array([[3, 1, 4, 1, 5, 9, 2, 6]])
  seg = jnp.array([[0, 0, 0, 1, 1, 1, 1, 1]])
  pos = jnp.array([[0, 1, 2, 0, 1, 2, 3, 4]])
  packed = model.apply(p, tokens, positions=pos, segment_ids=seg)[0]
  alone = model.apply(p, tokens[:, 3:])[0]
  np.testing.assert_allclose(packed[:, 3:], alone, atol=1e-5)


def test_bfloat16_compute_keeps_float32_params_and_logits():
  cfg = dataclasses.replace(SMALL, dtype="bfloat16")
  p = decoder.init_params(cfg, jax.random.PRNGKey(5))
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(p))
  logits = decoder.Decoder(cfg).apply({"params": p}, jnp.ones((1, 8), jnp.int32))[0]
  full = decoder.Decoder(SMALL).apply({"params": p}, jnp.ones((1, 8), jnp.int32))[0]
  assert logits.dtype == jnp.float32
  np.testing.assert_allclose(logits, full, atol=0.05)
  stored = decoder.init_params(dataclasses.replace(cfg, param_dtype="bfloat16"),
                               jax.random.PRNGKey(5))
  assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(stored))


def test_dropout_needs_rng_and_changes_output():
  cfg = dataclasses.replace(SMALL, dropout=0.5)
  p = decoder.init_params(cfg, jax.random.PRNGKey(6))
  model, tokens = decoder.Decoder(cfg), jnp.ones((1, 8), jnp.int32)
  a = model.apply({"params": p}, tokens, deterministic=False,
                  rngs={"dropout": jax.random.PRNGKey(0)})[0]
  b = model.apply({"params": p}, tokens, deterministic=False,
                  rngs={"dropout": jax.random.PRNGKey(1)})[0]
  assert not np.allclose(a, b)
  c = model.apply({"params": p}, tokens)[0]
  np.testing.assert_array_equal(c, model.apply({"params": p}, tokens)[0])


def test_param_count_and_flops_of_nanogpt_baby():
  cfg = ModelConfig(vocab_size=65, max_len=64, num_layers=4, num_heads=4, width=128)
  w, L = 128, 4
  per_layer = 4 * w * w + 8 * w * w + 2 * w  # attention, MLP, two norm scales
  non_embedding = L * per_layer + w
  assert decoder.param_count(cfg, embeddings=False) == non_embedding  # nanoGPT: "0.80M"
  assert decoder.param_count(cfg) == non_embedding + 65 * w + 64 * w
  matmul = L * 12 * w * w + w * 65
  attention = L * 2 * 2 * w * (64 + 1) / 2
  assert decoder.flops_per_token(cfg) == 3 * (2 * matmul + attention)


def test_logical_axes_name_every_param():
  specs = decoder.logical_axes(SMALL)
  assert specs["embedding"] == jax.sharding.PartitionSpec("vocab", "embed")
  assert specs["block_0"]["mlp"]["up"]["kernel"] == jax.sharding.PartitionSpec("embed", "mlp")
  params = decoder.init_params(SMALL, jax.random.PRNGKey(0))
  for spec, x in zip(jax.tree.leaves(specs, is_leaf=lambda s: isinstance(
      s, jax.sharding.PartitionSpec)), jax.tree.leaves(params)):
    assert len(spec) == x.ndim


@pytest.mark.parametrize("field,value,message", [
    ("num_heads", 3, "does not divide"),
    ("num_kv_heads", 3, "does not divide"),
    ("norm", "batchnorm", "expected one of"),
    ("dropout", 1.0, "must be in"),
])
def test_bad_model_config(field, value, message):
  with pytest.raises(ConfigError, match=message):
    dataclasses.replace(SMALL, **{field: value})
