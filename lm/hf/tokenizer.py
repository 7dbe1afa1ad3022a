"""Hugging Face tokenizers behind lm's tokenizer interface (see lm/tokenizers.py).

  TokenizersTokenizer   a `tokenizer.json` run by the `tokenizers` library: byte-level BPE
                        (GPT-2), WordPiece (BERT), ...
  SentencePieceTokenizer  a `spiece.model` run by sentencepiece (T5), optionally followed
                        by T5's `<extra_id_i>` sentinel tokens.

Both keep their whole definition in the dataclass (the tokenizer.json text, the model
proto), so `to_json` saves them into a run's workdir like any lm tokenizer and
`lm.tokenizers.from_json` rebuilds them.

Conventions, the same as the byte tokenizer's: `encode(text)` returns the text's tokens
only (no BOS/CLS/SEP added: the caller adds what its protocol needs, by `special_ids`);
`decode(ids)` drops special tokens; `special_ids` maps each special token's text (e.g.
'<|endoftext|>', '[CLS]', '</s>') to its id.
"""

import base64
import dataclasses
import json
import os
from typing import Sequence

from lm.errors import DataError

TOKENIZER_JSON = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
GPT2_VOCAB, GPT2_MERGES = "vocab.json", "merges.txt"
SPIECE = "spiece.model"


def _cached(obj, name: str, make):
  # Frozen dataclasses: build the library object once, bypassing __setattr__.
  if name not in obj.__dict__:
    object.__setattr__(obj, name, make())
  return obj.__dict__[name]


@dataclasses.dataclass(frozen=True, eq=False)
class TokenizersTokenizer:
  """A `tokenizers.Tokenizer` given by its tokenizer.json text."""

  definition: str  # The tokenizer.json text.

  @property
  def _tok(self):
    import tokenizers
    return _cached(self, "_tok_cache", lambda: tokenizers.Tokenizer.from_str(self.definition))

  @property
  def vocab_size(self) -> int:
    return self._tok.get_vocab_size(with_added_tokens=True)

  @property
  def special_ids(self) -> dict[str, int]:
    return {t.content: i for i, t in sorted(self._tok.get_added_tokens_decoder().items())
            if t.special}

  def encode(self, text: str) -> list[int]:
    return self._tok.encode(text, add_special_tokens=False).ids

  def decode(self, ids: Sequence[int]) -> str:
    return self._tok.decode([int(i) for i in ids], skip_special_tokens=True)

  def to_json(self) -> dict:
    return {"kind": "tokenizers", "definition": json.loads(self.definition)}

  @classmethod
  def from_json(cls, d: dict) -> "TokenizersTokenizer":
    return cls(json.dumps(d["definition"], ensure_ascii=False))

  def save_hf(self, directory: str) -> None:
    """Writes tokenizer.json, and a tokenizer_config.json that makes transformers'
    AutoTokenizer run exactly that file (PreTrainedTokenizerFast), not its own idea of the
    family's tokenizer."""
    with open(os.path.join(directory, TOKENIZER_JSON), "w", encoding="utf-8") as f:
      f.write(self.definition)
    with open(os.path.join(directory, TOKENIZER_CONFIG), "w", encoding="utf-8") as f:
      json.dump({"tokenizer_class": "PreTrainedTokenizerFast"}, f)


@dataclasses.dataclass(frozen=True, eq=False)
class SentencePieceTokenizer:
  """A sentencepiece model, then `extra_ids` sentinels '<extra_id_i>' at ids
  piece_size + extra_ids - 1 - i (T5's layout: <extra_id_0> is the last id)."""

  model_proto: bytes
  extra_ids: int = 0

  @property
  def _sp(self):
    import sentencepiece
    return _cached(self, "_sp_cache",
                   lambda: sentencepiece.SentencePieceProcessor(model_proto=self.model_proto))

  @property
  def vocab_size(self) -> int:
    return self._sp.get_piece_size() + self.extra_ids

  @property
  def special_ids(self) -> dict[str, int]:
    sp, n = self._sp, self._sp.get_piece_size()
    ids = {sp.id_to_piece(i): i for i in range(n) if sp.is_control(i) or sp.is_unknown(i)}
    ids.update({f"<extra_id_{i}>": n + self.extra_ids - 1 - i for i in range(self.extra_ids)})
    return ids

  def encode(self, text: str) -> list[int]:
    return self._sp.encode(text)

  def decode(self, ids: Sequence[int]) -> str:
    # Control and unknown pieces are special tokens (transformers' skip_special_tokens
    # drops <unk> too); the sentinels are past the sentencepiece vocabulary.
    sp, n = self._sp, self._sp.get_piece_size()
    return sp.decode([int(i) for i in ids
                      if i < n and not (sp.is_control(int(i)) or sp.is_unknown(int(i)))])

  def to_json(self) -> dict:
    return {"kind": "hf_sentencepiece", "extra_ids": self.extra_ids,
            "model_proto": base64.b64encode(self.model_proto).decode("ascii")}

  @classmethod
  def from_json(cls, d: dict) -> "SentencePieceTokenizer":
    return cls(base64.b64decode(d["model_proto"]), int(d["extra_ids"]))

  def save_hf(self, directory: str) -> None:
    """Writes spiece.model and a tokenizer_config.json giving transformers' T5Tokenizer
    (AutoTokenizer) the same number of sentinels, so it gives the same ids."""
    with open(os.path.join(directory, SPIECE), "wb") as f:
      f.write(self.model_proto)
    with open(os.path.join(directory, TOKENIZER_CONFIG), "w", encoding="utf-8") as f:
      json.dump({"tokenizer_class": "T5Tokenizer", "extra_ids": self.extra_ids}, f)


