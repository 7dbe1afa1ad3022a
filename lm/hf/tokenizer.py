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
    """Writes tokenizer.json, which transformers' PreTrainedTokenizerFast reads."""
    with open(os.path.join(directory, TOKENIZER_JSON), "w", encoding="utf-8") as f:
      f.write(self.definition)


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
    n = self._sp.get_piece_size()
    return self._sp.decode([int(i) for i in ids if i < n])

  def to_json(self) -> dict:
    return {"kind": "sentencepiece", "extra_ids": self.extra_ids,
            "model_proto": base64.b64encode(self.model_proto).decode("ascii")}

  @classmethod
  def from_json(cls, d: dict) -> "SentencePieceTokenizer":
    return cls(base64.b64decode(d["model_proto"]), int(d["extra_ids"]))

  def save_hf(self, directory: str) -> None:
    with open(os.path.join(directory, SPIECE), "wb") as f:
      f.write(self.model_proto)


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
