"""Losses shared by every training stage. Keyword-only pure functions.

Each loss returns *sums and weights*, never means: the caller divides once, after summing
over micro-batches, devices and eval batches, so averages are exactly token-weighted.
"""

import jax
import jax.numpy as jnp

from lm.errors import ConfigError


def cross_entropy(*, logits, targets, weights, label_smoothing: float = 0.0,
                  z_loss: float = 0.0, per_sequence: bool = False):
  """Next-token cross entropy under teacher forcing.

  Args:
    logits: [batch, length, vocab] float; position t predicts targets[:, t].
    targets: [batch, length] int.
    weights: [batch, length] float; 0 for padding / prompt tokens.
    label_smoothing: eps; the target distribution is (1 - eps) one-hot + eps / vocab.
    z_loss: coefficient of log(Z)^2 per token (PaLM, Chowdhery et al. 2022), which keeps the
      softmax normaliser near 1. Added to 'loss_sum'; also reported alone as 'z_loss_sum'.
    per_sequence: False: every token weighs the same (sum over tokens, weight = token
      count). True: every sequence weighs the same (each row's weighted mean, then summed
      over rows with weight = number of rows that have any weight).

  Returns:
    dict of scalars: 'loss_sum' (what to optimise, divided by 'weight_sum'), 'weight_sum',
    'nll_sum' (plain negative log-likelihood, no smoothing or z-loss, for perplexity),
    'z_loss_sum', 'token_sum' (weighted token count, whatever the mode), 'correct_sum'
    (weighted argmax hits).
  """
  logits = logits.astype(jnp.float32)
  weights = weights.astype(jnp.float32)
  log_z = jax.nn.logsumexp(logits, axis=-1)  # [batch, length]
  target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
  nll = log_z - target_logit
  loss = nll
  if label_smoothing:
    # Cross entropy against the uniform part: mean over vocab of -log p.
    uniform = log_z - logits.mean(-1)
    loss = (1.0 - label_smoothing) * nll + label_smoothing * uniform
  z = z_loss * jnp.square(log_z)
  loss = loss + z
  correct = (jnp.argmax(logits, -1) == targets).astype(jnp.float32)
  if per_sequence:
    row_weight = weights.sum(-1)
    row_scale = jnp.where(row_weight > 0, 1.0 / jnp.maximum(row_weight, 1e-30), 0.0)
    token_scale = weights * row_scale[:, None]
    weight_sum = (row_weight > 0).sum().astype(jnp.float32)
  else:
    token_scale = weights
    weight_sum = weights.sum()
  return {
      "loss_sum": (loss * token_scale).sum(),
      "weight_sum": weight_sum,
      "nll_sum": (nll * weights).sum(),
      "z_loss_sum": (z * token_scale).sum(),
      "token_sum": weights.sum(),
      "correct_sum": (correct * weights).sum(),
  }


def sequence_logprobs(*, logits, targets, weights):
  """Log-probability of each row's weighted target tokens, and how many there are.

  Args:
    logits: [batch, length, vocab]; position t predicts targets[:, t].
    targets: [batch, length] int.
    weights: [batch, length]; 1 on the response tokens to score, 0 elsewhere.

  Returns:
    (logp [batch], tokens [batch]): sum over t of weights * log p(targets[t]), and the sum
    of the weights.
  """
  logits = logits.astype(jnp.float32)
  weights = weights.astype(jnp.float32)
  log_z = jax.nn.logsumexp(logits, axis=-1)
  target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
  return ((target_logit - log_z) * weights).sum(-1), weights.sum(-1)


# Preference losses. Each takes per-sequence log-probabilities of the chosen and rejected
# responses ([pairs] arrays, sums over response tokens) under the policy and, for the
# reference-based ones, under the frozen reference, and returns per-pair arrays:
#   'loss'             what to minimise,
#   'chosen_reward',   the implicit reward of each response (DPO: beta * log(pi / pi_ref)),
#   'rejected_reward'.
# Options a loss does not use are accepted and ignored, so one config drives them all.


def _implicit_rewards(policy_chosen, policy_rejected, reference_chosen, reference_rejected,
                      beta):
  chosen = beta * (policy_chosen - reference_chosen)
  rejected = beta * (policy_rejected - reference_rejected)
  return chosen, rejected


def dpo(*, policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta,
        label_smoothing: float = 0.0, **unused):
  """DPO, sigmoid loss (Rafailov et al. 2023, eq. 7), with label smoothing eps: cDPO.

  z = beta * [(log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l))];
  loss = -(1 - eps) log sigmoid(z) - eps log sigmoid(-z) (Mitchell 2023, "conservative DPO":
  the preference label is flipped with probability eps). eps = 0 is plain DPO.
  """
  del unused
  chosen, rejected = _implicit_rewards(policy_chosen, policy_rejected, reference_chosen,
                                       reference_rejected, beta)
  z = chosen - rejected
  loss = (-(1.0 - label_smoothing) * jax.nn.log_sigmoid(z)
          - label_smoothing * jax.nn.log_sigmoid(-z))
  return {"loss": loss, "chosen_reward": chosen, "rejected_reward": rejected}


