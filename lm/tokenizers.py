"""Tokenizers behind one small interface, saved with each run so evaluation reloads them.

Every tokenizer has `vocab_size`, `encode(str) -> list[int]`, `decode(ids) -> str`,
`special_ids` (name -> id) and `to_json() -> dict`; `from_json` rebuilds any registered kind
from its saved dict. A new kind (SentencePiece, word-level) registers itself in `KINDS` and
nothing else changes.
"""

import dataclasses
import json
import os
from typing import Protocol, Sequence

from lm.errors import ConfigError, DataError


class Tokenizer(Protocol):
  vocab_size: int
  special_ids: dict[str, int]

  def encode(self, text: str) -> list[int]: ...

  def decode(self, ids: Sequence[int]) -> str: ...

  def to_json(self) -> dict: ...


@dataclasses.dataclass(frozen=True)
class CharTokenizer:
  """One id per distinct character of the training split, sorted (as nanoGPT), then the
  named special tokens (mask, sentinels, ...; ids len(chars), len(chars) + 1, ...)."""

  chars: str
  specials: tuple[str, ...] = ()

  @classmethod
  def fit(cls, text: str, specials: tuple[str, ...] = ()) -> "CharTokenizer":
    if not text:
      raise DataError("cannot build a character vocabulary from empty text")
    return cls("".join(sorted(set(text))), tuple(specials))

  @property
  def vocab_size(self) -> int:
    return len(self.chars) + len(self.specials)

  @property
  def special_ids(self) -> dict[str, int]:
    return {name: len(self.chars) + i for i, name in enumerate(self.specials)}

  def encode(self, text: str) -> list[int]:
    index = self._index
    try:
      return [index[c] for c in text]
    except KeyError as e:
      raise DataError(f"character {e.args[0]!r} is not in the character vocabulary "
                      f"({self.vocab_size} characters from the training split)") from None

  def decode(self, ids: Sequence[int]) -> str:
    return "".join(self.chars[i] for i in ids if i < len(self.chars))

  @property
  def _index(self) -> dict[str, int]:
    # Cached on first use; frozen dataclass, so bypass __setattr__.
    if "_index_cache" not in self.__dict__:
      object.__setattr__(self, "_index_cache", {c: i for i, c in enumerate(self.chars)})
    return self.__dict__["_index_cache"]

  def to_json(self) -> dict:
    return {"kind": "char", "chars": self.chars, "specials": list(self.specials)}


@dataclasses.dataclass(frozen=True)
class ByteTokenizer:
  """UTF-8 bytes 0..255, then the named special tokens at 256, 257, ..."""

  specials: tuple[str, ...] = ("<bos>", "<eos>", "<pad>")

  @property
  def vocab_size(self) -> int:
    return 256 + len(self.specials)

  @property
  def special_ids(self) -> dict[str, int]:
    return {name: 256 + i for i, name in enumerate(self.specials)}

  def encode(self, text: str) -> list[int]:
    return list(text.encode("utf-8"))

  def decode(self, ids: Sequence[int]) -> str:
    # Special tokens are not text; invalid byte sequences (a cut-off sample) become U+FFFD.
    return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")

  def to_json(self) -> dict:
    return {"kind": "byte", "specials": list(self.specials)}


def _hf():
  from lm.hf import tokenizer  # Deferred: only Hugging Face tokenizers need the libraries.
  return tokenizer


KINDS = {
    "char": lambda d: CharTokenizer(d["chars"], tuple(d.get("specials", ()))),
    "byte": lambda d: ByteTokenizer(tuple(d["specials"])),
    # Hugging Face tokenizers (lm/hf/tokenizer.py), e.g. of an imported checkpoint.
    "tokenizers": lambda d: _hf().TokenizersTokenizer.from_json(d),
    "sentencepiece": lambda d: _hf().SentencePieceTokenizer.from_json(d),
}


def from_json(d: dict) -> Tokenizer:
  if d.get("kind") not in KINDS:
    raise ConfigError(f"unknown tokenizer kind {d.get('kind')!r}; known: {sorted(KINDS)}")
  return KINDS[d["kind"]](d)


def build(kind: str, train_text: str, *,
          special_tokens: tuple[str, ...] = ByteTokenizer.specials,
          char_specials: bool = False) -> Tokenizer:
  """A new tokenizer of `kind` ('char' or 'byte'), fitted on the training text if needed.

  special_tokens: names of the byte tokenizer's special tokens (ids 256, 257, ...), e.g.
  chat-template markers; the char tokenizer ignores them unless `char_specials` (encoder
  and encoder-decoder families: mask, padding and sentinel tokens after the characters).
  """
  specials = tuple(special_tokens)
  if len(set(specials)) != len(specials) or not all(specials):
    raise ConfigError(f"data.special_tokens={specials}: need distinct non-empty names")
  if kind == "char":
    return CharTokenizer.fit(train_text, specials if char_specials else ())
  if kind == "byte":
    return ByteTokenizer(specials)
  raise ConfigError(f"data.tokenizer={kind!r}: expected 'char' or 'byte'")


def save(tokenizer: Tokenizer, path: str) -> None:
  with open(path, "w", encoding="utf-8") as f:
    json.dump(tokenizer.to_json(), f, ensure_ascii=False)


def load(path: str) -> Tokenizer:
  if not os.path.exists(path):
    raise DataError(f"no tokenizer at {path}: was this workdir made by a training run?")
  with open(path, encoding="utf-8") as f:
    return from_json(json.load(f))
