"""Encoder-decoder family: cached decoding equals teacher forcing; T5 buckets match HF;
greedy, sampling and beam search through the shared decoding library; bad sources fail."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import seq2seq as seq2seq_configs
from lm import beam_search, decoding, families, train
from lm.errors import ConfigError
from lm.models import encoder_decoder as ed
from lm.models.config import ModelConfig
from lm.models.layers import relative_position_bucket


def _cfg(**kw):
  base = dict(vocab_size=20, max_len=16, num_layers=2, num_heads=2, width=16,
              family="encoder_decoder", num_encoder_layers=3)
  return ModelConfig(**{**base, **kw})


def _params(cfg):
  p = ed.init_params(cfg, jax.random.key(1))
  # Larger weights than init, so the logits are far from uniform and mistakes show.
  leaves, tree = jax.tree.flatten(p)
  keys = jax.random.split(jax.random.key(2), len(leaves))
  return jax.tree.unflatten(tree, [x + 0.3 * jax.random.normal(k, x.shape)
                                   for x, k in zip(leaves, keys)])


CASES = {
    "t5_v1_0": dict(position="relative", norm="rmsnorm", mlp="relu", scale_attention=False,
                    scale_tied_logits=True),
    "t5_v1_1": dict(position="relative", norm="rmsnorm", mlp="geglu", scale_attention=False,
                    tie_embeddings=False),
    "learned": dict(position="learned"),
    "rope_gqa": dict(position="rope", num_heads=4, num_kv_heads=2),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_cached_decoding_equals_teacher_forcing(case):
  cfg = _cfg(**CASES[case])
  params = _params(cfg)
  src = jax.random.randint(jax.random.key(3), (2, 7), 0, 20)
  src_mask = jnp.array([[True] * 7, [True] * 5 + [False] * 2])
  tgt = jax.random.randint(jax.random.key(4), (2, 9), 0, 20)
  full, _ = ed.EncoderDecoder(cfg).apply({"params": params}, src, decoder_inputs=tgt,
                                         padding_mask=src_mask)
  model = ed.decoding_model(cfg, params, src, src_mask)
  cache = model.init_cache(jnp.zeros(2, jnp.int32), 9)
  logits, cache = model.tokens_to_logits(tgt[:, :3], cache)  # Prefill, then one at a time.
  steps = [logits]
  for i in range(3, 9):
    logits, cache = model.tokens_to_logits(tgt[:, i:i + 1], cache)
    steps.append(logits)
  np.testing.assert_allclose(np.concatenate(steps, 1), full, atol=1e-5, rtol=1e-5)
  # The source padding is invisible: row 1 alone, unpadded, gives the same logits.
  alone, _ = ed.EncoderDecoder(cfg).apply({"params": params}, src[1:, :5],
                                          decoder_inputs=tgt[1:])
  np.testing.assert_allclose(alone, full[1:], atol=1e-5)


def test_relative_buckets_match_hugging_face_t5():
  torch = pytest.importorskip("torch")
  t5 = pytest.importorskip("transformers.models.t5.modeling_t5")
  rel = np.arange(-300, 301)
  for bidirectional in (True, False):
    for buckets, distance in ((32, 128), (16, 40)):
      ref = t5.T5Attention._relative_position_bucket(
          torch.tensor(rel), bidirectional=bidirectional, num_buckets=buckets,
          max_distance=distance).numpy()
      ours = relative_position_bucket(rel, bidirectional=bidirectional,
                                      num_buckets=buckets, max_distance=distance)
      np.testing.assert_array_equal(np.asarray(ours), ref)


def test_greedy_sample_and_beam_decode():
  cfg = _cfg(**CASES["t5_v1_0"])
  params = _params(cfg)
  src = jax.random.randint(jax.random.key(5), (3, 6), 0, 20)
  model = ed.decoding_model(cfg, params, src)
  greedy = decoding.generate(model, [[1]] * 3, max_new_tokens=6)
  # Greedy tokens are the argmax of the teacher-forced logits on greedy's own output.
  dec_in = jnp.concatenate([jnp.ones((3, 1), jnp.int32), greedy.tokens[:, :-1]], 1)
  full, _ = ed.EncoderDecoder(cfg).apply({"params": params}, src, decoder_inputs=dec_in)
  np.testing.assert_array_equal(jnp.argmax(full, -1), greedy.tokens)
  beam = beam_search.beam_search(model, [[1]] * 3, beam_size=1, max_new_tokens=6)
  np.testing.assert_array_equal(beam.tokens[:, 0], greedy.tokens)
  wide = beam_search.beam_search(model, [[1]] * 3, beam_size=4, max_new_tokens=6)
  assert (wide.scores[:, 0] >= beam.scores[:, 0] - 1e-5).all()
  sample = decoding.generate(model, [[1]] * 3, max_new_tokens=6,
                             strategy=decoding.Sample(temperature=1.0), rng=jax.random.key(0))
  again = decoding.generate(model, [[1]] * 3, max_new_tokens=6,
                            strategy=decoding.Sample(temperature=1.0), rng=jax.random.key(0))
  np.testing.assert_array_equal(sample.tokens, again.tokens)


def test_bad_sources_are_clear_errors():
  cfg = _cfg(position="learned")
  params = ed.init_params(cfg, jax.random.key(0))
  with pytest.raises(ConfigError, match="longer than the encoder's context"):
    ed.decoding_model(cfg, params, jnp.zeros((1, 17), jnp.int32))
  with pytest.raises(ConfigError, match="a source is empty"):
    ed.decoding_model(cfg, params, jnp.zeros((1, 4), jnp.int32), jnp.zeros((1, 4), bool))


@pytest.mark.parametrize("variant", ["reverse", "span", "smoke", "span_smoke"])
def test_variants_validate(variant):
  c = seq2seq_configs.get_config(variant)
  train.validate(c)
  cfg = ModelConfig(vocab_size=45, **c.model.to_dict())
  assert families.param_count(cfg) > 0 and families.flops_per_token(cfg) > 0


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["smoke", "span_smoke"])
def test_smoke_train_through_the_train_loop(tmp_path, corpus_file, variant):
  c = seq2seq_configs.get_config(variant)
  c.data.source, c.data.text_file = "text", corpus_file
  ev = train.train_and_evaluate(c, str(tmp_path))
  assert np.isfinite(ev["loss"])
  if variant == "smoke":
    assert 0.0 <= ev["exact_match_beam"] <= 1.0
