"""Token windows: shuffled random-access training batches and exhaustive eval batches.

Both yield dicts of numpy arrays:
  inputs  [batch, context] int32
  targets [batch, context] int32, inputs shifted left by one token
  weights [batch, context] float32, 0 on padding
"""

from typing import Iterator

import grain
import numpy as np

from lm.errors import ConfigError, DataError

PAD_ID = 0


class TrainWindows:
  """Batches of random `context + 1`-token windows, a pure function of (seed, step).

  Every start offset 0 .. len(tokens) - context - 1 is one example; each epoch visits all of
  them in a fresh global shuffle (grain's index shuffle, O(1) memory), and batches run on
  across epoch boundaries. Because `batch(step)` needs no iterator state, resuming a run only
  needs the step.
  """

  def __init__(self, tokens: np.ndarray, *, context: int, batch_size: int, seed: int,
               split: str = "train"):
    """Args: tokens [n] int; context, batch_size > 0; seed >= 0; split names errors."""
    _check_sizes(context, batch_size)
    if not 0 <= seed < 2**32:
      raise ConfigError(f"seed={seed} must be in [0, 2**32)")
    tokens = np.asarray(tokens, np.int32)
    if tokens.ndim != 1:
      raise DataError(f"split {split!r}: expected a 1-D token array, got shape {tokens.shape}")
    if len(tokens) < context + 1:
      raise DataError(f"context {context} longer than split {split!r} ({len(tokens)} tokens)")
    self.context = context
    self.batch_size = batch_size
    self.num_windows = len(tokens) - context
    span = np.arange(context + 1)
    self._windows = (
        grain.MapDataset.range(self.num_windows)
        .shuffle(seed=_shuffle_seed(seed))
        .repeat()  # Infinite; grain reshuffles each epoch with seed + epoch.
        .map(lambda start: tokens[start + span]))
    self._dataset = self._windows.batch(batch_size)

  def batch(self, step: int, rows: slice | None = None) -> dict[str, np.ndarray]:
    """The batch for `step` >= 0: inputs/targets/weights, each [batch_size, context].

    rows: only these rows of it (a host's share under a multi-host mesh), read without
    reading the others.
    """
    if step < 0:
      raise ValueError(f"step must be >= 0, got {step}")
    if rows is None:
      chunk = self._dataset[step]  # [batch_size, context + 1]
    else:
      first = step * self.batch_size
      chunk = np.stack([self._windows[first + i]
                        for i in range(*rows.indices(self.batch_size))])
    return {"inputs": chunk[:, :-1], "targets": chunk[:, 1:],
            "weights": np.ones((len(chunk), self.context), np.float32)}


def _shuffle_seed(seed: int) -> int:
  # grain seeds epoch e with (seed + e), so runs with seeds s and s + 1 would share all but
  # one epoch order. Hashing the seed first keeps neighbouring seeds unrelated.
  return int(np.random.SeedSequence(seed).generate_state(1)[0])


def _check_sizes(context: int, batch_size: int) -> None:
  if context < 1:
    raise ConfigError(f"context={context} must be positive")
  if batch_size < 1:
    raise ConfigError(f"batch_size={batch_size} must be positive")


def num_eval_tokens(tokens: np.ndarray) -> int:
  """Number of scored target tokens in `tokens` [n]: every token after the first."""
  return max(len(tokens) - 1, 0)


def eval_batches(tokens: np.ndarray, *, context: int,
                 batch_size: int) -> Iterator[dict[str, np.ndarray]]:
  """Contiguous windows scoring every target token (tokens[1:]) exactly once.

  Window i has inputs tokens[i*context : (i+1)*context] and targets one token later. The
  last window and the last batch are padded with `PAD_ID` at weight 0, so every batch has
  the static shape [batch_size, context] (one compiled eval step).
  """
  _check_sizes(context, batch_size)
  tokens = np.asarray(tokens, np.int32)
  n = len(tokens)
  if n < 2:
    raise DataError(f"need at least 2 tokens to evaluate, got {n}")
  num_windows = -(-num_eval_tokens(tokens) // context)
  offsets = np.arange(context + 1)
  for first in range(0, num_windows, batch_size):
    window = np.arange(first, first + batch_size)
    positions = window[:, None] * context + offsets  # [batch_size, context + 1]
    valid = positions < n
    chunk = np.where(valid, tokens[np.minimum(positions, n - 1)], PAD_ID).astype(np.int32)
    yield {"inputs": chunk[:, :-1], "targets": chunk[:, 1:],
           "weights": valid[:, 1:].astype(np.float32)}
