"""Tokenizers: round trips, saved and reloaded, clear errors."""

import json

import pytest
from hypothesis import given, strategies as st

from lm import tokenizers
from lm.errors import ConfigError, DataError


def test_char_vocabulary_is_sorted_training_characters():
  tok = tokenizers.build("char", "hello world")
  assert tok.chars == " dehlorw" and tok.vocab_size == 8
  assert tok.encode("hello") == [3, 2, 4, 4, 5]
  assert tok.decode(tok.encode("world hello")) == "world hello"


def test_char_unknown_character_is_named():
  tok = tokenizers.build("char", "abc")
  with pytest.raises(DataError, match="'z' is not in the character vocabulary"):
    tok.encode("abz")


@given(st.text())
def test_byte_round_trip_any_unicode(text):
  tok = tokenizers.ByteTokenizer()
  ids = tok.encode(text)
  assert all(0 <= i < 256 for i in ids)
  assert tok.decode(ids) == text


@given(st.text(min_size=1))
def test_char_round_trip(text):
  tok = tokenizers.CharTokenizer.fit(text)
  assert tok.decode(tok.encode(text)) == text


def test_byte_specials_are_past_the_bytes_and_not_decoded():
  tok = tokenizers.ByteTokenizer()
  assert tok.vocab_size == 259
  assert tok.special_ids == {"<bos>": 256, "<eos>": 257, "<pad>": 258}
  assert tok.decode([104, 105, 257]) == "hi"


@pytest.mark.parametrize("tok", [tokenizers.CharTokenizer("\n !abcé"),
                                 tokenizers.ByteTokenizer(("<s>",))])
def test_save_and_load(tmp_path, tok):
  path = str(tmp_path / "tokenizer.json")
  tokenizers.save(tok, path)
  again = tokenizers.load(path)
  assert again == tok
  assert again.encode("abc !") == tok.encode("abc !")


def test_load_missing_and_unknown_kind(tmp_path):
  with pytest.raises(DataError, match="no tokenizer at"):
    tokenizers.load(str(tmp_path / "nope.json"))
  with pytest.raises(ValueError, match="unknown tokenizer kind 'bpe'"):
    tokenizers.from_json({"kind": "bpe"})


def test_byte_special_tokens_come_from_the_config():
  tok = tokenizers.build("byte", "", special_tokens=("<bos>", "<eos>", "<pad>", "<|user|>"))
  assert tok.vocab_size == 260 and tok.special_ids["<|user|>"] == 259
  assert tokenizers.from_json(tok.to_json()) == tok
  with pytest.raises(ConfigError, match="distinct"):
    tokenizers.build("byte", "", special_tokens=("<bos>", "<bos>"))


def test_word_tokenizer_ptb_conventions():
  tok = tokenizers.build("word", "the cat sat\nthe dog <unk>\nthe cat\n")
  # <eos> 0, <unk> 1, then by count (the 3, cat 2), ties alphabetical (dog, sat).
  assert tok.words == ("<eos>", "<unk>", "the", "cat", "dog", "sat")
  assert tok.encode("the cat\nthe bird") == [2, 3, 0, 2, 1]
  assert tok.decode([2, 3, 0, 2, 1]) == "the cat\nthe <unk>"
  small = tokenizers.build("word", "a a a b b c\n", vocab_size=4)
  assert small.words == ("<eos>", "<unk>", "a", "b") and small.encode("c") == [1]
  again = tokenizers.from_json(json.loads(json.dumps(tok.to_json())))
  assert again == tok


def test_sentencepiece_round_trips_any_text_and_reloads(tmp_path):
  train = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 50
  tok = tokenizers.build("sentencepiece", train, vocab_size=300)
  assert tok.vocab_size == 300
  text = "Before we proceed,  any  further?\n\nZé — 🙂\n"  # Spaces, newlines, unseen chars.
  ids = tok.encode(text)
  assert tok.decode(ids) == text
  assert len(tok.encode("Before we proceed")) < len("Before we proceed")  # Merges learnt.
  path = str(tmp_path / "tok.json")
  tokenizers.save(tok, path)
  assert tokenizers.load(path).encode(text) == ids
  # Deterministic: the same text trains the same model.
  assert tokenizers.build("sentencepiece", train, vocab_size=300).encode(text) == ids


def test_sentencepiece_needs_a_vocab_size():
  with pytest.raises(ConfigError, match="needs data.vocab_size"):
    tokenizers.build("sentencepiece", "abc")
