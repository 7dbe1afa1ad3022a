"""Preference losses against values and gradients worked by hand from the papers' formulas."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm import losses

# Two hand-picked pairs: log-probs of chosen/rejected under the policy and the reference.
PC, PR = [-1.0, -4.0], [-2.0, -3.0]
RC, RR = [-1.5, -3.0], [-1.5, -3.5]
NC, NR = [2.0, 4.0], [4.0, 3.0]  # Response lengths in tokens.
BETA = 0.5


def _sig(x):
  return 1.0 / (1.0 + math.exp(-x))


def _h(i):
  return (PC[i] - RC[i]) - (PR[i] - RR[i])  # Pair 0: 1.0, pair 1: -1.5.


def _call(name, **options):
  return losses.get_preference(name)(
      policy_chosen=jnp.array(PC), policy_rejected=jnp.array(PR),
      reference_chosen=jnp.array(RC), reference_rejected=jnp.array(RR),
      chosen_tokens=jnp.array(NC), rejected_tokens=jnp.array(NR), beta=BETA, **options)


def _grad(name, **options):
  """d loss_i / d policy_chosen_i and d loss_i / d policy_rejected_i."""
  def total(pc, pr):
    return losses.get_preference(name)(
        policy_chosen=pc, policy_rejected=pr, reference_chosen=jnp.array(RC),
        reference_rejected=jnp.array(RR), chosen_tokens=jnp.array(NC),
        rejected_tokens=jnp.array(NR), beta=BETA, **options)["loss"].sum()
  return jax.grad(total, argnums=(0, 1))(jnp.array(PC), jnp.array(PR))


def _hand(name, i, eps=0.1, gamma=0.3):
  """(loss, dloss/dpc, dloss/dpr) of pair i, by hand."""
  z = BETA * _h(i)
  if name == "dpo":
    return -math.log(_sig(z)), -BETA * _sig(-z), BETA * _sig(-z)
  if name == "cdpo":
    loss = -(1 - eps) * math.log(_sig(z)) - eps * math.log(_sig(-z))
    dz = -(1 - eps) * _sig(-z) + eps * _sig(z)
    return loss, BETA * dz, -BETA * dz
  if name == "robust_dpo":
    loss = ((1 - eps) * -math.log(_sig(z)) - eps * -math.log(_sig(-z))) / (1 - 2 * eps)
    dz = (-(1 - eps) * _sig(-z) - eps * _sig(z)) / (1 - 2 * eps)
    return loss, BETA * dz, -BETA * dz
  if name == "ipo":
    d = _h(i) - 1 / (2 * BETA)
    return d * d, 2 * d, -2 * d
  if name == "hinge":
    active = 1 - z > 0
    return max(0.0, 1 - z), -BETA if active else 0.0, BETA if active else 0.0
  if name == "simpo":
    u = BETA * PC[i] / NC[i] - BETA * PR[i] / NR[i] - gamma
    return (-math.log(_sig(u)), -_sig(-u) * BETA / NC[i], _sig(-u) * BETA / NR[i])
  if name == "orpo":
    mc, mr = PC[i] / NC[i], PR[i] / NR[i]
    pc, pr = math.exp(mc), math.exp(mr)
    v = math.log(pc / (1 - pc)) - math.log(pr / (1 - pr))
    loss = -mc - BETA * math.log(_sig(v))
    # d log-odds / d mean = 1 / (1 - p); d mean / d sum = 1 / n.
    dpc = (-1 - BETA * _sig(-v) / (1 - pc)) / NC[i]
    dpr = BETA * _sig(-v) / (1 - pr) / NR[i]
    return loss, dpc, dpr
  raise ValueError(name)


CASES = [("dpo", {}), ("cdpo", {"label_smoothing": 0.1}), ("robust_dpo", {"label_smoothing": 0.1}),
         ("ipo", {}), ("hinge", {}), ("simpo", {"gamma": 0.3}), ("orpo", {})]


@pytest.mark.parametrize("name,options", CASES)
def test_loss_and_gradient_match_hand_values(name, options):
  out = _call(name, **options)
  g_chosen, g_rejected = _grad(name, **options)
  for i in range(2):
    loss, d_chosen, d_rejected = _hand(name, i)
    np.testing.assert_allclose(out["loss"][i], loss, rtol=1e-5)
    np.testing.assert_allclose(g_chosen[i], d_chosen, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(g_rejected[i], d_rejected, rtol=1e-5, atol=1e-7)


def test_dpo_rewards_are_beta_log_ratios():
  out = _call("dpo")
  np.testing.assert_allclose(out["chosen_reward"], BETA * (np.array(PC) - RC), rtol=1e-6)
  np.testing.assert_allclose(out["rejected_reward"], BETA * (np.array(PR) - RR), rtol=1e-6)


def test_dpo_at_initialisation_is_log_two_with_zero_margin():
  """Policy == reference: every pair's loss is log 2 and every reward and margin is zero."""
  rng = np.random.default_rng(0)
  logits = jnp.array(rng.normal(size=(6, 5, 7)), jnp.float32)
  targets = jnp.array(rng.integers(0, 7, (6, 5)))
  weights = jnp.array(rng.integers(0, 2, (6, 5)), jnp.float32).at[:, -1].set(1.0)
  ref, _ = losses.sequence_logprobs(logits=logits, targets=targets, weights=weights)
  sums = losses.preference(logits=logits, targets=targets, weights=weights,
                           reference_logprobs=ref, name="dpo", beta=0.1)
  assert float(sums["weight_sum"]) == 3.0
  np.testing.assert_allclose(sums["loss_sum"] / sums["weight_sum"], math.log(2), rtol=1e-6)
  for key in ("margin_sum", "chosen_reward_sum", "rejected_reward_sum"):
    assert float(sums[key]) == 0.0
  assert float(sums["accuracy_sum"]) == 1.5  # Ties count a half each.


