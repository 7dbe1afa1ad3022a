"""Masked language modelling inputs (BERT, Devlin et al. 2019). Pure numpy.

Each maskable token (real, not special) is selected with probability `rate` (0.15); a
selected token becomes the mask token with probability 0.8, a uniformly random ordinary
token with 0.1, and stays itself with 0.1. The loss is on selected positions only:
weights = 1 there, 0 elsewhere, so `lm.losses.cross_entropy` scores exactly them.
"""

import numpy as np


def mask_tokens(tokens, rng: np.random.Generator, *, mask_id: int, random_ids,
                maskable=None, rate: float = 0.15, split=(0.8, 0.1, 0.1)):
  """Args:
    tokens: [batch, length] int.
    rng: numpy Generator (the batch's masking is a function of it).
    mask_id: id of the mask token.
    random_ids: [n] ids a replaced token is drawn from (ordinary tokens, no specials).
    maskable: [batch, length] bool; False on padding and special tokens (None: all).
    rate, split: selection probability and the (mask, random, keep) shares.

  Returns:
    {'inputs': [batch, length] int32 corrupted, 'targets': the original tokens, 'weights':
     [batch, length] float32, 1 on selected positions}.
  """
  tokens = np.asarray(tokens, np.int32)
  if maskable is None:
    maskable = np.ones(tokens.shape, bool)
  if not np.isclose(sum(split), 1.0):
    raise ValueError(f"mask/random/keep shares {split} must add to 1")
  selected = (rng.random(tokens.shape) < rate) & maskable
  choice = rng.random(tokens.shape)
  to_mask = selected & (choice < split[0])
  to_random = selected & (choice >= split[0]) & (choice < split[0] + split[1])
  random_ids = np.asarray(random_ids, np.int32)
  inputs = np.where(to_mask, mask_id, tokens)
  inputs = np.where(to_random, random_ids[rng.integers(0, len(random_ids), tokens.shape)],
                    inputs)
  return {"inputs": inputs.astype(np.int32), "targets": tokens,
          "weights": selected.astype(np.float32)}