def robust_dpo(*, policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta,
               label_smoothing: float = 0.0, **unused):
  """Robust DPO (Chowdhury et al. 2024, eq. 9): unbiased under label-flip rate eps < 1/2.

  loss = [(1 - eps) * -log sigmoid(z) - eps * -log sigmoid(-z)] / (1 - 2 eps).
  """
  del unused
  chosen, rejected = _implicit_rewards(policy_chosen, policy_rejected, reference_chosen,
                                       reference_rejected, beta)
  z = chosen - rejected
  loss = ((1.0 - label_smoothing) * -jax.nn.log_sigmoid(z)
          - label_smoothing * -jax.nn.log_sigmoid(-z)) / (1.0 - 2.0 * label_smoothing)
  return {"loss": loss, "chosen_reward": chosen, "rejected_reward": rejected}


def ipo(*, policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta,
        **unused):
  """IPO (Azar et al. 2023, eq. 17), with beta as the regulariser tau.

  h = log[pi(y_w) ref(y_l) / (pi(y_l) ref(y_w))]; loss = (h - 1 / (2 tau))^2.
  Rewards are reported as beta * log(pi / ref), as for DPO.
  """
  del unused
  h = (policy_chosen - reference_chosen) - (policy_rejected - reference_rejected)
  chosen, rejected = _implicit_rewards(policy_chosen, policy_rejected, reference_chosen,
                                       reference_rejected, beta)
  return {"loss": jnp.square(h - 1.0 / (2.0 * beta)), "chosen_reward": chosen,
          "rejected_reward": rejected}


def hinge(*, policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta,
          **unused):
  """Hinge loss on the DPO margin (SLiC-HF, Zhao et al. 2023; RSO, Liu et al. 2023).

  loss = max(0, 1 - z) with z = beta * [(log pi - log ref)(y_w) - (log pi - log ref)(y_l)].
  """
  del unused
  chosen, rejected = _implicit_rewards(policy_chosen, policy_rejected, reference_chosen,
                                       reference_rejected, beta)
  return {"loss": jax.nn.relu(1.0 - (chosen - rejected)), "chosen_reward": chosen,
          "rejected_reward": rejected}


def simpo(*, policy_chosen, policy_rejected, chosen_tokens, rejected_tokens, beta,
          gamma: float = 0.0, **unused):
  """SimPO (Meng et al. 2024, eq. 6): reference-free, length-normalised, target margin gamma.

  reward(y) = beta / |y| * log pi(y); loss = -log sigmoid(reward(y_w) - reward(y_l) - gamma).
  """
  del unused
  chosen = beta * policy_chosen / jnp.maximum(chosen_tokens, 1.0)
  rejected = beta * policy_rejected / jnp.maximum(rejected_tokens, 1.0)
  return {"loss": -jax.nn.log_sigmoid(chosen - rejected - gamma), "chosen_reward": chosen,
          "rejected_reward": rejected}


def _log_odds(mean_logp):
  # log(p / (1 - p)) with p = exp(mean_logp) < 1; log1p(-exp(x)) is stable for x < 0.
  mean_logp = jnp.minimum(mean_logp, -1e-6)
  return mean_logp - jnp.log1p(-jnp.exp(mean_logp))


def orpo(*, policy_chosen, policy_rejected, chosen_tokens, rejected_tokens, beta, **unused):
  """ORPO (Hong et al. 2024, eqs. 6-7): reference-free; beta is the paper's lambda.

  With P(y) = exp(mean token log-prob) and odds(y) = P / (1 - P):
  loss = NLL(y_w) (mean over its tokens) - lambda * log sigmoid(log odds(y_w) - log odds(y_l)).
  Rewards are reported as beta * mean log-prob (as TRL does).
  """
  del unused
  mean_chosen = policy_chosen / jnp.maximum(chosen_tokens, 1.0)
  mean_rejected = policy_rejected / jnp.maximum(rejected_tokens, 1.0)
  odds_ratio = _log_odds(mean_chosen) - _log_odds(mean_rejected)
  loss = -mean_chosen - beta * jax.nn.log_sigmoid(odds_ratio)
  return {"loss": loss, "chosen_reward": beta * mean_chosen,
          "rejected_reward": beta * mean_rejected}


PREFERENCE_LOSSES = {"dpo": dpo, "cdpo": dpo, "robust_dpo": robust_dpo, "ipo": ipo,
                     "hinge": hinge, "simpo": simpo, "orpo": orpo}
REFERENCE_FREE = ("simpo", "orpo")


def get_preference(name: str):
  """The preference loss registered under `name` ('cdpo' is 'dpo' with label smoothing)."""
  if name not in PREFERENCE_LOSSES:
    raise ConfigError(f"unknown preference loss {name!r}; known: {sorted(PREFERENCE_LOSSES)}")
  return PREFERENCE_LOSSES[name]


