"""MLM masking statistics (BERT: 15% selected; 80% mask, 10% random, 10% kept)."""

import numpy as np

from lm.data import mlm


def test_masking_rates_match_bert_within_sampling_error():
  n_vocab, mask_id = 50, 99
  rng = np.random.default_rng(0)
  tokens = rng.integers(0, n_vocab, (400, 500))
  maskable = rng.random(tokens.shape) > 0.2  # 20% padding / special positions.
  out = mlm.mask_tokens(tokens, np.random.default_rng(1), mask_id=mask_id,
                        random_ids=np.arange(n_vocab), maskable=maskable)
  selected = out["weights"] > 0
  assert not selected[~maskable].any()  # Never padding or special tokens.
  assert (out["inputs"][~selected] == tokens[~selected]).all()
  assert (out["targets"] == tokens).all()
  n = maskable.sum()
  rate = selected.sum() / n
  assert abs(rate - 0.15) < 4 * np.sqrt(0.15 * 0.85 / n)
  k = selected.sum()
  masked = (out["inputs"][selected] == mask_id).mean()
  changed = ((out["inputs"][selected] != mask_id)
             & (out["inputs"][selected] != tokens[selected])).mean()
  # A random replacement equals the original with probability 1 / n_vocab.
  expect_changed = 0.1 * (1 - 1 / n_vocab)
  for got, p in ((masked, 0.8), (changed, expect_changed), (1 - masked - changed,
                                                            1 - 0.8 - expect_changed)):
    assert abs(got - p) < 4 * np.sqrt(p * (1 - p) / k), (got, p)


def test_random_replacements_are_ordinary_tokens():
  tokens = np.zeros((100, 100), np.int32)
  out = mlm.mask_tokens(tokens, np.random.default_rng(0), mask_id=7, random_ids=[3, 4],
                        rate=0.5)
  assert set(np.unique(out["inputs"])) <= {0, 3, 4, 7}
