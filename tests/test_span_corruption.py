"""T5 span corruption: noise amount and spans as T5 defines them; inputs/targets reassemble."""

import numpy as np
import pytest

from lm.data import span_corruption as sc


@pytest.mark.parametrize("length", [2, 5, 20, 64, 113, 512])
def test_noise_mask_counts_follow_t5(length):
  rng = np.random.default_rng(length)
  for _ in range(20):
    mask = sc.random_spans_noise_mask(length, rng)
    num_noise = min(max(int(np.round(length * 0.15)), 1), length - 1)
    num_spans = min(max(int(np.round(num_noise / 3)), 1), num_noise, length - num_noise)
    assert mask.sum() == num_noise
    starts = mask & ~np.concatenate([[False], mask[:-1]])
    assert starts.sum() == num_spans
    assert not mask[0]  # T5 starts with a non-noise span.


def test_mean_span_length_is_three():
  rng = np.random.default_rng(0)
  masks = [sc.random_spans_noise_mask(600, rng) for _ in range(50)]
  spans = sum(int((m & ~np.concatenate([[False], m[:-1]])).sum()) for m in masks)
  noise = sum(int(m.sum()) for m in masks)
  assert noise / spans == pytest.approx(3.0, abs=0.05)


def test_inputs_and_targets_reassemble_to_the_text():
  rng = np.random.default_rng(1)
  sentinels = list(range(1000, 1100))
  for length in (2, 3, 10, 64, 300):
    tokens = rng.integers(0, 50, length).tolist()
    mask = sc.random_spans_noise_mask(length, rng)
    inputs, targets = sc.corrupt(tokens, mask, sentinels)
    assert sc.reassemble(inputs, targets, sentinels) == tokens
    assert len(inputs) + len(targets) == length + 2 * (targets.count(1000) + sum(
        t in sentinels[1:] for t in targets))
    assert targets[0] == sentinels[0]


def test_hand_worked_example():
  tokens = list("abcdefgh")
  mask = np.array([0, 0, 1, 1, 0, 0, 1, 0], bool)
  inputs, targets = sc.corrupt(tokens, mask, ["<0>", "<1>"])
  assert inputs == ["a", "b", "<0>", "e", "f", "<1>", "h"]
  assert targets == ["<0>", "c", "d", "<1>", "g"]
