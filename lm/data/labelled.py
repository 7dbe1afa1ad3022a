"""Labelled text for classifiers: CSV (header `text,label`) or JSONL ({'text', 'label'}).

Rows are [CLS] + the text's tokens, right-padded to `context` with `pad_id`; the label is
an index into a label set fixed by the training file (sorted) or the config. Nothing is
dropped silently: an empty text, a label outside the set, or (truncation='error') a text
longer than the context is an error naming the file and line; truncation='truncate' cuts
the text and counts it.
"""

import csv
import json
import os

import numpy as np

from lm.errors import ConfigError, DataError


def load(path: str) -> list[tuple[str, str, str]]:
  """[(where 'file:line', text, label)] from a .csv or .jsonl/.json file."""
  if not os.path.exists(path):
    raise DataError(f"{path}: no such file")
  out = []
  with open(path, encoding="utf-8", newline="") as f:
    if path.endswith(".csv"):
      reader = csv.DictReader(f)
      if not reader.fieldnames or not {"text", "label"} <= set(reader.fieldnames):
        raise DataError(f"{path}: expected a CSV header with 'text' and 'label' columns, got "
                        f"{reader.fieldnames}")
      for i, row in enumerate(reader, start=2):
        out.append((f"{path}:{i}", row["text"], row["label"]))
    elif path.endswith((".jsonl", ".json")):
      for i, line in enumerate(f, start=1):
        if not line.strip():
          continue
        try:
          row = json.loads(line)
        except json.JSONDecodeError as e:
          raise DataError(f"{path}:{i}: not JSON ({e.msg})") from None
        if not isinstance(row, dict) or "text" not in row or "label" not in row:
          raise DataError(f"{path}:{i}: expected an object with 'text' and 'label'")
        out.append((f"{path}:{i}", str(row["text"]), str(row["label"])))
    else:
      raise ConfigError(f"{path}: expected a .csv or .jsonl file")
  if not out:
    raise DataError(f"{path}: no examples")
  return out


def label_set(examples, labels=None) -> tuple[str, ...]:
  """The configured labels, or the sorted distinct labels of the training examples."""
  if labels:
    return tuple(str(x) for x in labels)
  found = tuple(sorted({label for _, _, label in examples}))
  if len(found) < 2:
    raise DataError(f"the training file has {len(found)} distinct label(s); a classifier "
                    "needs at least 2")
  return found


def encode(examples, tokenizer, labels, *, context: int, cls_id: int, pad_id: int,
           truncation: str = "error"):
  """(rows {'inputs' [n, context], 'padding_mask', 'targets' [n, 1], 'weights' [n, 1]},
  counts {'examples', 'truncated'})."""
  if truncation not in ("error", "truncate"):
    raise ConfigError(f"truncation={truncation!r}: expected 'error' or 'truncate'")
  index = {label: i for i, label in enumerate(labels)}
  n = len(examples)
  inputs = np.full((n, context), pad_id, np.int32)
  targets = np.zeros((n, 1), np.int32)
  truncated = 0
  for r, (where, text, label) in enumerate(examples):
    if label not in index:
      raise DataError(f"{where}: label {label!r} is not in the label set {list(labels)}")
    if not text.strip():
      raise DataError(f"{where}: empty text")
    try:
      ids = [cls_id] + tokenizer.encode(text)
    except DataError as e:
      raise DataError(f"{where}: {e}") from None
    if len(ids) > context:
      if truncation == "error":
        raise DataError(f"{where}: {len(ids)} tokens (with [CLS]) exceed data.context="
                        f"{context}; raise the context or set task.truncation='truncate'")
      ids, truncated = ids[:context], truncated + 1
    inputs[r, :len(ids)] = ids
    targets[r, 0] = index[label]
  return ({"inputs": inputs, "padding_mask": inputs != pad_id, "targets": targets,
           "weights": np.ones((n, 1), np.float32)},
          {"examples": n, "truncated": truncated})


def real_vs_shuffled(text: str, rng: np.random.Generator, *, min_words: int = 4,
                     max_chars: int = 60) -> list[tuple[str, str]]:
  """A labelled task built from a corpus: each line of >= min_words words (at most
  max_chars characters) appears either as it is ('real') or with its words shuffled into a
  different order ('shuffled'), each with probability 1/2. [(text, label)]."""
  out = []
  for line in text.splitlines():
    words = line.split()
    if len(words) < min_words or len(line) > max_chars or len(set(words)) < 2:
      continue
    if rng.random() < 0.5:
      out.append((" ".join(words), "real"))
    else:
      shuffled = list(words)
      while shuffled == words:
        rng.shuffle(shuffled)
      out.append((" ".join(shuffled), "shuffled"))
  return out
