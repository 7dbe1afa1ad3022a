"""Multiple choice: MMLU reading and prompts, accuracies on a toy model, bad input."""

import json
import math
import os

import numpy as np
import pytest

from lm import multiple_choice as mc, tokenizers
from lm.errors import DataError

MMLU = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mmlu")


def test_one_shot_prompt_matches_hand_written_string():
  shot = mc.Example("What is 2 + 2?", ("3", "4", "5", "6"), 1, "elementary_mathematics")
  ex = mc.Example("What is 3 * 3?", ("6", "9", "12", "33"), 1, "elementary_mathematics")
  expected = ("The following are multiple choice questions (with answers) about elementary "
              "mathematics.\n\n"
              "What is 2 + 2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer: B\n\n"
              "What is 3 * 3?\nA. 6\nB. 9\nC. 12\nD. 33\nAnswer:")
  assert mc.mmlu_prompt(ex, [shot]) == expected


def toy_loglikelihood(table):
  """A model whose log-likelihoods are looked up by continuation text."""
  return lambda requests: [table[cont] for _, cont in requests]


def test_acc_and_acc_norm_on_known_loglikelihoods():
  # Question 1 (gold 0, "a long right answer"): raw log-likelihood prefers the short wrong
  # " no" (-2 > -6), per character the long answer wins (-6/20 = -0.3 > -2/3).
  # Question 2 (gold 1): both prefer " yes".
  q1 = mc.Example("q1", ("a long right answer", "no"), 0)
  q2 = mc.Example("q2", ("maybe", "yes"), 1)
  table = {" a long right answer": -6.0, " no": -2.0, " maybe": -9.0, " yes": -1.0,
           " A": -0.5, " B": -1.5}  # Letters: A wins for both questions.
  r = mc.score_examples([q1, q2], ["p1", "p2"], toy_loglikelihood(table))
  assert r == {"acc_letter": 0.5, "acc": 0.5, "acc_norm": 1.0, "n": 2}


def test_mmlu_averages_macro_and_size_weighted():
  dev = {s: [mc.Example("d", ("x", "y"), 0, s)] for s in ("s1", "s2")}
  test = {"s1": [mc.Example("q", ("right", "wrong"), 0, "s1")] * 3,
          "s2": [mc.Example("q", ("wrong", "right"), 0, "s2")]}
  table = {" right": -1.0, " wrong": -3.0, " A": -1.0, " B": -2.0}
  r = mc.evaluate_mmlu(test, dev, toy_loglikelihood(table), shots=1)
  assert r["subjects"]["s1"]["acc"] == 1.0 and r["subjects"]["s2"]["acc"] == 0.0
  assert r["macro"]["acc"] == 0.5 and r["micro"]["acc"] == 0.75
  assert r["chance"] == 0.5
  with pytest.raises(DataError, match="3-shot needs 3 dev examples"):
    mc.evaluate_mmlu(test, dev, toy_loglikelihood(table), shots=3)


def test_reads_real_mmlu_layout():
  if not os.path.isdir(MMLU):
    pytest.skip("../shared/data/mmlu not beside the repo")
  data = mc.read_mmlu(MMLU, "dev", ["abstract_algebra", "virology"])
  assert sorted(data) == ["abstract_algebra", "virology"]
  assert all(len(v) == 5 and all(len(e.choices) == 4 for e in v) for v in data.values())


def test_malformed_csv_rows_are_named(tmp_path):
  path = tmp_path / "x_test.csv"
  path.write_text('q1,a,b,c,d,A\n"q2, with comma",a,b,c,B\n')
  with pytest.raises(DataError, match=r"x_test.csv:2: 5 fields, expected 6"):
    mc.read_mmlu_csv(str(path), "x")
  path.write_text("q1,a,b,c,d,E\n")
  with pytest.raises(DataError, match=r":1: answer 'E' is not one of A, B, C, D"):
    mc.read_mmlu_csv(str(path), "x")
  path.write_text("question,A,B,C,answer\nq,a,b,c,C\nq,a,b,c,d,A\n")
  with pytest.raises(DataError, match=r":3: 6 fields, expected 5 .*from the header"):
    mc.read_mmlu_csv(str(path), "x")


def test_jsonl_format_and_its_errors(tmp_path):
  path = tmp_path / "t.jsonl"
  rows = [{"query": "Sky is", "choices": ["blue", "green"], "gold": 0},
          {"query": "Grass is", "choices": ["blue", "green"], "gold": 1}]
  path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
  examples = mc.read_jsonl(str(path))
  assert examples[1] == mc.Example("Grass is", ("blue", "green"), 1)
  rows.append({"query": "x", "choices": ["a", "b", "c"], "gold": 0})
  path.write_text("\n".join(json.dumps(r) for r in rows))
  with pytest.raises(DataError, match=r"t.jsonl:3: 3 choices, the first line has 2"):
    mc.read_jsonl(str(path))
  path.write_text('{"query": "x", "choices": ["a"]}\n')
  with pytest.raises(DataError, match=r"t.jsonl:1: expected JSON with query, choices, gold"):
    mc.read_jsonl(str(path))


def test_zero_shot_classification_through_the_scoring_path():
  # A byte "model" that likes 'p' (log 0.5) and spreads the rest evenly: " positive" beats
  # " negative" by exactly one token's log-odds.
  tok = tokenizers.ByteTokenizer()
  p_id = ord("p")

  def scorer(inputs, targets):
    other = math.log(0.5 / (tok.vocab_size - 1))
    return np.where(targets == p_id, math.log(0.5), other).astype(np.float32)

  ll = mc.model_loglikelihood(scorer, tok, max_len=64)
  probs = mc.classify(ll, 'The sentiment of "What a lovely day" is:', [" positive", " negative"])
  odds = math.log(0.5) - math.log(0.5 / (tok.vocab_size - 1))
  assert probs[0] == pytest.approx(1 / (1 + math.exp(-odds)), rel=1e-5)
  assert probs.sum() == pytest.approx(1.0)


def test_char_tokenizer_names_the_character_it_cannot_encode():
  tok = tokenizers.build("char", "abc ABC:\n")
  ll = mc.model_loglikelihood(lambda i, t: np.zeros(i.shape, np.float32), tok, max_len=8)
  with pytest.raises(DataError, match="'?' is not in the character vocabulary"):
    ll([("abc?", " A")])
