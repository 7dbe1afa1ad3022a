"""Scan over layers and rematerialisation change memory and compile time, not results."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm import decoding
from lm import logits_processing as lp
from lm.models import decoder
from lm.models.config import ModelConfig
from lm.errors import ConfigError

CFG = ModelConfig(vocab_size=13, max_len=8, num_layers=3, num_heads=2, width=16,
                  position="rope")


def _stacked(params):
  """The unscanned params restacked into a scanned model's {'layers': {'block': ...}}."""
  out = {k: v for k, v in params.items() if not k.startswith("block_")}
  blocks = [params[f"block_{i}"] for i in range(CFG.num_layers)]
  out["layers"] = {"block": jax.tree.map(lambda *xs: jnp.stack(xs), *blocks)}
  return out


def _loss(cfg, params, tokens):
  logits, _ = decoder.Decoder(cfg).apply({"params": params}, tokens)
  return jax.nn.log_softmax(logits).mean()


def test_scanned_model_equals_loop_with_stacked_params():
  params = decoder.init_params(CFG, jax.random.PRNGKey(0))
  scanned = dataclasses.replace(CFG, scan_layers=True)
  shapes = jax.tree.map(jnp.shape, decoder.init_params(scanned, jax.random.PRNGKey(0)))
  assert shapes == jax.tree.map(jnp.shape, _stacked(params))
  assert decoder.logical_axes(scanned)["layers"]["block"]["mlp"]["up"]["kernel"] == (
      jax.sharding.PartitionSpec("layers", "embed", "mlp"))
  tokens = jnp.array([[1, 2, 3, 4, 5, 6, 7, 8]])
  a, b = _loss(CFG, params, tokens), _loss(scanned, _stacked(params), tokens)
  np.testing.assert_allclose(a, b, rtol=1e-6)
  ga = _stacked(jax.grad(lambda p: _loss(CFG, p, tokens))(params))
  gb = jax.grad(lambda p: _loss(scanned, p, tokens))(_stacked(params))
  for x, y in zip(jax.tree.leaves(ga), jax.tree.leaves(gb)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7)
  assert decoder.flops_per_token(scanned) == decoder.flops_per_token(CFG)


@pytest.mark.parametrize("remat", ["full", "dots_saveable"])
@pytest.mark.parametrize("scan", [False, True])
def test_remat_gives_the_same_gradients(remat, scan):
  base = dataclasses.replace(CFG, scan_layers=scan)
  params = decoder.init_params(base, jax.random.PRNGKey(0))
  tokens = jnp.array([[1, 2, 3, 4, 5, 6, 7, 8]])
  g0 = jax.grad(lambda p: _loss(base, p, tokens))(params)
  g1 = jax.grad(lambda p: _loss(dataclasses.replace(base, remat=remat), p, tokens))(params)
  for x, y in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7)


def test_full_remat_saves_less_for_the_backward_pass():
  # The residuals jax keeps between forward and backward, counted in bytes.
  big = dataclasses.replace(CFG, num_layers=4, width=64, max_len=64)
  params = decoder.init_params(big, jax.random.PRNGKey(0))
  tokens = jnp.zeros((4, 64), jnp.int32)

  def saved(cfg):
    _, vjp = jax.vjp(lambda p: _loss(cfg, p, tokens), params)
    return sum(x.nbytes for x in jax.tree.leaves(vjp) if hasattr(x, "nbytes"))

  assert saved(dataclasses.replace(big, remat="full")) < 0.5 * saved(big)


def test_scanned_model_decodes_like_the_loop():
  params = decoder.init_params(CFG, jax.random.PRNGKey(0))
  scanned = dataclasses.replace(CFG, scan_layers=True)
  prompts = [[1, 2, 3], [4]]
  a = decoding.generate(decoder.decoding_model(CFG, params), prompts, max_new_tokens=4,
                        strategy=lp.Greedy())
  b = decoding.generate(decoder.decoding_model(scanned, _stacked(params)), prompts,
                        max_new_tokens=4, strategy=lp.Greedy())
  np.testing.assert_array_equal(a.tokens, b.tokens)
  np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-5)


def test_bad_remat_policy():
  with pytest.raises(ConfigError, match="model.remat='some': expected one of"):
    ModelConfig(vocab_size=5, max_len=4, remat="some")
