"""Tokenizers behind one small interface, saved with each run so evaluation reloads them.

Every tokenizer has `vocab_size`, `encode(str) -> list[int]`, `decode(ids) -> str`,
`special_ids` (name -> id) and `to_json() -> dict`; `from_json` rebuilds any registered kind
from its saved dict. A new kind (SentencePiece, word-level) registers itself in `KINDS` and
nothing else changes.
"""

import base64
import collections
import dataclasses
import functools
import io
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


@dataclasses.dataclass(frozen=True)
class WordTokenizer:
  """Whitespace-separated words; each newline is the word `<eos>` (Mikolov's PTB reading).

  `encode` is `text.replace("\n", " <eos> ").split()` looked up in `words`; a word outside
  the vocabulary becomes `<unk>`. Ids: `<eos>` 0, `<unk>` 1, then words by descending
  training count (ties alphabetical). Decoding joins words with spaces, `<eos>` as newline.
  """

  words: tuple[str, ...]

  EOS, UNK = "<eos>", "<unk>"

  @classmethod
  def fit(cls, text: str, vocab_size: int | None = None) -> "WordTokenizer":
    """The `vocab_size` (None: all) most frequent training words, `<eos>` and `<unk>` included."""
    counts = collections.Counter(text.replace("\n", " ").split())
    if not counts:
      raise DataError("cannot build a word vocabulary from text without words")
    counts.pop(cls.EOS, None)
    counts.pop(cls.UNK, None)
    ranked = sorted(counts, key=lambda w: (-counts[w], w))
    if vocab_size is not None:
      if vocab_size < 3:
        raise ConfigError(f"data.vocab_size={vocab_size}: a word vocabulary needs >= 3")
      ranked = ranked[:vocab_size - 2]
    return cls((cls.EOS, cls.UNK, *ranked))

  @property
  def vocab_size(self) -> int:
    return len(self.words)

  @property
  def special_ids(self) -> dict[str, int]:
    return {self.EOS: 0, self.UNK: 1}

  @functools.cached_property
  def _index(self) -> dict[str, int]:
    return {w: i for i, w in enumerate(self.words)}

  def encode(self, text: str) -> list[int]:
    index, unk = self._index, 1
    return [index.get(w, unk) for w in text.replace("\n", f" {self.EOS} ").split()]

  def decode(self, ids: Sequence[int]) -> str:
    return " ".join(self.words[i] for i in ids).replace(f" {self.EOS} ", "\n").replace(
        self.EOS, "\n")

  def to_json(self) -> dict:
    return {"kind": "word", "words": list(self.words)}


@dataclasses.dataclass(frozen=True)
class SentencePieceTokenizer:
  """A SentencePiece BPE model trained on the training split, kept as its serialised proto.

  Trained to reproduce text exactly: no normalisation, spaces kept as they are, "\n" a
  piece of its own, and characters outside the vocabulary fall back to UTF-8 byte pieces,
  so every string encodes and `decode(encode(s)) == s`. One thread, so training is
  deterministic.
  """

  model_proto: bytes

  @classmethod
  def fit(cls, text: str, vocab_size: int) -> "SentencePieceTokenizer":
    import sentencepiece as spm  # Deferred: only this kind needs it.

    if not text.strip():
      raise DataError("cannot train SentencePiece on empty text")
    out = io.BytesIO()
    try:
      spm.SentencePieceTrainer.train(
          sentence_iterator=iter(text.split("\n")), model_writer=out, vocab_size=vocab_size,
          model_type="bpe", character_coverage=1.0, byte_fallback=True,
          normalization_rule_name="identity", remove_extra_whitespaces=False,
          add_dummy_prefix=False, user_defined_symbols=["\n"], split_digits=True,
          allow_whitespace_only_pieces=True, unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1,
          num_threads=1, minloglevel=2)
    except RuntimeError as e:
      raise ConfigError(f"data.vocab_size={vocab_size}: SentencePiece training failed: "
                        f"{str(e).strip().splitlines()[-1]}") from None
    return cls(out.getvalue())

  @functools.cached_property
  def _sp(self):
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_proto=self.model_proto)

  @property
  def vocab_size(self) -> int:
    return self._sp.get_piece_size()

  @property
  def special_ids(self) -> dict[str, int]:
    return {"<unk>": 0}

  def encode(self, text: str) -> list[int]:
    return self._sp.encode(text)

  def decode(self, ids: Sequence[int]) -> str:
    return self._sp.decode([int(i) for i in ids])

  def to_json(self) -> dict:
    return {"kind": "sentencepiece", "model_proto": base64.b64encode(self.model_proto).decode()}


KINDS = {
    "char": lambda d: CharTokenizer(d["chars"], tuple(d.get("specials", ()))),
    "byte": lambda d: ByteTokenizer(tuple(d["specials"])),
    # Hugging Face tokenizers (lm/hf/tokenizer.py), e.g. of an imported checkpoint.
    "tokenizers": lambda d: _hf().TokenizersTokenizer.from_json(d),
    "hf_sentencepiece": lambda d: _hf().SentencePieceTokenizer.from_json(d),
    "word": lambda d: WordTokenizer(tuple(d["words"])),
    "sentencepiece": lambda d: SentencePieceTokenizer(base64.b64decode(d["model_proto"])),
}


def from_json(d: dict) -> Tokenizer:
  if d.get("kind") not in KINDS:
    raise ConfigError(f"unknown tokenizer kind {d.get('kind')!r}; known: {sorted(KINDS)}")
  return KINDS[d["kind"]](d)


def build(kind: str, train_text: str, *,
          special_tokens: tuple[str, ...] = ByteTokenizer.specials,
          char_specials: bool = False, vocab_size: int | None = None) -> Tokenizer:
  """A new tokenizer of `kind` (a key of `KINDS`), fitted on the training text if needed.

  special_tokens: names of the byte tokenizer's special tokens (ids 256, 257, ...), e.g.
  chat-template markers; the char tokenizer ignores them unless `char_specials` (encoder
  and encoder-decoder families: mask, padding and sentinel tokens after the characters);
  the other kinds ignore them.
  vocab_size: 'word': keep the most frequent words (None: all); 'sentencepiece': required.
  """
  specials = tuple(special_tokens)
  if len(set(specials)) != len(specials) or not all(specials):
    raise ConfigError(f"data.special_tokens={specials}: need distinct non-empty names")
  if kind == "word":
    return WordTokenizer.fit(train_text, vocab_size)
  if kind == "sentencepiece":
    if vocab_size is None:
      raise ConfigError("data.tokenizer='sentencepiece' needs data.vocab_size")
    return SentencePieceTokenizer.fit(train_text, vocab_size)
  if kind == "char":
    return CharTokenizer.fit(train_text, specials if char_specials else ())
  if kind == "byte":
    return ByteTokenizer(specials)
  raise ConfigError(f"data.tokenizer={kind!r}: expected one of {sorted(KINDS)}")


def save(tokenizer: Tokenizer, path: str) -> None:
  with open(path, "w", encoding="utf-8") as f:
    json.dump(tokenizer.to_json(), f, ensure_ascii=False)


def load(path: str) -> Tokenizer:
  if not os.path.exists(path):
    raise DataError(f"no tokenizer at {path}: was this workdir made by a training run?")
  with open(path, encoding="utf-8") as f:
    return from_json(json.load(f))
