"""Shared fixtures: small configs and a small synthetic corpus."""

import random

import pytest

from configs import shakespeare_char



def _corpus(n_lines: int = 400, seed: int = 0) -> str:
  """Text with learnable structure: names, then lines from a tiny grammar."""
  rng = random.Random(seed)
  names = ["ROMEO", "JULIET", "NURSE"]
  verbs = ["loves", "sees", "fears", "calls"]
  nouns = ["the moon", "my lord", "the night", "thy face"]
  lines = []
  for _ in range(n_lines):
    lines.append(f"{rng.choice(names)}:\nI {rng.choice(verbs)} {rng.choice(nouns)}.\n")
  return "\n".join(lines)


@pytest.fixture
def corpus_file(tmp_path):
  path = tmp_path / "corpus.txt"
  path.write_text(_corpus(), encoding="utf-8")
  return str(path)


@pytest.fixture
def smoke_config(corpus_file):
  """The `smoke` variant, reading the synthetic corpus as a local text file."""
  c = shakespeare_char.get_config("smoke")
  c.data.source = "text"
  c.data.text_file = corpus_file
  return c
