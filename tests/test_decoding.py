"""Decoding library on fake models: strategies against numpy distributions, processors
against hand-worked examples, stops, beam search, best-of-n, scoring, bad input."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from lm import beam_search, decoding, scoring
from lm import logits_processing as lp
from lm.errors import ConfigError


def _table_model(table):
  """A bigram model: the next-token log-probs depend only on the current token.

  table: [vocab, vocab] probabilities, row = current token. The cache only carries `start`.
  """
  logits = jnp.log(jnp.asarray(table, jnp.float32))

  def tokens_to_logits(tokens, cache):
    return logits[tokens], cache

  return decoding.Model(tokens_to_logits=tokens_to_logits,
                        init_cache=lambda start, slots: {"start": start},
                        max_len=None, vocab_size=len(table))


def _counter_model(vocab=10):
  """Deterministic: after token t the best next token is t + 1 (mod vocab), then t + 2."""
  table = np.full((vocab, vocab), 0.02)
  for t in range(vocab):
    table[t, (t + 1) % vocab] = 0.6
    table[t, (t + 2) % vocab] = 0.2
  return _table_model(table / table.sum(1, keepdims=True))


# ---------------------------------------------------------------------------- strategies

LOGITS = np.log(np.array([0.30, 0.22, 0.16, 0.12, 0.09, 0.06, 0.03, 0.02]))


def _softmax(x):
  e = np.exp(x - x.max())
  return e / e.sum()


def _reference(temperature=1.0, top_k=None, top_p=None, min_p=None, typical_p=None):
  """The filtered distribution, written independently in numpy (as the papers define it)."""
  p = _softmax(LOGITS / temperature)
  keep = np.ones(len(p), bool)
  if top_k is not None:
    keep &= p >= np.sort(p)[::-1][top_k - 1]
  if top_p is not None:
    q = np.where(keep, p, 0) / np.where(keep, p, 0).sum()
    order = np.argsort(-q)
    n = np.searchsorted(np.cumsum(q[order]), top_p - 1e-12) + 1  # Smallest prefix >= top_p.
    keep &= np.isin(np.arange(len(p)), order[:n])
  if min_p is not None:
    q = np.where(keep, p, 0) / np.where(keep, p, 0).sum()
    keep &= q >= min_p * q.max()
  if typical_p is not None:
    q = np.where(keep, p, 0) / np.where(keep, p, 0).sum()
    logq = np.log(np.where(q > 0, q, 1))
    entropy = -(q * logq).sum()
    distance = np.where(q > 0, np.abs(-logq - entropy), np.inf)
    order = np.argsort(distance)
    n = np.searchsorted(np.cumsum(q[order]), typical_p - 1e-12) + 1
    keep &= np.isin(np.arange(len(p)), order[:n])
  p = np.where(keep, p, 0)
  return p / p.sum()


@pytest.mark.parametrize("kwargs", [
    dict(temperature=0.7), dict(temperature=1.5), dict(top_k=3), dict(top_p=0.6),
    dict(min_p=0.3), dict(typical_p=0.5), dict(temperature=0.8, top_k=5, top_p=0.8, min_p=0.2),
])
def test_sampling_frequencies_match_the_filtered_distribution(kwargs):
  n = 40_000
  expected = _reference(**kwargs)
  strategy = lp.Sample(**kwargs)
  np.testing.assert_allclose(
      _softmax(np.asarray(strategy.filtered_logits(jnp.asarray(LOGITS)[None]))[0]), expected,
      atol=1e-6)
  draws = jax.jit(strategy)(jnp.broadcast_to(jnp.asarray(LOGITS, jnp.float32), (n, 8)),
                            jax.random.PRNGKey(0))
  counts = np.bincount(np.asarray(draws), minlength=8)
  assert np.all(counts[expected == 0] == 0)
  support = expected > 0
  chi2 = ((counts[support] - n * expected[support])**2 / (n * expected[support])).sum()
  assert stats.chi2.sf(chi2, df=support.sum() - 1) > 1e-3, (counts, n * expected)


def test_limits_reduce_to_greedy_and_to_plain_sampling():
  logits = jax.random.normal(jax.random.PRNGKey(1), (64, 50)) * 3
  greedy = lp.Greedy()(logits, None)
  for strategy in (lp.Sample(temperature=1e-4), lp.Sample(top_k=1), lp.Sample(top_p=1e-6),
                   lp.Sample(temperature=0.0)):
    for seed in range(3):
      np.testing.assert_array_equal(strategy(logits, jax.random.PRNGKey(seed)), greedy)
  plain = lp.Sample(temperature=0.9)
  for strategy in (lp.Sample(0.9, top_p=1.0), lp.Sample(0.9, top_k=50), lp.Sample(0.9, min_p=0.0),
                   lp.Sample(0.9, top_k=50, top_p=1.0, min_p=0.0)):
    np.testing.assert_array_equal(strategy.filtered_logits(logits), plain.filtered_logits(logits))
    key = jax.random.PRNGKey(7)
    np.testing.assert_array_equal(strategy(logits, key), plain(logits, key))


@pytest.mark.parametrize("kwargs,name", [
    (dict(temperature=-1.0), "temperature"), (dict(top_p=0.0), "top_p"),
    (dict(top_p=1.5), "top_p"), (dict(top_k=0), "top_k"), (dict(min_p=1.5), "min_p"),
    (dict(typical_p=0.0), "typical_p"),
])
def test_invalid_strategy_parameters_name_the_parameter(kwargs, name):
  with pytest.raises(ConfigError, match=name):
    lp.Sample(**kwargs)


# ---------------------------------------------------------------------------- processors


def _ctx(tokens, valid, step=0):
  """One row whose next token goes right after `tokens` (slot len(tokens))."""
  return lp.Context(tokens=jnp.asarray([tokens], jnp.int32), valid=jnp.asarray([valid]),
                    step=jnp.int32(step), index=jnp.int32(len(tokens)),
                    stop_tokens=jnp.full((1, 1), -1, jnp.int32))


def test_repetition_penalty_hand_worked():
  logits = jnp.array([[2.0, -1.0, 0.5, 3.0]])
  ctx = _ctx([2, 0, 1], [False, True, True])  # Slot 0 is padding: token 2 is not seen.
  out = lp.RepetitionPenalty(2.0)(logits, ctx)
  np.testing.assert_allclose(out, [[1.0, -2.0, 0.5, 3.0]])


def test_presence_and_frequency_penalties_count_generated_tokens_only():
  logits = jnp.zeros((1, 4))
  # Prompt [2], then generated 0, 0, 1 (step 3, next slot 4).
  ctx = _ctx([2, 0, 0, 1], [True] * 4, step=3)
  out = lp.PresenceFrequencyPenalty(presence=0.5, frequency=0.25)(logits, ctx)
  np.testing.assert_allclose(out, [[-(0.5 + 2 * 0.25), -(0.5 + 0.25), 0.0, 0.0]])


def test_no_repeat_ngram_hand_worked():
  logits = jnp.zeros((1, 8))
  banned = lambda n, toks, valid: np.flatnonzero(  # noqa: E731
      np.isinf(np.asarray(lp.NoRepeatNgram(n)(logits, _ctx(toks, valid)))[0])).tolist()
  assert banned(2, [1, 2, 3, 1], [True] * 4) == [2]  # "1 2" seen; text ends with 1.
  assert banned(3, [1, 2, 3, 1, 2], [True] * 5) == [3]
  assert banned(3, [1, 2, 4, 1, 3, 1, 2], [True] * 7) == [4]
  assert banned(1, [5, 6, 5], [True] * 3) == [5, 6]
  # Slot 0 is padding holding a 7: "7 3" is not a real bigram, so nothing is banned.
  assert banned(2, [7, 3, 3, 7], [False, True, True, True]) == []
  assert banned(2, [7, 3, 3, 7], [True] * 4) == [3]


def test_banned_forced_and_min_new_tokens():
  model = _counter_model()
  run = lambda procs, **kw: decoding.generate(  # noqa: E731
      model, [[0]], max_new_tokens=5, processors=procs, **kw).lists()[0]
  assert run([]) == [1, 2, 3, 4, 5]
  assert run([lp.BannedTokens((2,))]) == [1, 3, 4, 5, 6]  # After 1: 2 banned, 3 next best.
  assert run([lp.ForcedFirstToken(7)]) == [7, 8, 9, 0, 1]
  assert run([], stop_tokens=[2]) == [1, 2]
  assert run([lp.MinNewTokens(2)], stop_tokens=[2]) == [1, 3, 4, 5, 6]
  assert run([lp.MinNewTokens(1)], stop_tokens=[2]) == [1, 2]


# ---------------------------------------------------------------------------- stops, outputs


def test_per_row_stop_tokens_and_stop_sequences():
  model = _counter_model()
  out = decoding.generate(model, [[0], [3, 4], [0]], max_new_tokens=6,
                          stop_tokens=[[3], [7], []], pad_id=0)
  assert out.lists() == [[1, 2, 3], [5, 6, 7], [1, 2, 3, 4, 5, 6]]
  np.testing.assert_array_equal(out.tokens[0], [1, 2, 3, 0, 0, 0])
  np.testing.assert_array_equal(out.lengths, [3, 3, 6])
  logp = np.log(0.6 / (0.6 + 0.2 + 8 * 0.02))
  np.testing.assert_allclose(out.logprobs[0], [logp] * 3 + [0] * 3, rtol=1e-6)
  out = decoding.generate(model, [[0], [0]], max_new_tokens=6,
                          stop_sequences=[[[3, 4]], [[9], [2]]])
  assert out.lists() == [[1, 2, 3, 4], [1, 2]]
  # A stop sequence may span the prompt; one that does not occur never stops.
  out = decoding.generate(model, [[8, 9]], max_new_tokens=3, stop_sequences=[[9, 0], [5, 5]])
  assert out.lists() == [[0]]


def test_sampled_outputs_with_a_fake_model_are_deterministic_and_early_stop():
  traces = []
  counter = _counter_model()

  @chex.assert_max_traces(n=2)  # Prefill and one step, once: a retrace would raise.
  def ttl(tokens, cache):
    traces.append(tokens.shape)
    return counter.tokens_to_logits(tokens, cache)

  model = counter.replace(tokens_to_logits=ttl)
  kw = dict(max_new_tokens=8, strategy=lp.Sample(1.0), rng=jax.random.PRNGKey(3),
            stop_tokens=[5])
  a = decoding.generate(model, [[0, 1], [2]], **kw)
  b = decoding.generate(model, [[3, 3], [4]], **kw)  # New prompts, same shapes.
  assert len(traces) == 2  # Prefill and one step: compiled once.
  np.testing.assert_array_equal(a.tokens, decoding.generate(model, [[0, 1], [2]], **kw).tokens)
  assert all(t[-1] == 5 or len(t) == 8 for t in a.lists() + b.lists())
  with pytest.raises(AssertionError, match="trace"):  # A new prompt length does retrace.
    decoding.generate(model, [[0, 1, 2], [2]], **kw)


def test_best_of_n_keeps_the_most_likely_sample():
  model = _counter_model()
  best, every, scores = decoding.best_of_n(model, [[0], [5]], n=6, max_new_tokens=4,
                                           strategy=lp.Sample(1.5), rng=jax.random.PRNGKey(0))
  assert every.tokens.shape == (12, 4) and scores.shape == (2, 6)
  np.testing.assert_allclose(scores, every.logprobs.sum(-1).reshape(2, 6))
  for i in range(2):
    j = int(np.argmax(scores[i]))
    np.testing.assert_array_equal(best.tokens[i], every.tokens[i * 6 + j])


# ---------------------------------------------------------------------------- beam search

# Greedy takes 1 (0.5) then 0 (0.4): 0.2. The best two-token sequence is 2 then 3: 0.36.
BEAM_TABLE = np.array([
    [0.05, 0.50, 0.40, 0.05],
    [0.40, 0.30, 0.20, 0.10],
    [0.05, 0.05, 0.00001, 0.89999],
    [0.25, 0.25, 0.25, 0.25],
])


def test_beam_search_finds_the_best_sequence_greedy_misses():
  model = _table_model(BEAM_TABLE)
  greedy = decoding.generate(model, [[0]], max_new_tokens=2).lists()[0]
  assert greedy == [1, 0]
  out = beam_search.beam_search(model, [[0]], beam_size=2, max_new_tokens=2, length_penalty=0.0)
  np.testing.assert_array_equal(out.tokens[0, 0], [2, 3])
  np.testing.assert_allclose(out.scores[0, 0], np.log(0.4 * 0.89999), rtol=1e-5)


def test_beam_search_stop_tokens_length_penalty_and_early_stopping():
  model = _table_model(BEAM_TABLE)
  out = beam_search.beam_search(model, [[0]], beam_size=2, max_new_tokens=4, stop_tokens=[3],
                                length_penalty=1.0, early_stopping=True, pad_id=0)
  # Step 0 finishes [3] (0.05); step 1 finishes [2, 3] (0.36): the pool is full, so stop.
  np.testing.assert_array_equal(out.tokens[0], [[2, 3, 0, 0], [3, 0, 0, 0]])
  np.testing.assert_array_equal(out.lengths[0], [2, 1])
  np.testing.assert_allclose(out.scores[0], [np.log(0.4 * 0.89999) / 2, np.log(0.05)],
                             rtol=1e-5)


def test_beam_search_without_early_stopping_keeps_looking():
  model = _table_model(BEAM_TABLE)
  out = beam_search.beam_search(model, [[0]], beam_size=2, max_new_tokens=4, stop_tokens=[3],
                                length_penalty=0.0, early_stopping=False, pad_id=0)
  # [3] (0.05) is in the pool after step 1, but the alive [1, 0] (0.2) could still beat it;
  # at step 3, [1, 0, 2, 3] (0.2 * 0.4 * 0.9) does, and then nothing alive (<= 0.04) can.
  np.testing.assert_array_equal(out.tokens[0], [[2, 3, 0, 0], [1, 0, 2, 3]])
  np.testing.assert_array_equal(out.lengths[0], [2, 4])
  np.testing.assert_allclose(out.scores[0], np.log([0.4 * 0.89999, 0.5 * 0.4 * 0.4 * 0.89999]),
                             rtol=1e-5)


def test_beam_size_one_equals_greedy():
  model = _counter_model()
  prompts = [[0], [3, 4, 5]]
  greedy = decoding.generate(model, prompts, max_new_tokens=5)
  out = beam_search.beam_search(model, prompts, beam_size=1, max_new_tokens=5)
  np.testing.assert_array_equal(out.tokens[:, 0], greedy.tokens)


# ---------------------------------------------------------------------------- scoring, errors


def test_choice_probabilities_of_continuations():
  table = np.full((6, 6), 0.05)
  table[5] = [0.05, 0.5, 0.05, 0.25, 0.1, 0.05]  # After "5": p(1) = 0.5, p(3) = 0.25.
  table[1] = [0.1, 0.1, 0.4, 0.2, 0.1, 0.1]  # After "1": p(2) = 0.4.
  table /= table.sum(1, keepdims=True)
  model = _table_model(table)
  logp = scoring.continuation_logprobs(model, [4, 5], [[1, 2], [3]])
  np.testing.assert_allclose(logp, np.log([0.5 * 0.4, 0.25]), rtol=1e-5)
  np.testing.assert_allclose(scoring.choice_probabilities(model, [4, 5], [[1, 2], [3]]),
                             [0.2 / 0.45, 0.25 / 0.45], rtol=1e-5)


def test_bad_input_is_a_config_error():
  model = _counter_model()
  with pytest.raises(ConfigError, match="prompt 1 is empty"):
    decoding.generate(model, [[1], []], max_new_tokens=2)
  with pytest.raises(ConfigError, match="max_new_tokens"):
    decoding.generate(model, [[1]], max_new_tokens=0)
  with pytest.raises(ConfigError, match="rng"):
    decoding.generate(model, [[1]], max_new_tokens=2, strategy=lp.Sample(1.0))
  with pytest.raises(ConfigError, match="stop_tokens"):
    decoding.generate(model, [[1], [2]], max_new_tokens=2, stop_tokens=[[1], [2], [3]])
  with pytest.raises(ConfigError, match="beam_size"):
    beam_search.beam_search(model, [[1]], beam_size=0, max_new_tokens=2)
  with pytest.raises(ConfigError, match="strategy"):
    lp.strategy("nucleus")
