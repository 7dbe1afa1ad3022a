"""Scoring text: windows, perplexity and bits per byte against hand-worked values."""

import math

import jax
import numpy as np
import pytest

from lm import evaluation, tokenizers
from lm.errors import ConfigError, DataError
from lm.models import decoder
from lm.models.config import ModelConfig


def uniform_scorer(vocab_size):
  """A model whose every next-token distribution is uniform over the vocabulary."""
  return lambda inputs, targets: np.full(inputs.shape, -math.log(vocab_size), np.float32)


def test_uniform_model_perplexity_is_vocab_size():
  tok = tokenizers.build("char", "abcdefg")
  m = evaluation.text_metrics(uniform_scorer(7), tok, "gfedcbaabc" * 5,
                              evaluation.Protocol(window=8))
  assert m["tokens"] == 49  # The first of 50 tokens only conditions.
  assert m["perplexity"] == pytest.approx(7.0, rel=1e-6)
  # Every byte is one token of log2(7) bits, and the first is not scored.
  assert m["bits_per_byte"] == pytest.approx(math.log2(7) * 49 / 50, rel=1e-6)


@pytest.mark.parametrize("n,window,stride", [(2, 4, None), (9, 4, None), (10, 4, None),
                                             (23, 5, 2), (23, 5, 1), (7, 8, 3), (30, 6, 6)])
def test_windows_score_every_token_exactly_once(n, window, stride):
  tokens = np.arange(100, 100 + n)
  seen = []
  for b in evaluation.window_batches(tokens, evaluation.Protocol(window, stride), 3):
    # Targets are the inputs shifted by one within each window.
    rows = b["weights"].sum(1) > 0
    np.testing.assert_array_equal(b["inputs"][rows, 1:], b["targets"][rows, :-1])
    seen += list(b["targets"][b["weights"] > 0])
  assert sorted(seen) == list(range(101, 100 + n))


def test_sliding_windows_give_each_scored_token_enough_context():
  # Stride 2, window 6: after the first window every token sees >= 4 earlier tokens.
  tokens = np.arange(40)
  for b in evaluation.window_batches(tokens, evaluation.Protocol(6, 2), 4):
    slots = np.nonzero(b["weights"])[1]
    first_window = b["inputs"][:, 0] == 0
    assert all(s >= 4 for s in np.nonzero(b["weights"][~first_window])[1])
    assert len(slots) > 0


def _tiny_decoder(max_len):
  cfg = ModelConfig(vocab_size=11, num_layers=2, num_heads=2, width=16, max_len=max_len)
  params = decoder.init_params(cfg, jax.random.PRNGKey(1))
  return decoder.Decoder(cfg), params


def _reference_logprobs(model, params, tokens, context):
  """log p(tokens[t] | the up to `context` tokens before it), one forward per token."""
  out = []
  for t in range(1, len(tokens)):
    ctx = np.asarray(tokens[max(0, t - context):t])[None]
    logits, _ = model.apply({"params": params}, ctx)
    out.append(float(jax.nn.log_softmax(logits[0, -1])[tokens[t]]))
  return np.array(out)


def test_stride_one_equals_full_context_per_token():
  model, params = _tiny_decoder(max_len=8)
  scorer = evaluation.decoder_scorer(model, params)
  tokens = np.random.default_rng(0).integers(0, 11, 20)
  total, count = evaluation.token_logprob_sum(scorer, tokens, evaluation.Protocol(8, 1),
                                              batch_size=4)
  ref = _reference_logprobs(model, params, tokens, context=8)
  assert count == 19
  assert total == pytest.approx(ref.sum(), rel=1e-5)


def test_short_text_windows_equal_one_full_forward():
  model, params = _tiny_decoder(max_len=16)
  scorer = evaluation.decoder_scorer(model, params)
  tokens = np.random.default_rng(1).integers(0, 11, 12)
  full = _reference_logprobs(model, params, tokens, context=16).sum()
  for stride in (None, 1, 5):
    total, _ = evaluation.token_logprob_sum(scorer, tokens, evaluation.Protocol(16, stride))
    assert total == pytest.approx(full, rel=1e-5)
  # Disjoint windows of 4 lose context, so the total differs.
  short, _ = evaluation.token_logprob_sum(scorer, tokens, evaluation.Protocol(4))
  assert short != pytest.approx(full, rel=1e-4)


def test_bits_per_byte_two_ways_agree():
  text = "héllo wörld, the quick brown fox\n" * 3
  model, params = _tiny_decoder(max_len=16)
  rng = np.random.default_rng(0)
  # A byte model: per-token nats / ln 2 is bits per byte, up to the unscored first byte.
  scorer = lambda inputs, targets: -rng.uniform(0.5, 3.0, inputs.shape).astype(np.float32)
  tok = tokenizers.ByteTokenizer()
  m = evaluation.text_metrics(scorer, tok, text, evaluation.Protocol(16, prefix="<bos>"))
  assert m["tokens"] == len(text.encode("utf-8"))  # The prefix makes every byte scored.
  assert m["bits_per_byte"] == pytest.approx(m["nll"] / math.log(2), rel=1e-9)
  # Any tokenizer: log2(perplexity) * tokens / bytes.
  char = tokenizers.build("char", text)
  m = evaluation.text_metrics(scorer, char, text, evaluation.Protocol(16, stride=3))
  assert m["bits_per_byte"] == pytest.approx(
      math.log2(m["perplexity"]) * m["tokens"] / len(text.encode("utf-8")), rel=1e-9)
  assert m["word_perplexity"] == pytest.approx(
      math.exp(-m["logprob"] / len(text.split())), rel=1e-9)


def test_continuation_logprobs_match_per_token_reference():
  model, params = _tiny_decoder(max_len=8)
  scorer = evaluation.decoder_scorer(model, params)
  ctx, cont = [1, 2, 3, 4, 5, 6, 7], [8, 9]  # 9 tokens: the oldest context token is cut.
  (got,) = evaluation.continuation_logprobs(scorer, [(ctx, cont)], max_len=8, batch_size=2)
  ref = _reference_logprobs(model, params, ctx + cont, context=8)
  assert got == pytest.approx(ref[-2:].sum(), rel=1e-5)


def test_protocol_errors_and_record():
  with pytest.raises(ConfigError, match="stride=9"):
    evaluation.Protocol(8, 9)
  with pytest.raises(ConfigError, match="'<bos>' is not a special token"):
    evaluation.text_metrics(uniform_scorer(3), tokenizers.build("char", "abc"), "abc",
                            evaluation.Protocol(4, prefix="<bos>"))
  with pytest.raises(DataError, match="at least 2 tokens"):
    list(evaluation.window_batches([1], evaluation.Protocol(4), 2))
  d = evaluation.Protocol(64, 32, "<eos>").to_dict()
  assert d["window"] == 64 and d["stride"] == 32 and "stride 32" in d["description"]


def test_continuation_longer_than_the_model_scores_its_last_tokens():
  model, params = _tiny_decoder(max_len=4)
  scorer = evaluation.decoder_scorer(model, params)
  ctx, cont = [1, 2], [3, 4, 5, 6, 7, 8]
  (got,) = evaluation.continuation_logprobs(scorer, [(ctx, cont)], max_len=4)
  ref = _reference_logprobs(model, params, [4, 5, 6, 7, 8], context=4)  # Last 5 tokens.
  assert got == pytest.approx(ref.sum(), rel=1e-5)