def test_sequence_logprobs_by_hand():
  logits = jnp.array([[[0.0, 1.0], [2.0, 0.0], [0.0, 0.0]]])
  targets = jnp.array([[1, 1, 0]])
  weights = jnp.array([[1.0, 0.0, 1.0]])
  logp, count = losses.sequence_logprobs(logits=logits, targets=targets, weights=weights)
  expect = (1.0 - math.log(1 + math.e)) + (0.0 - math.log(2.0))
  np.testing.assert_allclose(logp, [expect], rtol=1e-6)
  np.testing.assert_allclose(count, [2.0])


def test_padding_pairs_count_nowhere():
  rng = np.random.default_rng(1)
  logits = jnp.array(rng.normal(size=(4, 3, 5)), jnp.float32)
  targets = jnp.array(rng.integers(0, 5, (4, 3)))
  weights = jnp.ones((4, 3)).at[2:].set(0.0)  # Second pair is padding.
  full = losses.preference(logits=logits, targets=targets, weights=weights,
                           reference_logprobs=jnp.zeros(4), name="dpo", beta=0.1)
  first = losses.preference(logits=logits[:2], targets=targets[:2], weights=weights[:2],
                            reference_logprobs=jnp.zeros(2), name="dpo", beta=0.1)
  for k in full:
    np.testing.assert_allclose(full[k], first[k], rtol=1e-6)


def test_unknown_loss_is_a_config_error():
  with pytest.raises(losses.ConfigError, match="unknown preference loss"):
    losses.get_preference("dpoo")


def test_bradley_terry_reads_the_last_response_position():
  rewards = jnp.array([[9.0, 2.0, 9.0], [9.0, 0.5, 9.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
  weights = jnp.array([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
  sums = losses.bradley_terry(logits=rewards, targets=None, weights=weights)
  # Pair 0: r_w = 2.0, r_l = 0.5; pair 1 is padding.
  np.testing.assert_allclose(sums["loss_sum"], -math.log(_sig(1.5)), rtol=1e-6)
  assert float(sums["weight_sum"]) == 1.0 and float(sums["accuracy_sum"]) == 1.0
  np.testing.assert_allclose(sums["margin_sum"], 1.5)
  grad = jax.grad(lambda r: losses.bradley_terry(logits=r, targets=None,
                                                 weights=weights)["loss_sum"])(rewards)
  expect = np.zeros((4, 3))
  expect[0, 1], expect[1, 1] = -_sig(-1.5), _sig(-1.5)
  np.testing.assert_allclose(grad, expect, rtol=1e-6, atol=1e-8)
