"""Data layer: split arithmetic against stock TFDS, the TF-free builder, and token windows."""

import hashlib
import os
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from lm.data import sources, tiny_shakespeare, windows
from lm.errors import ConfigError, DataError, UserError

# ../shared/data beside the repository (as in CI); the test using it skips elsewhere.
REAL_INPUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared",
                          "data", "tinyshakespeare", "input.txt")
SYNTHETIC = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 7 + "ÆØÅ ends.\n"


def _stock_tfds_split(text):
  # Verbatim from tensorflow_datasets/datasets/tiny_shakespeare/
  # tiny_shakespeare_dataset_builder.py (4.9.10), which needs TensorFlow to run.
  # 90/5/5 split
  i = int(len(text) * 0.9)
  train_text, text = text[:i], text[i:]
  i = int(len(text) * 0.5)
  validation_text, text = text[:i], text[i:]
  test_text = text
  return {"train": train_text, "validation": validation_text, "test": test_text}


def _write_manual(folder, text=SYNTHETIC):
  os.makedirs(folder, exist_ok=True)
  data = text.encode("utf-8")
  with open(os.path.join(folder, "input.txt"), "wb") as f:
    f.write(data)
  return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- split arithmetic


@pytest.mark.parametrize("n", [*range(0, 64), 99, 100, 101, 1_115_394])
def test_splits_match_stock_tfds(n):
  text = "".join(chr(97 + i % 26) for i in range(n))
  expect = _stock_tfds_split(text)
  assert tiny_shakespeare.stock_splits(text) == expect
  assert sources.split_text(text, (0.9, 0.05, 0.05)) == expect


def test_stock_split_sizes_of_tiny_shakespeare():
  sizes = {k: len(v) for k, v in tiny_shakespeare.stock_splits("x" * 1_115_394).items()}
  assert sizes == {"train": 1_003_854, "validation": 55_770, "test": 55_770}


def test_split_text_other_fractions_partition_in_order():
  text = "".join(chr(65 + i % 50) for i in range(1000))
  parts = sources.split_text(text, (0.8, 0.1, 0.1))
  assert "".join(parts.values()) == text
  assert [len(p) for p in parts.values()] == [800, 100, 100]


def test_bad_split_fractions():
  with pytest.raises(ConfigError, match="split_fractions"):
    sources.split_text("abc", (0.5, 0.2, 0.2))


# ---------------------------------------------------------------- TF-free TFDS builder


def test_builder_prepares_from_manual_dir_without_tensorflow(tmp_path, monkeypatch):
  manual = tmp_path / "manual"
  sha = _write_manual(manual)
  calls = []
  original = tiny_shakespeare.TinyShakespeareLm._split_generators
  monkeypatch.setattr(tiny_shakespeare.TinyShakespeareLm, "_split_generators",
                      lambda self, dl: calls.append(1) or original(self, dl))
  load = lambda split: tiny_shakespeare.load_split_text(
      split, data_dir=str(tmp_path / "tfds"), manual_dir=str(manual), sha256=sha)

  got = {s: load(s) for s in ("train", "validation", "test")}
  assert got == _stock_tfds_split(SYNTHETIC)
  assert calls == [1]  # Prepared once, then only read.
  files = os.listdir(tmp_path / "tfds" / "tiny_shakespeare_lm" / "1.0.0")
  assert any(".array_record-" in f for f in files), files

  os.remove(manual / "input.txt")  # Idempotent: the prepared files suffice.
  assert load("train") == got["train"]
  assert calls == [1]
  assert "tensorflow" not in sys.modules


def test_builder_default_manual_dir_and_data_dir(tmp_path, monkeypatch):
  # TFDS reads $TFDS_DATA_DIR once at import, into constants.DATA_DIR.
  monkeypatch.setattr(tfds.core.constants, "DATA_DIR", str(tmp_path))
  sha = _write_manual(tmp_path / "downloads" / "manual")
  text = tiny_shakespeare.load_split_text("test", data_dir=None, manual_dir=None, sha256=sha)
  assert text == _stock_tfds_split(SYNTHETIC)["test"]
  assert (tmp_path / "tiny_shakespeare_lm" / "1.0.0").is_dir()


def test_builder_sha_mismatch_names_file_and_hashes(tmp_path):
  sha = _write_manual(tmp_path / "manual")
  with pytest.raises(DataError) as e:
    tiny_shakespeare.load_split_text("train", data_dir=str(tmp_path / "tfds"),
                                     manual_dir=str(tmp_path / "manual"))
  msg = str(e.value)
  assert str(tmp_path / "manual" / "input.txt") in msg
  assert tiny_shakespeare.INPUT_SHA256 in msg and sha in msg
  assert "\n" not in msg


