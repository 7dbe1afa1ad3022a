"""Tiny Shakespeare as a TensorFlow-free TFDS dataset, stored as array_record.

The stock `tiny_shakespeare` builder reads its file with `tf.io.gfile`, so it needs
TensorFlow. This builder makes the same three splits (same arithmetic, same characters)
with plain Python I/O, writes array_record, and is read back with `tfds.data_source`.

Offline use: put `input.txt` (sha256 `INPUT_SHA256`) in the manual folder, by default
`<data_dir>/downloads/manual/input.txt`; otherwise it is downloaded from `URL`.
"""

import hashlib
import os
import socket
import urllib.parse

from etils import epath
import tensorflow_datasets as tfds

from lm.errors import DataError

URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
INPUT_NAME = "input.txt"
INPUT_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
SPLITS = ("train", "validation", "test")


def stock_splits(text: str) -> dict[str, str]:
  """The stock TFDS 90/5/5 character split, arithmetic copied exactly.

  The stock builder takes int(n * 0.9) characters for train, then halves the rest with
  int(rest * 0.5), so validation gets the floor and test any odd character.
  """
  i = int(len(text) * 0.9)
  train, rest = text[:i], text[i:]
  i = int(len(rest) * 0.5)
  return {"train": train, "validation": rest[:i], "test": rest[i:]}


def read_verified(path: str, sha256: str) -> str:
  """The UTF-8 text of `path`, after checking its bytes hash to `sha256`."""
  with open(path, "rb") as f:
    data = f.read()
  actual = hashlib.sha256(data).hexdigest()
  if actual != sha256:
    raise DataError(f"{path}: sha256 mismatch, expected {sha256} got {actual}; "
                    f"is it the Tiny Shakespeare input.txt from {URL}?")
  try:
    return data.decode("utf-8")
  except UnicodeDecodeError as e:
    raise DataError(f"{path}: not UTF-8 (byte offset {e.start})") from None


class TinyShakespeareLm(tfds.core.GeneratorBasedBuilder):
  """Tiny Shakespeare, one example per split: {'text': the whole split}."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Stock tiny_shakespeare splits, written without TensorFlow."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      f"Optional. Without internet, put {INPUT_NAME} (sha256 {INPUT_SHA256}) from {URL} in "
      "the manual folder (default <data_dir>/downloads/manual/).")

  def __init__(self, *, sha256: str = INPUT_SHA256, **kwargs):
    # The expected hash is an argument (not only the constant) so tests can prepare a
    # small synthetic input.txt. array_record by default: TFDS's default, tfrecord, needs
    # TensorFlow to write and read.
    self._sha256 = sha256
    kwargs.setdefault("file_format", "array_record")
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description="Tiny Shakespeare (40k lines), split 90/5/5 by character as in TFDS.",
        features=tfds.features.FeaturesDict({"text": tfds.features.Text()}),
        homepage="https://github.com/karpathy/char-rnn/tree/master/data/tinyshakespeare",
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    path = _manual_path(dl_manager)
    if not path.exists():
      path = _download(dl_manager, path)
    text = read_verified(os.fspath(path), self._sha256)
    return {name: self._generate_examples(split_text)
            for name, split_text in stock_splits(text).items()}

  def _generate_examples(self, split_text: str):
    yield "0", {"text": split_text}


def _manual_path(dl_manager) -> epath.Path:
  # `dl_manager.manual_dir` raises AssertionError when the folder is missing or empty,
  # which is the normal online case, so read the configured path instead.
  return epath.Path(dl_manager._manual_dir) / INPUT_NAME  # pylint: disable=protected-access


def _download(dl_manager, manual_path: epath.Path) -> epath.Path:
  """Downloads `URL`, failing at once with where to put the file when offline."""
  where = f"put {INPUT_NAME} (sha256 {INPUT_SHA256}) at {manual_path}"
  host = urllib.parse.urlparse(URL).hostname
  try:
    # tfds retries a failed download ten times with backoff (minutes); an unresolvable
    # host means no internet, so say so now.
    socket.getaddrinfo(host, 443)
  except OSError as e:
    raise DataError(f"no {INPUT_NAME} at {manual_path} and cannot reach {host} ({e}); "
                    f"{where}") from None
  try:
    return epath.Path(dl_manager.download(URL))
  except Exception as e:  # pylint: disable=broad-except
    raise DataError(f"no {INPUT_NAME} at {manual_path} and downloading {URL} failed "
                    f"({type(e).__name__}: {e}); {where}") from e


def load_split_text(split: str, *, data_dir: str | None, manual_dir: str | None,
                    sha256: str = INPUT_SHA256) -> str:
  """The text of one split, preparing the dataset on first use.

  Args:
    split: 'train', 'validation' or 'test'.
    data_dir: TFDS data folder; None means TFDS's default ($TFDS_DATA_DIR or
      ~/tensorflow_datasets).
    manual_dir: folder holding a pre-downloaded input.txt; None means
      `<data_dir>/downloads/manual`.
    sha256: expected hash of input.txt (tests override it).

  Returns:
    The split as one str (train is 1,003,854 characters).
  """
  if split not in SPLITS:
    raise DataError(f"unknown split {split!r} of tiny_shakespeare; known: {', '.join(SPLITS)}")
  # download_and_prepare inside data_source returns at once when the prepared files exist,
  # so later calls only read.
  source = tfds.data_source(
      TinyShakespeareLm.name, split=split, data_dir=data_dir,
      builder_kwargs={"file_format": "array_record", "sha256": sha256},
      download_and_prepare_kwargs={
          "download_config": tfds.download.DownloadConfig(manual_dir=manual_dir)})
  if len(source) != 1:
    raise DataError(f"tiny_shakespeare split {split!r} has {len(source)} examples, expected 1")
  # Without TensorFlow, tfds decodes Text features to bytes rather than str.
  text = source[0]["text"]
  return text.decode("utf-8") if isinstance(text, bytes) else text
