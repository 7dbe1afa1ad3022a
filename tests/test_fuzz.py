"""Property-based tests: readers and config validation raise only the project's errors."""

import os
import tempfile

import numpy as np
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from configs import shakespeare_char
from lm import train
from lm.data import sources, windows
from lm.errors import UserError

FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.filter_too_much])

BASE = shakespeare_char.get_config("smoke")


def _leaves(config, prefix=""):
  for key, value in config.items():
    if hasattr(value, "items"):
      yield from _leaves(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", value


FIELDS = sorted(k for k, _ in _leaves(BASE))


def _value_for(default):
  """Values of the field's own type (ml_collections rejects other types at assignment)."""
  if isinstance(default, bool):
    return st.booleans()
  if isinstance(default, int):
    return st.integers(min_value=-2**40, max_value=2**40)
  if isinstance(default, float):
    return st.floats(allow_nan=True, allow_infinity=True)
  if isinstance(default, str):
    return st.text(max_size=20)
  if isinstance(default, tuple):
    return st.tuples(*[st.floats(allow_nan=True) for _ in default])
  return st.one_of(st.none(), st.integers(-10, 10**6))  # Optional ints (FieldReference None).


@st.composite
def overrides(draw):
  chosen = draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=4, unique=True))
  values = {}
  for key in chosen:
    default = dict(_leaves(BASE))[key]
    values[key] = draw(_value_for(default))
  return values


def _set(config, key, value):
  section, _, name = key.rpartition(".")
  target = config
  for part in section.split(".") if section else []:
    target = target[part]
  target[name] = value


@FUZZ
@given(overrides())
def test_validate_raises_only_user_errors(values):
  config = shakespeare_char.get_config("smoke")
  for key, value in values.items():
    try:
      _set(config, key, value)
    except TypeError:
      assume(False)  # Rejected at override time by ml_collections, as on the command line.
  try:
    train.validate(config)
  except UserError as e:
    assert str(e) and "\n" not in str(e)


@FUZZ
@given(st.binary(max_size=200))
def test_text_reader_accepts_utf8_or_names_the_problem(data):
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "corpus.txt")
    with open(path, "wb") as f:
      f.write(data)
    try:
      text = sources.read_text_file(path)
    except UserError as e:
      assert path in str(e)
      assert not data or "UTF-8" in str(e)
      return
    assert text.encode("utf-8") == data


@FUZZ
@given(st.text(max_size=60), st.tuples(*[st.floats(allow_nan=True, allow_infinity=True)] * 3),
       st.sampled_from(sources.SPLITS))
def test_text_source_splits_or_names_the_problem(text, fractions, split):
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "corpus.txt")
    with open(path, "w", encoding="utf-8") as f:
      f.write(text)
    try:
      out = sources.load_text("text", split, text_file=path, split_fractions=fractions)
    except UserError as e:
      assert str(e)
      return
    assert out and out in text


@FUZZ
@given(st.integers(0, 300), st.integers(-3, 80), st.integers(-2, 9), st.integers(0, 2**32 - 1))
def test_windows_build_or_name_the_problem(n, context, batch_size, seed):
  tokens = np.arange(n, dtype=np.int32)
  try:
    batches = list(windows.eval_batches(tokens, context=context, batch_size=batch_size))
    scored = sum(float(b["weights"].sum()) for b in batches)
    assert scored == n - 1
    train_windows = windows.TrainWindows(tokens, context=context, batch_size=batch_size,
                                         seed=seed)
    assert train_windows.batch(3)["inputs"].shape == (batch_size, context)
  except UserError as e:
    assert str(e)