def test_builder_offline_without_manual_file_says_where_to_put_it(tmp_path, monkeypatch):
  def no_dns(*args, **kwargs):
    raise OSError("Name or service not known")
  monkeypatch.setattr(tiny_shakespeare.socket, "getaddrinfo", no_dns)
  with pytest.raises(DataError) as e:
    tiny_shakespeare.load_split_text("train", data_dir=str(tmp_path / "tfds"),
                                     manual_dir=str(tmp_path / "manual"))
  msg = str(e.value)
  assert f"at {tmp_path / 'manual' / 'input.txt'}" in msg
  assert tiny_shakespeare.INPUT_SHA256 in msg and "\n" not in msg


def test_builder_uses_download_when_no_manual_file(tmp_path, monkeypatch):
  sha = _write_manual(tmp_path / "fake_download")
  urls = []

  def fake_download(self, url):
    urls.append(url)
    return tmp_path / "fake_download" / "input.txt"
  monkeypatch.setattr(tiny_shakespeare.socket, "getaddrinfo", lambda *a, **k: [])
  monkeypatch.setattr(tfds.download.DownloadManager, "download", fake_download)
  text = tiny_shakespeare.load_split_text("validation", data_dir=str(tmp_path / "tfds"),
                                          manual_dir=None, sha256=sha)
  assert text == _stock_tfds_split(SYNTHETIC)["validation"]
  assert urls == [tiny_shakespeare.URL]


def test_builder_unknown_split(tmp_path):
  with pytest.raises(DataError, match="unknown split 'dev'"):
    tiny_shakespeare.load_split_text("dev", data_dir=str(tmp_path), manual_dir=None)


@pytest.mark.skipif(not os.path.exists(REAL_INPUT), reason=f"no {REAL_INPUT}")
def test_real_tiny_shakespeare(tmp_path):
  # The manual folder is read, never written, so it can be the shared read-only copy.
  texts = {s: sources.load_text("tiny_shakespeare", s, data_dir=str(tmp_path),
                                manual_dir=os.path.dirname(REAL_INPUT))
           for s in ("train", "validation", "test")}
  assert {k: len(v) for k, v in texts.items()} == {
      "train": 1_003_854, "validation": 55_770, "test": 55_770}
  with open(REAL_INPUT, encoding="utf-8") as f:
    assert texts == _stock_tfds_split(f.read())
  assert texts["train"].startswith("First Citizen:")
  assert "tensorflow" not in sys.modules


# ---------------------------------------------------------------- local text source


def test_text_source_splits_file(tmp_path):
  path = tmp_path / "corpus.txt"
  path.write_text(SYNTHETIC, encoding="utf-8")
  got = {s: sources.load_text("text", s, text_file=str(path))
         for s in ("train", "validation", "test")}
  assert got == _stock_tfds_split(SYNTHETIC)


@pytest.mark.parametrize("content, reason", [
    (None, "no such file"),
    (b"", "file is empty"),
    (b"abc\xffdef", "not UTF-8 (byte offset 3"),
])
def test_text_source_file_errors(tmp_path, content, reason):
  path = tmp_path / "corpus.txt"
  if content is not None:
    path.write_bytes(content)
  with pytest.raises(DataError) as e:
    sources.load_text("text", "train", text_file=str(path))
  assert str(e.value).startswith(f"{path}: {reason}")


def test_text_source_empty_split(tmp_path):
  path = tmp_path / "tiny.txt"
  path.write_text("abc", encoding="utf-8")  # train 2, validation 0, test 1 characters.
  with pytest.raises(DataError, match=r"split 'validation' of .*tiny.txt .* is empty"):
    sources.load_text("text", "validation", text_file=str(path))


def test_unknown_source_and_split():
  with pytest.raises(DataError, match="unknown data source 'wiki'"):
    sources.load_text("wiki", "train")
  with pytest.raises(DataError, match="unknown split 'dev'"):
    sources.load_text("text", "dev", text_file="x.txt")
  assert issubclass(DataError, UserError) and issubclass(ConfigError, UserError)
  assert issubclass(UserError, ValueError)


# ---------------------------------------------------------------- eval windows


@pytest.mark.parametrize("n, context, batch_size", [
    (2, 1, 1), (2, 4, 3), (17, 4, 2), (17, 16, 1), (33, 8, 4), (33, 8, 3), (100, 7, 5),
    (101, 10, 5), (129, 32, 8), (5, 64, 2),
])
def test_eval_batches_score_every_target_once(n, context, batch_size):
  tokens = np.arange(1, n + 1, dtype=np.int32) * 3  # Distinct, nonzero: pads stand out.
  seen = []
  for batch in windows.eval_batches(tokens, context=context, batch_size=batch_size):
    for key, dtype in (("inputs", np.int32), ("targets", np.int32), ("weights", np.float32)):
      assert batch[key].shape == (batch_size, context) and batch[key].dtype == dtype
    np.testing.assert_array_equal(batch["inputs"][:, 1:], batch["targets"][:, :-1])
    w = batch["weights"].astype(bool)
    assert np.all(batch["targets"][~w] == windows.PAD_ID)
    seen.append(batch["targets"][w])  # Row-major: window order, then position.
  seen = np.concatenate(seen)
  assert len(seen) == windows.num_eval_tokens(tokens) == n - 1
  np.testing.assert_array_equal(seen, tokens[1:])
  assert len(seen) == sum(
      b["weights"].sum() for b in windows.eval_batches(tokens, context=context,
                                                      batch_size=batch_size))


