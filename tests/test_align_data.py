"""Instruction and preference data: response-only weights, packing, HH split, bad rows."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm import losses, tokenizers
from lm.data import instruct, preference
from lm.errors import DataError
from lm.models import decoder
from lm.models.config import ModelConfig

TOK = tokenizers.ByteTokenizer()
EOS = TOK.special_ids["<eos>"]
# Prompt text is upper case, responses lower case: a target is a response token iff it is a
# lower-case byte or the <eos> that ends the assistant turn.
TEMPLATE = instruct.ChatTemplate(bos="<bos>", system="S {content}\n", user="Q {content}\n",
                                 assistant="A {content}<eos>")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(REPO, "..", "shared", "data")


def _examples():
  rng = np.random.default_rng(0)
  out = []
  for i in range(9):
    prompt = "".join(rng.choice(list("ABCDEFG"), rng.integers(1, 6)))
    answer = "".join(rng.choice(list("abcdefg"), rng.integers(1, 6)))
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    if i % 3 == 0:  # Multi-turn with a system message: two trained assistant turns.
      messages = [{"role": "system", "content": "BE BRIEF"}] + messages + [
          {"role": "user", "content": "MORE"}, {"role": "assistant", "content": "ok"}]
    out.append((f"ex{i}", messages))
  return out


def _is_response(targets):
  return ((targets >= ord("a")) & (targets <= ord("z"))) | (targets == EOS)


@pytest.mark.parametrize("packing", [False, True])
def test_weights_are_zero_on_every_prompt_token(packing):
  encoded, counts = instruct.encode_examples(_examples(), TOK, TEMPLATE, context=48,
                                             truncation="error")
  rows = (instruct.pack if packing else instruct.pad)(encoded, context=48)
  real = rows["segment_ids"] > 0
  expect = (_is_response(rows["targets"]) & real).astype(np.float32)
  np.testing.assert_array_equal(rows["weights"], expect)
  assert counts == {"examples": 9, "truncated": 0, "dropped": 0}
  if packing:
    assert len(rows["inputs"]) < 9
    assert rows["segment_ids"].max() > 1


def test_packing_restarts_positions_and_keeps_each_example():
  encoded, _ = instruct.encode_examples(_examples(), TOK, TEMPLATE, context=48,
                                        truncation="error")
  rows = instruct.pack(encoded, context=48)
  pieces = []
  for r in range(len(rows["inputs"])):
    for s in range(1, rows["segment_ids"][r].max() + 1):
      at = rows["segment_ids"][r] == s
      np.testing.assert_array_equal(rows["positions"][r][at], np.arange(at.sum()))
      pieces.append(np.append(rows["inputs"][r][at], rows["targets"][r][at][-1]))
  assert len(pieces) == len(encoded)
  for piece, (tokens, _) in zip(pieces, encoded):
    np.testing.assert_array_equal(piece, tokens)


def test_packed_and_unpacked_give_the_same_loss():
  cfg = ModelConfig(vocab_size=TOK.vocab_size, max_len=48, num_layers=2, num_heads=2, width=16)
  model = decoder.Decoder(cfg)
  params = decoder.init_params(cfg, jax.random.PRNGKey(0))
  encoded, _ = instruct.encode_examples(_examples(), TOK, TEMPLATE, context=48,
                                        truncation="error")

  def loss(rows):
    logits, _ = model.apply({"params": params}, jnp.asarray(rows["inputs"]),
                            positions=jnp.asarray(rows["positions"]),
                            segment_ids=jnp.asarray(rows["segment_ids"]))
    return losses.cross_entropy(logits=logits, targets=jnp.asarray(rows["targets"]),
                                weights=jnp.asarray(rows["weights"]))

  packed, padded = loss(instruct.pack(encoded, context=48)), loss(instruct.pad(encoded,
                                                                                context=48))
  for key in ("loss_sum", "weight_sum", "nll_sum"):
    np.testing.assert_allclose(packed[key], padded[key], rtol=1e-5)


def test_a_template_with_no_trained_token_is_an_error():
  template = instruct.ChatTemplate(bos="", system="{content}", user="Q {content}\n",
                                   assistant="A {content}")
  examples = [("data.jsonl:line 4", [{"role": "user", "content": "HI"},
                                     {"role": "assistant", "content": ""}])]
  with pytest.raises(DataError, match="line 4.*no response token"):
    instruct.encode_examples(examples, TOK, template, context=32, truncation="error")


def test_truncation_policies_are_counted_or_loud():
  long = [("f:line 1", [{"role": "user", "content": "X" * 40},
                        {"role": "assistant", "content": "y" * 10}])]
  short = [("f:line 2", [{"role": "user", "content": "X"},
                         {"role": "assistant", "content": "y"}])]
  with pytest.raises(DataError, match="f:line 1: .* longer than"):
    instruct.encode_examples(long + short, TOK, TEMPLATE, context=32, truncation="error")
  _, counts = instruct.encode_examples(long + short, TOK, TEMPLATE, context=32,
                                       truncation="drop")
  assert counts == {"examples": 1, "truncated": 0, "dropped": 1}
  encoded, counts = instruct.encode_examples(long + short, TOK, TEMPLATE, context=48,
                                             truncation="truncate")
  assert counts == {"examples": 2, "truncated": 1, "dropped": 0}
  tokens, trained = encoded[0]
  assert len(tokens) == 24 + 11 and trained[1:].sum() == 11  # context // 2 prompt tokens.
  # A prompt longer than the context loses its start; the response is kept.
  encoded, counts = instruct.encode_examples(long + short, TOK, TEMPLATE, context=32,
                                             truncation="truncate")
  assert counts == {"examples": 2, "truncated": 1, "dropped": 0}
  tokens, trained = encoded[0]
  assert len(tokens) == 16 + 11 and trained[1:].sum() == 11  # Response: "y" * 10, <eos>.


def test_alpaca_and_chat_files(tmp_path):
  alpaca = tmp_path / "a.json"
  alpaca.write_text(json.dumps([{"instruction": "Add", "input": "1 2", "output": "3"},
                                {"instruction": "Hi", "output": "hello"}]))
  examples = instruct.load_examples(str(alpaca))
  assert examples[0][1] == [{"role": "user", "content": "Add\n\n1 2"},
                            {"role": "assistant", "content": "3"}]
  chat = tmp_path / "c.jsonl"
  chat.write_text(json.dumps({"messages": [{"role": "user", "content": "a"},
                                           {"role": "assistant", "content": "b"}]}) + "\n"
                  + json.dumps({"messages": [{"role": "user", "content": "a"}]}) + "\n")
  with pytest.raises(DataError, match="c.jsonl:line 2: no 'assistant' message"):
    instruct.load_examples(str(chat))
  bad = tmp_path / "b.jsonl"
  bad.write_text('{"instruction": "x", "output": "y"}\n{"instruction": "x"}\n')
  with pytest.raises(DataError, match="b.jsonl:line 2: missing field 'output'"):
    instruct.load_examples(str(bad))


HH = [
    ("\n\nHuman: hi\n\nAssistant: hello there", "\n\nHuman: hi\n\nAssistant: go away"),
    # Multi-turn; the responses start with the same letters (the split is at the marker).
    ("\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant: sure, yes",
     "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant: sure, no"),
    ("\n\nHuman: q\n\nAssistant: x", "\n\nHuman: q\n\nAssistant: x and more"),
]


@pytest.mark.parametrize("chosen,rejected", HH)
def test_hh_split_reassembles_each_transcript(chosen, rejected):
  prompt, c, r = preference.split_hh(chosen, rejected)
  assert prompt + c == chosen and prompt + r == rejected
  assert prompt.endswith(preference.HH_ASSISTANT)


def test_hh_split_takes_the_last_shared_marker():
  prompt, c, r = preference.split_hh(*HH[1])
  assert prompt == "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant:"
  assert (c, r) == (" sure, yes", " sure, no")


def test_preference_rows_interleave_and_weight_responses(tmp_path):
  path = tmp_path / "p.jsonl"
  rows = [{"prompt": "ABC", "chosen": "cba", "rejected": "abc"},
          {"chosen": HH[0][0], "rejected": HH[0][1]}]
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  pairs = preference.load_pairs(str(path))
  assert [p["raw_prompt"] for p in pairs] == [False, True]
  out, counts = preference.encode_pairs(pairs, TOK, TEMPLATE, context=64, truncation="error")
  assert counts == {"pairs": 2, "truncated": 0, "dropped": 0}
  assert out["inputs"].shape == (4, 64)
  first = TOK.decode(out["targets"][0][out["weights"][0] > 0])
  assert first == "cba" and out["targets"][0][out["weights"][0] > 0][-1] == EOS
  assert TOK.decode(out["targets"][1][out["weights"][1] > 0]) == "abc"
  assert TOK.decode(out["targets"][3][out["weights"][3] > 0]) == " go away"


@pytest.mark.parametrize("row,match", [
    ({"prompt": "a", "chosen": "b"}, "line 2: missing field 'rejected'"),
    ({"prompt": "a", "chosen": "b", "rejected": "b"}, "line 2: chosen and rejected .* identical"),
    ({"prompt": "a", "chosen": 3, "rejected": "b"}, "line 2: field 'chosen' must be a string"),
    ({"chosen": "x", "rejected": "y"}, "line 2: no 'prompt' field"),
])
def test_bad_preference_rows_name_file_and_line(tmp_path, row, match):
  path = tmp_path / "p.jsonl"
  path.write_text(json.dumps({"prompt": "a", "chosen": "b", "rejected": "c"}) + "\n"
                  + json.dumps(row) + "\n")
  with pytest.raises(DataError, match=match):
    preference.load_pairs(str(path))


def test_preference_truncation_counts(tmp_path):
  pairs = [{"where": "w", "prompt": "P" * 50, "chosen": "a" * 30, "rejected": "b" * 30,
            "raw_prompt": False},
           {"where": "v", "prompt": "P", "chosen": "a", "rejected": "b", "raw_prompt": False}]
  with pytest.raises(DataError, match="w: .* longer than"):
    preference.encode_pairs(pairs, TOK, TEMPLATE, context=32, truncation="error")
  _, counts = preference.encode_pairs(pairs, TOK, TEMPLATE, context=32, truncation="drop")
  assert counts == {"pairs": 1, "truncated": 0, "dropped": 1}
  rows, counts = preference.encode_pairs(pairs, TOK, TEMPLATE, context=32,
                                         truncation="truncate")
  assert counts == {"pairs": 2, "truncated": 1, "dropped": 0}
  assert rows["weights"][0].sum() > 0


@pytest.mark.skipif(not os.path.isdir(SHARED), reason="no ../shared/data")
def test_real_files_load_and_encode():
  examples = instruct.load_examples(os.path.join(SHARED, "instruct", "alpaca_en_demo.json"))
  assert len(examples) == 999
  _, counts = instruct.encode_examples(examples[:50], TOK, TEMPLATE, context=256,
                                       truncation="truncate")
  assert counts["examples"] + counts["dropped"] == 50
  pairs = preference.load_pairs(os.path.join(SHARED, "preference", "dpo_en_demo.jsonl"))
  assert len(pairs) == 114
  _, counts = preference.encode_pairs(pairs[:20], TOK, TEMPLATE, context=256,
                                      truncation="truncate")
  assert counts["pairs"] + counts["dropped"] == 20


def test_a_character_outside_the_vocabulary_names_the_example():
  tok = tokenizers.CharTokenizer("abcQA =\n")
  template = instruct.ChatTemplate(bos="", system="{content}", user="Q {content}\n",
                                   assistant="A {content}\n")
  examples = [("f.jsonl:line 7", [{"role": "user", "content": "abc"},
                                  {"role": "assistant", "content": "xyz"}])]
  with pytest.raises(DataError, match="f.jsonl:line 7: character 'x'"):
    instruct.encode_examples(examples, tok, template, context=32, truncation="error")
