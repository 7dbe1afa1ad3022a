"""Hugging Face tokenizers behind lm's interface, against transformers' own tokenizers.

The byte-level BPE (GPT-2) tokenizer is tested in test_hf_gpt2.py beside its model; here
sentencepiece (T5's spiece.model) and the Hugging Face form of lm's byte and char
tokenizers, which exported native runs carry.
"""

import io
import os

import pytest

transformers = pytest.importorskip("transformers")
spm = pytest.importorskip("sentencepiece")

from lm import tokenizers as lm_tokenizers  # noqa: E402
from lm.hf import tokenizer as hf_tokenizer  # noqa: E402

TEXT = ("First Citizen: Before we proceed any further, hear me speak. All: Speak, speak.\n"
        "ROMEO:\n\tWhat light through yonder window breaks?  Ünïcödé ✓ 東京 ")


def test_sentencepiece_matches_t5_tokenizer(tmp_path):
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(TEXT.replace(".", "").split(":") * 20), model_writer=model,
      vocab_size=60, hard_vocab_limit=False, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
      minloglevel=2)
  (tmp_path / "spiece.model").write_bytes(model.getvalue())
  ours = hf_tokenizer.load_sentencepiece(str(tmp_path), extra_ids=3)
  t5 = transformers.T5Tokenizer.from_pretrained(str(tmp_path), extra_ids=3)
  size = spm.SentencePieceProcessor(model_proto=model.getvalue()).get_piece_size()
  assert ours.vocab_size == len(t5) == size + 3
  assert ours.special_ids == {k: t5.convert_tokens_to_ids(k) for k in ours.special_ids}
  assert ours.special_ids["<extra_id_0>"] == size + 2 and ours.special_ids["</s>"] == 1
  for text in (TEXT, "Speak, speak. unseen: Q!"):  # '.' and 'Q' are unknown pieces.
    ids = ours.encode(text)
    assert ids == t5(text, add_special_tokens=False)["input_ids"]
    assert 2 in ids or text == TEXT  # The unknown piece is there to be dropped by decode.
    assert ours.decode(ids + [1, size]) == t5.decode(ids + [1, size], skip_special_tokens=True)
  rebuilt = lm_tokenizers.from_json(ours.to_json())
  assert rebuilt.encode(TEXT) == ours.encode(TEXT) and rebuilt.vocab_size == size + 3


@pytest.mark.parametrize("native", [lm_tokenizers.ByteTokenizer(("<bos>", "<eos>")),
                                    lm_tokenizers.CharTokenizer.fit(TEXT)])
def test_lm_tokenizers_in_hugging_face_form(native, tmp_path):
  converted = hf_tokenizer.from_lm(native)
  converted.save_hf(str(tmp_path))
  fast = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
  ids = native.encode(TEXT)
  assert converted.encode(TEXT) == fast(TEXT, add_special_tokens=False)["input_ids"] == ids
  assert converted.decode(ids) == fast.decode(ids) == native.decode(ids) == TEXT
  assert converted.vocab_size == len(fast) == native.vocab_size
  assert converted.special_ids == native.special_ids
  assert sorted(os.listdir(tmp_path)) == ["tokenizer.json", "tokenizer_config.json"]
