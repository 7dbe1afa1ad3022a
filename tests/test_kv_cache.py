"""KV-cache decoding of the Decoder equals full forward passes, with ragged prompts."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm import decoding, scoring
from lm.errors import ConfigError
from lm.models import decoder
from lm.models.config import ModelConfig

SMALL = ModelConfig(vocab_size=11, max_len=12, num_layers=2, num_heads=4, width=16)
PROMPTS = [[1, 2, 3], [4, 5, 6, 7, 8, 9], [10]]  # Ragged: left padding of 3, 0 and 5.


@pytest.mark.parametrize("position,kv_heads", [("learned", None), ("rope", 2)])
def test_cached_logits_equal_full_forward_at_every_step(position, kv_heads):
  cfg = dataclasses.replace(SMALL, position=position, num_kv_heads=kv_heads, init_std=0.3)
  params = decoder.init_params(cfg, jax.random.PRNGKey(0))
  model = decoder.Decoder(cfg)
  tokens, start = decoding.left_pad(PROMPTS)
  steps = 5
  continuation = np.array([[3, 1, 4, 1, 5], [9, 2, 6, 5, 3], [5, 8, 9, 7, 9]])
  cache = decoder.init_cache(cfg, jnp.asarray(start), tokens.shape[1] + steps)
  apply = jax.jit(lambda t, c: model.apply({"params": params}, t, cache=c))
  full = jax.jit(lambda t: model.apply({"params": params}, t)[0])
  logits, aux = apply(jnp.asarray(tokens), cache)
  cached = [logits[:, -1]]
  for s in range(steps):
    logits, aux = apply(jnp.asarray(continuation[:, s:s + 1]), aux["cache"])
    cached.append(logits[:, -1])
  for i, prompt in enumerate(PROMPTS):
    # Each row alone, unpadded, positions 0..n-1: the reference the padded batch must match.
    seq = np.concatenate([prompt, continuation[i]])[None]
    reference = full(jnp.asarray(seq))[0, len(prompt) - 1:]
    got = np.stack([c[i] for c in cached])
    np.testing.assert_allclose(got, reference, atol=1e-5, rtol=1e-5)
  # The prefill logits of every real prompt slot match too.
  prefill = apply(jnp.asarray(tokens), cache)[0]
  for i, prompt in enumerate(PROMPTS):
    np.testing.assert_allclose(prefill[i, start[i]:], full(jnp.asarray([prompt]))[0],
                               atol=1e-5, rtol=1e-5)


def _greedy_reference(cfg, params, prompt, n):
  """Argmax of full forward passes; right-padded to max_len (causal: the padding after the
  last token cannot change its logits), so one compilation serves every length."""
  full = jax.jit(lambda t: decoder.Decoder(cfg).apply({"params": params}, t)[0])
  seq = list(prompt)
  for _ in range(n):
    window = jnp.asarray([seq + [0] * (cfg.max_len - len(seq))])
    seq.append(int(jnp.argmax(full(window)[0, len(seq) - 1])))
  return seq[len(prompt):]


def test_greedy_equals_argmax_of_full_forward_and_uncached_path():
  cfg = dataclasses.replace(SMALL, init_std=0.3)
  params = decoder.init_params(cfg, jax.random.PRNGKey(1))
  out = decoding.generate(decoder.decoding_model(cfg, params), PROMPTS, max_new_tokens=6)
  for i, prompt in enumerate(PROMPTS):
    assert out.lists()[i] == _greedy_reference(cfg, params, prompt, 6)
  slow = decoding.generate(decoder.decoding_model(cfg, params, kv_cache=False), PROMPTS,
                           max_new_tokens=6)
  np.testing.assert_array_equal(slow.tokens, out.tokens)
  np.testing.assert_allclose(slow.logprobs, out.logprobs, atol=1e-5)


def test_sampling_is_deterministic_per_key():
  params = decoder.init_params(SMALL, jax.random.PRNGKey(2))
  model = decoder.decoding_model(SMALL, params)
  run = lambda seed: decoding.generate(model, PROMPTS, max_new_tokens=6,  # noqa: E731
                                       strategy=decoding.Sample(1.0),
                                       rng=jax.random.PRNGKey(seed)).tokens
  np.testing.assert_array_equal(run(0), run(0))
  assert not np.array_equal(run(0), run(1))


def test_new_prompts_and_params_of_the_same_shapes_do_not_recompile(monkeypatch):
  traces = []
  original = decoder._CachedForward.__call__

  def counting(self, params, tokens, cache):
    traces.append(tokens.shape)
    return original(self, params, tokens, cache)

  monkeypatch.setattr(decoder._CachedForward, "__call__", counting)
  cfg = dataclasses.replace(SMALL, num_layers=1)
  kwargs = dict(max_new_tokens=4, strategy=decoding.Sample(0.7, top_k=3),
                rng=jax.random.PRNGKey(0), stop_tokens=[3])
  decoding.generate(decoder.decoding_model(cfg, decoder.init_params(cfg, jax.random.PRNGKey(0))),
                    [[1, 2, 3], [4, 5]], **kwargs)
  first = len(traces)
  assert first == 2  # Traced once: prefill and step.
  decoding.generate(decoder.decoding_model(cfg, decoder.init_params(cfg, jax.random.PRNGKey(1))),
                    [[7], [8, 9, 10]], **kwargs)
  assert len(traces) == first


def test_learned_positions_cannot_run_past_max_len():
  model = decoder.decoding_model(SMALL, decoder.init_params(SMALL, jax.random.PRNGKey(0)))
  with pytest.raises(ConfigError, match="longer than the model's context"):
    decoding.generate(model, [list(range(11)) + [0, 1]], max_new_tokens=1)
  with pytest.raises(ConfigError, match="max_new_tokens"):
    decoding.generate(model, [[1, 2, 3]], max_new_tokens=11)
  decoding.generate(model, [[1, 2, 3]], max_new_tokens=10)  # 3 + 10 - 1 = 12 fits.


def test_continuation_logprobs_match_a_full_forward_pass():
  params = decoder.init_params(SMALL, jax.random.PRNGKey(3))
  prompt, choices = [4, 5, 6], [[1, 2, 3], [7]]
  got = scoring.continuation_logprobs(decoder.decoding_model(SMALL, params), prompt, choices)
  for value, choice in zip(got, choices):
    seq = prompt + choice
    logp = jax.nn.log_softmax(decoder.Decoder(SMALL).apply({"params": params},
                                                           jnp.asarray([seq]))[0][0])
    want = sum(logp[len(prompt) - 1 + j, t] for j, t in enumerate(choice))
    np.testing.assert_allclose(value, want, atol=1e-5)
