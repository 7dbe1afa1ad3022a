"""Sequence-to-sequence rows for the encoder-decoder, and synthetic tasks with known answers.

Rows: 'inputs' [n, source_len] source ids right-padded, 'padding_mask' (True = real),
'decoder_inputs' [n, target_len] = BOS + target, 'targets' = target + EOS, 'weights' 1 on
the target and EOS tokens. Nothing is dropped: a source or target longer than its length is
an error.
"""

import numpy as np

from lm.errors import DataError


def rows(pairs, *, source_len: int, target_len: int, bos: int, eos: int, pad: int) -> dict:
  """pairs: [(source ids, target ids)] -> rows (see module doc); target_len counts EOS."""
  n = len(pairs)
  out = {"inputs": np.full((n, source_len), pad, np.int32),
         "decoder_inputs": np.full((n, target_len), pad, np.int32),
         "targets": np.full((n, target_len), pad, np.int32),
         "weights": np.zeros((n, target_len), np.float32)}
  for i, (src, tgt) in enumerate(pairs):
    if not len(src):
      raise DataError(f"example {i}: empty source")
    if len(src) > source_len:
      raise DataError(f"example {i}: source of {len(src)} tokens exceeds the encoder "
                      f"context {source_len}")
    if len(tgt) + 1 > target_len:
      raise DataError(f"example {i}: target of {len(tgt)} tokens + EOS exceeds {target_len}")
    out["inputs"][i, :len(src)] = src
    out["decoder_inputs"][i, :len(tgt) + 1] = [bos] + list(tgt)
    out["targets"][i, :len(tgt) + 1] = list(tgt) + [eos]
    out["weights"][i, :len(tgt) + 1] = 1.0
  out["padding_mask"] = np.arange(source_len)[None] < np.array(
      [len(s) for s, _ in pairs])[:, None]
  return out


def random_strings(rng: np.random.Generator, n: int, *, alphabet: str, min_len: int,
                   max_len: int) -> list[str]:
  lengths = rng.integers(min_len, max_len + 1, n)
  return ["".join(rng.choice(list(alphabet), k)) for k in lengths]


TASKS = {
    "reverse": lambda s: s[::-1],
    "sort": lambda s: "".join(sorted(s)),
    "upper": lambda s: s.upper(),
}
