"""Cross entropy against values worked by hand from softmax definitions."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from lm import losses


def _hand_nll(logits_row, target):
  z = sum(math.exp(v) for v in logits_row)
  return math.log(z) - logits_row[target], math.log(z)


LOGITS = [[[1.0, 2.0, 0.5], [0.0, 0.0, 0.0]], [[3.0, -1.0, 0.0], [0.2, 0.1, -0.3]]]
TARGETS = [[1, 2], [0, 2]]


def test_token_weighted_sums():
  weights = [[1.0, 1.0], [1.0, 0.0]]
  out = losses.cross_entropy(logits=jnp.array(LOGITS), targets=jnp.array(TARGETS),
                             weights=jnp.array(weights))
  expect = sum(_hand_nll(LOGITS[b][t], TARGETS[b][t])[0] * weights[b][t]
               for b in range(2) for t in range(2))
  np.testing.assert_allclose(out["loss_sum"], expect, rtol=1e-6)
  np.testing.assert_allclose(out["nll_sum"], expect, rtol=1e-6)
  assert float(out["weight_sum"]) == 3.0
  # argmax hits: row0 t0 (argmax 1 == 1), row0 t1 (ties -> 0 != 2), row1 t0 (0 == 0).
  assert float(out["correct_sum"]) == 2.0


def test_label_smoothing_matches_smoothed_target_distribution():
  eps = 0.1
  weights = jnp.ones((2, 2))
  out = losses.cross_entropy(logits=jnp.array(LOGITS), targets=jnp.array(TARGETS),
                             weights=weights, label_smoothing=eps)
  expect = 0.0
  for b in range(2):
    for t in range(2):
      row = LOGITS[b][t]
      _, log_z = _hand_nll(row, 0)
      q = [eps / 3 + (1 - eps) * (v == TARGETS[b][t]) for v in range(3)]
      expect += -sum(qv * (row[v] - log_z) for v, qv in enumerate(q))
  np.testing.assert_allclose(out["loss_sum"], expect, rtol=1e-6)


def test_z_loss_adds_log_z_squared():
  weights = jnp.array([[1.0, 0.0], [0.0, 2.0]])
  out = losses.cross_entropy(logits=jnp.array(LOGITS), targets=jnp.array(TARGETS),
                             weights=weights, z_loss=1e-2)
  nll00, lz00 = _hand_nll(LOGITS[0][0], TARGETS[0][0])
  nll11, lz11 = _hand_nll(LOGITS[1][1], TARGETS[1][1])
  z = 1e-2 * (lz00**2 + 2 * lz11**2)
  np.testing.assert_allclose(out["z_loss_sum"], z, rtol=1e-6)
  np.testing.assert_allclose(out["loss_sum"], nll00 + 2 * nll11 + z, rtol=1e-6)
  np.testing.assert_allclose(out["nll_sum"], nll00 + 2 * nll11, rtol=1e-6)


def test_per_sequence_mode_weighs_rows_equally():
  weights = [[1.0, 1.0], [1.0, 0.0]]
  out = losses.cross_entropy(logits=jnp.array(LOGITS), targets=jnp.array(TARGETS),
                             weights=jnp.array(weights), per_sequence=True)
  row0 = (_hand_nll(LOGITS[0][0], 1)[0] + _hand_nll(LOGITS[0][1], 2)[0]) / 2
  row1 = _hand_nll(LOGITS[1][0], 0)[0]
  np.testing.assert_allclose(out["loss_sum"], row0 + row1, rtol=1e-6)
  assert float(out["weight_sum"]) == 2.0
  assert float(out["token_sum"]) == 3.0


def test_all_padding_row_contributes_nothing_per_sequence():
  out = losses.cross_entropy(logits=jnp.array(LOGITS), targets=jnp.array(TARGETS),
                             weights=jnp.array([[1.0, 1.0], [0.0, 0.0]]), per_sequence=True)
  assert float(out["weight_sum"]) == 1.0
  assert np.isfinite(float(out["loss_sum"]))


def test_unknown_loss_name():
  with pytest.raises(ValueError, match="unknown loss 'nope'"):
    losses.get("nope")