def load_tokenizer_json(directory: str) -> TokenizersTokenizer | None:
  """The directory's tokenizer.json, or None if it has none."""
  path = os.path.join(directory, TOKENIZER_JSON)
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    definition = f.read()
  try:
    import tokenizers
    tokenizers.Tokenizer.from_str(definition)
  except Exception as e:  # The library raises a bare Exception on a malformed file.
    raise DataError(f"cannot read {path}: {e}") from None
  return TokenizersTokenizer(definition)


def load_bpe(directory: str) -> TokenizersTokenizer | None:
  """GPT-2's byte-level BPE: tokenizer.json, or else vocab.json + merges.txt built into one
  the way transformers' GPT2TokenizerFast does; None if the directory has neither."""
  found = load_tokenizer_json(directory)
  vocab, merges = (os.path.join(directory, f) for f in (GPT2_VOCAB, GPT2_MERGES))
  if found is not None or not (os.path.exists(vocab) and os.path.exists(merges)):
    return found
  import tokenizers
  from tokenizers import decoders, models, pre_tokenizers
  tok = tokenizers.Tokenizer(models.BPE.from_file(vocab, merges))
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  if tok.token_to_id("<|endoftext|>") is not None:
    tok.add_special_tokens(["<|endoftext|>"])
  return TokenizersTokenizer(tok.to_str())


def load_sentencepiece(directory: str, extra_ids: int = 0) -> SentencePieceTokenizer | None:
  """The directory's spiece.model (T5), or None if it has none."""
  path = os.path.join(directory, SPIECE)
  if not os.path.exists(path):
    return None
  with open(path, "rb") as f:
    proto = f.read()
  try:
    SentencePieceTokenizer(proto, extra_ids).vocab_size
  except Exception as e:  # sentencepiece raises RuntimeError/OSError on a bad proto.
    raise DataError(f"cannot read {path}: {e}") from None
  return SentencePieceTokenizer(proto, extra_ids)


def from_lm(tokenizer) -> TokenizersTokenizer | SentencePieceTokenizer | None:
  """The Hugging Face form of an lm tokenizer, giving the same ids; None if it has none.

  The byte tokenizer becomes a byte-level BPE with no merges: GPT-2's byte-to-unicode
  alphabet with each byte's id equal to its value, then the special tokens at 256, ...
  The char tokenizer becomes a BPE with no merges over its characters. Two differences on
  unusual text: the Hugging Face form drops characters outside the vocabulary (lm's char
  tokenizer raises an error) and turns special-token text such as '<eos>' into the special
  token (lm's byte tokenizer encodes it as bytes; lm.data.instruct inserts markers itself).
  """
  from lm import tokenizers as lm_tokenizers
  if isinstance(tokenizer, (TokenizersTokenizer, SentencePieceTokenizer)):
    return tokenizer
  import tokenizers
  from tokenizers import decoders, models, pre_tokenizers
  if isinstance(tokenizer, lm_tokenizers.ByteTokenizer):
    alphabet = _bytes_to_unicode()
    tok = tokenizers.Tokenizer(models.BPE(vocab={alphabet[b]: b for b in range(256)},
                                          merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(tokenizer.specials))
  elif isinstance(tokenizer, lm_tokenizers.CharTokenizer):
    tok = tokenizers.Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(tokenizer.chars)},
                                          merges=[]))
    tok.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    tok.decoder = decoders.Fuse()
  else:
    return None
  return TokenizersTokenizer(tok.to_str())


def _bytes_to_unicode() -> dict[int, str]:
  """GPT-2's reversible byte -> printable character map (as tokenizers' ByteLevel uses)."""
  printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
               + list(range(ord("®"), ord("ÿ") + 1)))
  table, extra = {}, 0
  for b in range(256):
    if b in printable:
      table[b] = chr(b)
    else:
      table[b] = chr(256 + extra)
      extra += 1
  return table
