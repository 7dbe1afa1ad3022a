"""Perplexity tables from run folders: varying columns, numbers, missing cells, all formats."""

import csv
import io
import json
import os

from configs import shakespeare_char
from lm import evaluation, run_files, tables, tokenizers


def _make_run(root, name, width, *, evaluated=True, trained=True,
              results=(("train_wall_s", 8.0),)):
  run = os.path.join(root, name)
  c = shakespeare_char.get_config("smoke")
  c.model.width = width
  run_files.write_config(run, c)
  tokenizers.save(tokenizers.build("char", "abcdef"), run_files.tokenizer_path(run))
  with open(os.path.join(run, "metrics.jsonl"), "w") as f:
    for step in (10, 20):
      f.write(json.dumps({"step": step, "split": "train", "loss": 3.0 - step / 20}) + "\n")
      f.write(json.dumps({"step": step, "split": "validation", "perplexity": 9.0 - step / 10})
              + "\n")
  if trained:
    run_files.write_json(os.path.join(run, "results.json"), dict(results))
  if evaluated:
    protocol = evaluation.Protocol(32)
    for split, logprob in (("validation", -100.0), ("test", -90.0)):
      m = evaluation.summarize(logprob, 50, num_bytes=60, num_words=10, protocol=protocol)
      run_files.write_json(os.path.join(run, f"eval_{split}.json"), m)
  return run


def test_table_rows_columns_and_missing_cells(tmp_path):
  root = str(tmp_path)
  runs = [_make_run(root, "w32", 32), _make_run(root, "w64", 64, evaluated=False),
          _make_run(root, "w16", 16, trained=False, evaluated=False)]
  assert tables.run_dirs_under(root) == sorted(runs)
  paths = tables.write(os.path.join(root, "out"), runs)
  md = open(paths[0]).read()
  assert "window 32 tokens, disjoint windows" in md.splitlines()[0]
  header = md.splitlines()[2]
  assert header.startswith(
      "| width | training | params | tokens seen | train s | tokens/s | valid ppl")
  row = md.splitlines()[4]
  # 20 steps x 8 sequences x 32 tokens; perplexity exp(100 / 50); bits/byte 100 / (60 ln 2).
  assert row.startswith("| 32 | done | ") and "0.01M" in row
  assert "| 7.39 | 2.4045 | 6.05 | 2.1640 |" in row
  assert md.splitlines()[5].endswith("| — | — | — | — |")  # Trained, not evaluated.
  # Not finished: the step reached (metrics.jsonl), tokens to that step, no evaluation.
  assert md.splitlines()[6].startswith("| 16 | stopped at step 20 | ")
  assert "not available" in md
  rows = list(csv.DictReader(io.StringIO(open(paths[1]).read())))
  assert [r["model.width"] for r in rows] == ["32", "64", "16"]
  assert float(rows[0]["valid_ppl"]) == __import__("math").exp(2.0)
  assert rows[1]["valid_ppl"] == "" and rows[2]["train_wall_s"] == ""
  tex = open(paths[2]).read()
  assert r"\begin{tabular}" in tex and "valid bits/byte" in tex and "--" in tex
  assert os.path.getsize(paths[3]) > 1000  # The learning-curve PNG.


def test_a_folder_without_config_is_not_a_run(tmp_path):
  os.makedirs(tmp_path / "notes")
  _make_run(str(tmp_path), "r", 32)
  assert [os.path.basename(d) for d in tables.run_dirs_under(str(tmp_path))] == ["r"]


def test_train_time_and_tokens_per_second_columns(tmp_path):
  root = str(tmp_path)
  runs = [_make_run(root, "w32", 32, results={"train_wall_s": 2.5}),
          # Resumed from a checkpoint that did not keep the train time (lm/train.py).
          _make_run(root, "w64", 64, results={"train_wall_s": None, "train_wall_s_partial": 1.0,
                                              "train_wall_s_from_step": 10})]
  paths = tables.write(os.path.join(root, "out"), runs)
  rows = list(csv.DictReader(io.StringIO(open(paths[1]).read())))
  # smoke: 20 steps x 8 sequences x 32 tokens = 5120 tokens in 2.5 s.
  assert [r["tokens_seen"] for r in rows] == ["5120", "5120"]
  assert rows[0]["train_wall_s"] == "2.5" and float(rows[0]["tokens_per_s"]) == 2048.0
  assert rows[1]["train_wall_s"] == "" and rows[1]["tokens_per_s"] == ""
  assert rows[1]["status"] == "done (train time unknown before step 10)"
  md = open(paths[0]).read().splitlines()
  assert "| 0.01M | 2 | 2,048 |" in md[4]  # tokens seen, train s, tokens/s.
  assert "| done (train time unknown before step 10) |" in md[5] and "| — | — |" in md[5]
