"""Reading JSON / JSONL example files, with errors that name the file, the line and why.

    rows = read_records("alpaca.json")   # [(where, dict)], where = 'alpaca.json:item 3'
"""

import json
import os

from lm.errors import DataError


def read_records(path: str) -> list[tuple[str, dict]]:
  """(where, record) pairs from a JSON list (`.json`) or one object a line (`.jsonl`).

  `where` is 'path:line N' (JSONL, 1-based) or 'path:item N' (JSON list, 0-based), for
  error messages. Blank JSONL lines are skipped.

  Raises:
    DataError: a missing or empty file, invalid JSON, a record that is not an object.
  """
  if not os.path.isfile(path):
    raise DataError(f"{path}: no such file")
  with open(path, encoding="utf-8") as f:
    text = f.read()
  if not text.strip():
    raise DataError(f"{path}: file is empty")
  out = []
  if path.endswith(".jsonl"):
    for n, line in enumerate(text.splitlines(), 1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        raise DataError(f"{path}:line {n}: invalid JSON ({e.msg})") from None
      out.append((f"{path}:line {n}", record))
  else:
    try:
      data = json.loads(text)
    except json.JSONDecodeError as e:
      raise DataError(f"{path}:line {e.lineno}: invalid JSON ({e.msg})") from None
    if not isinstance(data, list):
      raise DataError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    out = [(f"{path}:item {i}", r) for i, r in enumerate(data)]
  for where, record in out:
    if not isinstance(record, dict):
      raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
  return out


def string_field(where: str, record: dict, key: str, *, optional: bool = False) -> str:
  """record[key] as a string; a clear DataError if it is missing or not a string."""
  if key not in record or record[key] is None:
    if optional:
      return ""
    raise DataError(f"{where}: missing field {key!r} (has {sorted(record)})")
  value = record[key]
  if not isinstance(value, str):
    raise DataError(f"{where}: field {key!r} must be a string, got {type(value).__name__}")
  return value
