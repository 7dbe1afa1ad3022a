"""Raw text of a split, by source name: a TFDS dataset or a local UTF-8 file."""

import math
import os

from lm.data import ptb, tiny_shakespeare
from lm.errors import ConfigError, DataError

SPLITS = ("train", "validation", "test")
SOURCES = ("tiny_shakespeare", "ptb", "text")


def load_text(source: str, split: str, *, data_dir: str | None = None,
              manual_dir: str | None = None, text_file: str | None = None,
              split_fractions: tuple[float, float, float] = (0.9, 0.05, 0.05)) -> str:
  """The text of `split` ('train', 'validation' or 'test') from `source`.

  Args:
    source: 'tiny_shakespeare' (TFDS, stock 90/5/5 split), 'ptb' (Mikolov's three files,
      see `lm.data.ptb`) or 'text' (`text_file`).
    data_dir, manual_dir: TFDS folders for 'tiny_shakespeare' (None: TFDS defaults); for
      'ptb', the folder holding the three files (manual_dir) or the download folder.
    text_file: the UTF-8 file for 'text'.
    split_fractions: (train, validation, test) shares of the characters for 'text'.

  Raises:
    DataError: unknown source or split, missing / empty / non-UTF-8 file, empty split.
    ConfigError: split_fractions that are not three shares summing to 1.
  """
  if split not in SPLITS:
    raise DataError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
  if source == "tiny_shakespeare":
    text = tiny_shakespeare.load_split_text(split, data_dir=data_dir, manual_dir=manual_dir)
    where = "tiny_shakespeare"
  elif source == "ptb":
    text = ptb.load_split_text(split, data_dir=data_dir, manual_dir=manual_dir)
    where = "ptb"
  elif source == "text":
    if text_file is None:
      raise DataError("data source 'text' needs a text_file")
    text = split_text(read_text_file(text_file), split_fractions)[split]
    where = f"{text_file} (fractions {tuple(split_fractions)})"
  else:
    raise DataError(f"unknown data source {source!r}; known: {', '.join(SOURCES)}")
  if not text:
    raise DataError(f"split {split!r} of {where} is empty")
  return text


def read_text_file(path: str) -> str:
  """The contents of a non-empty UTF-8 file."""
  if not os.path.isfile(path):
    raise DataError(f"{path}: no such file")
  with open(path, "rb") as f:
    data = f.read()
  if not data:
    raise DataError(f"{path}: file is empty")
  try:
    return data.decode("utf-8")
  except UnicodeDecodeError as e:
    raise DataError(f"{path}: not UTF-8 (byte offset {e.start}: {data[e.start:e.end]!r})") from None


def split_text(text: str, fractions: tuple[float, float, float]) -> dict[str, str]:
  """Splits characters into train / validation / test, in order, the way TFDS does.

  Train is the first int(n * f_train) characters; the rest is cut at
  int(rest * f_val / (f_val + f_test)), so validation takes the floor and test the
  remainder. With (0.9, 0.05, 0.05) this is the stock tiny_shakespeare arithmetic.
  """
  if (len(fractions) != 3 or not all(math.isfinite(f) for f in fractions)
      or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6):
    raise ConfigError(f"split_fractions={tuple(fractions)}: need three shares >= 0 summing to 1")
  f_train, f_val, f_test = fractions
  i = int(len(text) * f_train)
  train, rest = text[:i], text[i:]
  i = int(len(rest) * (f_val / (f_val + f_test))) if f_val + f_test > 0 else len(rest)
  return {"train": train, "validation": rest[:i], "test": rest[i:]}
