"""T5 span corruption (Raffel et al. 2020, `t5.data.preprocessors.span_corruption`). Numpy.

A noise mask covers about `noise_density` (0.15) of the tokens in spans of mean length
`mean_noise_span_length` (3). Each noise span becomes one sentinel in the input; the target
lists, for each span in order, its sentinel followed by the span's tokens:

    text     a b c d e f g h            noise: c d, g
    inputs   a b <s0> e f <s1> h
    targets  <s0> c d <s1> g

`reassemble(inputs, targets, sentinels)` undoes it (the tests' check). T5 ends both with
EOS; here the caller appends EOS.
"""

import numpy as np


def random_spans_noise_mask(length: int, rng: np.random.Generator, *,
                            noise_density: float = 0.15,
                            mean_noise_span_length: float = 3.0) -> np.ndarray:
  """[length] bool, True on noise, as T5's `random_spans_noise_mask`.

  num_noise = round(length * density) clipped to [1, length - 1]; num_spans =
  round(num_noise / mean_span) (>= 1); noise and non-noise lengths are each a random
  partition into num_spans positive parts; spans alternate non-noise, noise (so the
  sequence starts with non-noise, as T5).
  """
  if length < 2:
    raise ValueError(f"span corruption needs at least 2 tokens, got {length}")
  num_noise = int(np.round(length * noise_density))
  num_noise = min(max(num_noise, 1), length - 1)
  num_spans = max(int(np.round(num_noise / mean_noise_span_length)), 1)
  num_spans = min(num_spans, num_noise, length - num_noise)
  num_nonnoise = length - num_noise

  def partition(items: int, parts: int) -> np.ndarray:
    # Random composition of `items` into `parts` positive parts (T5's _random_segmentation).
    first_in_segment = np.zeros(items, np.int64)
    first_in_segment[rng.permutation(items - 1)[:parts - 1] + 1] = 1
    segment_id = np.cumsum(first_in_segment)
    return np.bincount(segment_id, minlength=parts)

  noise_lengths = partition(num_noise, num_spans)
  nonnoise_lengths = partition(num_nonnoise, num_spans)
  mask = np.zeros(length, bool)
  pos = 0
  for keep, noise in zip(nonnoise_lengths, noise_lengths):
    pos += keep
    mask[pos:pos + noise] = True
    pos += noise
  return mask


def corrupt(tokens, mask, sentinels) -> tuple[list[int], list[int]]:
  """(inputs, targets) of `tokens` [n] with noise `mask` [n]; sentinels: ids, one per span."""
  inputs, targets, span = [], [], -1
  tokens = [int(t) if isinstance(t, (int, np.integer)) else t for t in tokens]
  for i, (t, noisy) in enumerate(zip(tokens, mask)):
    starts = noisy and (i == 0 or not mask[i - 1])
    if starts:
      span += 1
      if span >= len(sentinels):
        raise ValueError(f"more noise spans than the {len(sentinels)} sentinel tokens")
    if noisy:
      if starts:
        inputs.append(sentinels[span])
        targets.append(sentinels[span])
      targets.append(t)
    else:
      inputs.append(t)
  return inputs, targets


def reassemble(inputs, targets, sentinels) -> list[int]:
  """The original tokens from `corrupt`'s (inputs, targets)."""
  index = {s: i for i, s in enumerate(sentinels)}
  spans, current = {}, None
  for t in targets:
    if t in index:
      current = index[t]
      spans[current] = []
    else:
      spans[current].append(t)
  out = []
  for t in inputs:
    out.extend(spans[index[t]] if t in index else [t])
  return out
