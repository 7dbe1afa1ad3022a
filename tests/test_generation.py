"""The sampling entry point's library side: settings to strategies, prompt files."""

import jax
import pytest

from lm import decoding, generation
from lm.errors import ConfigError
from lm.models import decoder
from lm.models.config import ModelConfig

CFG = ModelConfig(vocab_size=11, max_len=12, num_layers=1, num_heads=2, width=8)


@pytest.fixture(scope="module")
def model():
  return decoder.decoding_model(CFG, decoder.init_params(CFG, jax.random.PRNGKey(0)))


@pytest.mark.parametrize("settings", [
    generation.Settings(strategy="greedy", max_new_tokens=4),
    generation.Settings(strategy="sample", max_new_tokens=4, top_k=3, repetition_penalty=1.3,
                        no_repeat_ngram=2, num_samples=2),
    generation.Settings(strategy="beam", max_new_tokens=4, beam_size=2),
])
def test_decode_every_strategy(model, settings):
  out = generation.decode(model, [[1, 2], [3]], settings)
  assert [len(o) for o in out] == [4, 4]


def test_decode_fills_the_context_by_default(model):
  out = generation.decode(model, [[1, 2, 3]], generation.Settings(strategy="greedy"))
  assert len(out[0]) == CFG.max_len - 3 + 1


def test_end_of_training_sample_runs_past_the_context(model):
  params = decoder.init_params(CFG, jax.random.PRNGKey(0))
  ids = generation.sample_text(params, CFG, [1], num_tokens=30, temperature=0.0,
                               rng=jax.random.PRNGKey(0))
  first = decoding.generate(model, [[1]], max_new_tokens=12).lists()[0]
  assert len(ids) == 30 and ids[:12] == first


def test_bad_strategy_and_prompt_file(tmp_path):
  with pytest.raises(ConfigError, match="strategy"):
    generation.Settings(strategy="nucleus")
  path = tmp_path / "prompts.txt"
  path.write_text("ROMEO:\\nI\n\nJULIET:\n", encoding="utf-8")
  assert generation.read_prompts(str(path)) == ["ROMEO:\nI", "JULIET:"]
  path.write_text("\n\n", encoding="utf-8")
  with pytest.raises(ConfigError, match="no prompts"):
    generation.read_prompts(str(path))