def preference(*, logits, targets, weights, reference_logprobs=None, name: str, beta: float,
               label_smoothing: float = 0.0, gamma: float = 0.0):
  """A preference loss over a batch of interleaved pairs, as sums for the train step.

  Args:
    logits: [2 * pairs, length, vocab]; rows 2i and 2i + 1 are the chosen and rejected
      sequences of pair i (prompt + response), so any even micro-batch split keeps pairs.
    targets, weights: [2 * pairs, length]; weights 1 on response tokens only. A pair whose
      chosen row has no weight is padding and counts nowhere.
    reference_logprobs: [2 * pairs] reference log-prob of each row's response (unused by
      reference-free losses; may be None for them).
    name, beta, label_smoothing, gamma: the loss and its options (see PREFERENCE_LOSSES).

  Returns:
    Scalar sums over real pairs: 'loss_sum', 'weight_sum' (pairs), 'chosen_reward_sum',
    'rejected_reward_sum', 'margin_sum', 'accuracy_sum' (chosen reward above rejected; a tie
    counts 1/2), 'policy_chosen_logp_sum', 'policy_rejected_logp_sum', 'logp_accuracy_sum'
    (policy gives the chosen response the higher log-prob), 'response_token_sum'.
  """
  logp, count = sequence_logprobs(logits=logits, targets=targets, weights=weights)
  logp, count = logp.reshape(-1, 2), count.reshape(-1, 2)
  if reference_logprobs is None:
    reference = jnp.zeros_like(logp)
  else:
    reference = reference_logprobs.reshape(-1, 2).astype(jnp.float32)
  out = get_preference(name)(
      policy_chosen=logp[:, 0], policy_rejected=logp[:, 1], reference_chosen=reference[:, 0],
      reference_rejected=reference[:, 1], chosen_tokens=count[:, 0],
      rejected_tokens=count[:, 1], beta=beta, label_smoothing=label_smoothing, gamma=gamma)
  real = (count[:, 0] > 0).astype(jnp.float32)
  margin = out["chosen_reward"] - out["rejected_reward"]
  hit = jnp.where(margin > 0, 1.0, jnp.where(margin == 0, 0.5, 0.0))
  total = lambda x: (x * real).sum()  # noqa: E731
  return {
      "loss_sum": total(out["loss"]),
      "weight_sum": real.sum(),
      "chosen_reward_sum": total(out["chosen_reward"]),
      "rejected_reward_sum": total(out["rejected_reward"]),
      "margin_sum": total(margin),
      "accuracy_sum": total(hit),
      "policy_chosen_logp_sum": total(logp[:, 0]),
      "policy_rejected_logp_sum": total(logp[:, 1]),
      "logp_accuracy_sum": total((logp[:, 0] > logp[:, 1]).astype(jnp.float32)),
      "response_token_sum": total(count.sum(-1)),
  }


def bradley_terry(*, logits, targets, weights):
  """Reward-model loss -log sigmoid(r(y_w) - r(y_l)) (Bradley & Terry 1952; Ouyang et al. 2022).

  Args:
    logits: [2 * pairs, length] scalar rewards at every position (`lm.reward.RewardModel`);
      a sequence's reward is the one at its last weighted position. Rows 2i / 2i + 1 are the
      chosen / rejected sequences of pair i, as in `preference`.
    targets: unused (the signature of the train step's loss).
    weights: [2 * pairs, length]; 1 on response tokens. A pair whose chosen row has no
      weight is padding.

  Returns:
    Scalar sums over real pairs: 'loss_sum', 'weight_sum' (pairs), 'accuracy_sum' (chosen
    scored higher; a tie counts 1/2), 'chosen_reward_sum', 'rejected_reward_sum',
    'margin_sum'.
  """
  del targets
  weights = weights.astype(jnp.float32)
  last = weights.shape[1] - 1 - jnp.argmax(weights[:, ::-1] > 0, axis=1)
  reward = jnp.take_along_axis(logits.astype(jnp.float32), last[:, None], axis=1)[:, 0]
  reward = reward.reshape(-1, 2)
  real = (weights.reshape(-1, 2, weights.shape[1])[:, 0].sum(-1) > 0).astype(jnp.float32)
  margin = reward[:, 0] - reward[:, 1]
  hit = jnp.where(margin > 0, 1.0, jnp.where(margin == 0, 0.5, 0.0))
  total = lambda x: (x * real).sum()  # noqa: E731
  return {"loss_sum": total(-jax.nn.log_sigmoid(margin)), "weight_sum": real.sum(),
          "accuracy_sum": total(hit), "chosen_reward_sum": total(reward[:, 0]),
          "rejected_reward_sum": total(reward[:, 1]), "margin_sum": total(margin)}


LOSSES = {"cross_entropy": cross_entropy}


def get(name: str):
  """The loss function registered under `name`."""
  if name not in LOSSES:
    raise ConfigError(f"unknown loss {name!r}; known: {sorted(LOSSES)}")
  return LOSSES[name]