def test_eval_windows_are_contiguous():
  tokens = np.arange(10, dtype=np.int32)
  (batch,) = windows.eval_batches(tokens, context=4, batch_size=3)
  # inputs are tokens[i*4 : i*4 + 4]: the last token is an input too, though its target is pad.
  np.testing.assert_array_equal(batch["inputs"], [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 0]])
  np.testing.assert_array_equal(batch["targets"], [[1, 2, 3, 4], [5, 6, 7, 8], [9, 0, 0, 0]])
  np.testing.assert_array_equal(batch["weights"], [[1, 1, 1, 1], [1, 1, 1, 1], [1, 0, 0, 0]])


def test_eval_needs_two_tokens():
  assert windows.num_eval_tokens(np.zeros(1, np.int32)) == 0
  with pytest.raises(DataError, match="at least 2 tokens"):
    next(windows.eval_batches(np.zeros(1, np.int32), context=4, batch_size=2))


# ---------------------------------------------------------------- train windows


def test_train_windows_are_shifted_slices_and_deterministic():
  tokens = (np.arange(500, dtype=np.int32) * 7) % 101
  make = lambda seed: windows.TrainWindows(tokens, context=16, batch_size=4, seed=seed)
  a, b = make(0), make(0)
  for step in (0, 1, 123, 10_000):
    x, y = a.batch(step), b.batch(step)
    for key in ("inputs", "targets", "weights"):
      np.testing.assert_array_equal(x[key], y[key])
    assert x["inputs"].shape == (4, 16) and x["inputs"].dtype == np.int32
    assert x["weights"].dtype == np.float32 and np.all(x["weights"] == 1)
    np.testing.assert_array_equal(x["inputs"][:, 1:], x["targets"][:, :-1])
  assert not np.array_equal(a.batch(0)["inputs"], a.batch(1)["inputs"])
  assert not np.array_equal(make(0).batch(0)["inputs"], make(1).batch(0)["inputs"])


def test_train_windows_visit_every_start_once_per_epoch():
  tokens = np.arange(40, dtype=np.int32)  # Token value == position, so inputs[:, 0] == start.
  w = windows.TrainWindows(tokens, context=8, batch_size=4, seed=3)
  assert w.num_windows == 32  # Starts 0..31; the last window ends on token 39.
  for epoch in range(3):
    starts = np.concatenate([w.batch(s)["inputs"][:, 0] for s in range(8 * epoch, 8 * epoch + 8)])
    assert sorted(starts) == list(range(32))
  first, second = ([w.batch(s)["inputs"][:, 0] for s in range(8 * e, 8 * e + 8)] for e in (0, 1))
  assert not np.array_equal(np.concatenate(first), np.concatenate(second))


def test_train_windows_context_longer_than_split():
  with pytest.raises(DataError, match=r"context 10 longer than split 'validation' \(10 tokens\)"):
    windows.TrainWindows(np.arange(10), context=10, batch_size=2, seed=0, split="validation")
  windows.TrainWindows(np.arange(11), context=10, batch_size=2, seed=0)  # One window: fine.


PTB_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "ptb")


@pytest.mark.skipif(not os.path.isdir(PTB_DIR), reason="../shared/data/ptb not beside the repo")
def test_ptb_token_counts_match_the_published_ones():
  from lm import tokenizers
  from lm.data import ptb

  texts = {s: sources.load_text("ptb", s, manual_dir=PTB_DIR) for s in sources.SPLITS}
  tok = tokenizers.build("word", texts["train"])
  assert tok.vocab_size == 10_000
  counts = {s: len(tok.encode(t)) for s, t in texts.items()}
  assert counts == ptb.NUM_TOKENS == {"train": 929_589, "validation": 73_760, "test": 82_430}


def test_ptb_errors_name_the_folder_and_the_file(tmp_path):
  with pytest.raises(DataError, match="has no ptb.valid.txt"):
    sources.load_text("ptb", "validation", manual_dir=str(tmp_path))
  (tmp_path / "ptb.test.txt").write_text("not the real file\n")
  with pytest.raises(DataError, match="is not that of Mikolov's PTB file"):
    sources.load_text("ptb", "test", manual_dir=str(tmp_path))
