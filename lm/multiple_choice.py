"""Multiple-choice evaluation by log-likelihood: MMLU (Hendrycks et al.) and generic JSONL.

Scoring goes through `loglikelihood(requests) -> [log p(continuation | context)]` on text
pairs, so a toy table of log-likelihoods, this project's decoder or an imported model all
plug in (`model_loglikelihood` builds one from a `lm.evaluation.Scorer` and a tokenizer).

Per question, three accuracies:
  acc_letter  argmax over the answer letters: log p(" A" | prompt ending "Answer:"), as the
              original MMLU evaluation;
  acc         argmax over each choice's text as continuation, log p(" <choice>" | prompt);
  acc_norm    the same divided by the continuation's length in characters
              (lm-evaluation-harness's acc_norm).
"""

import csv
import dataclasses
import json
import os
from typing import Callable, Sequence

import numpy as np

from lm import evaluation
from lm.errors import DataError

LETTERS = "ABCDEFGHIJ"
LogLikelihood = Callable[[Sequence[tuple[str, str]]], Sequence[float]]


@dataclasses.dataclass(frozen=True)
class Example:
  query: str
  choices: tuple[str, ...]
  gold: int  # Index into choices.
  subject: str = ""


def read_mmlu_csv(path: str, subject: str, num_choices: int = 4) -> list[Example]:
  """Rows `question, choice_1..choice_k, answer letter` (no header, MMLU's layout).

  A first row `question,A,B,...,answer` (any case) is a header and fixes k; otherwise k =
  num_choices. A row with another field count or an answer outside the letters is an error
  naming the file and line.
  """
  if not os.path.isfile(path):
    raise DataError(f"{path}: no such file")
  with open(path, encoding="utf-8", newline="") as f:
    rows = list(csv.reader(f))
  if not rows:
    raise DataError(f"{path}: file is empty")
  start = 0
  if rows[0] and rows[0][0].strip().lower() == "question":
    num_choices, start = len(rows[0]) - 2, 1
    if num_choices < 2:
      raise DataError(f"{path}: header {rows[0]} names fewer than 2 choices")
  examples = []
  for line, row in enumerate(rows[start:], start + 1):
    if len(row) != num_choices + 2:
      raise DataError(f"{path}:{line}: {len(row)} fields, expected {num_choices + 2} "
                      f"(question, {num_choices} choices, answer letter"
                      f"{', from the header' if start else ''})")
    answer = row[-1].strip()
    if len(answer) != 1 or answer not in LETTERS[:num_choices]:
      raise DataError(f"{path}:{line}: answer {row[-1]!r} is not one of "
                      f"{', '.join(LETTERS[:num_choices])}")
    examples.append(Example(row[0], tuple(row[1:-1]), LETTERS.index(answer), subject))
  return examples


def read_mmlu(data_dir: str, split: str, subjects: Sequence[str] | None = None
              ) -> dict[str, list[Example]]:
  """{subject: examples} from `<data_dir>/<split>/<subject>_<split>.csv` (split dev/val/test)."""
  folder = os.path.join(data_dir, split)
  if not os.path.isdir(folder):
    raise DataError(f"no MMLU folder {folder}; expected <dir>/{split}/<subject>_{split}.csv")
  suffix = f"_{split}.csv"
  found = sorted(n[:-len(suffix)] for n in os.listdir(folder) if n.endswith(suffix))
  if subjects:
    missing = sorted(set(subjects) - set(found))
    if missing:
      raise DataError(f"MMLU subjects not in {folder}: {', '.join(missing)}")
    found = [s for s in found if s in set(subjects)]
  if not found:
    raise DataError(f"{folder} has no *{suffix} files")
  return {s: read_mmlu_csv(os.path.join(folder, s + suffix), s) for s in found}


def read_jsonl(path: str) -> list[Example]:
  """Lines {"query": str, "choices": [str, ...], "gold": int}; every line the same count."""
  if not os.path.isfile(path):
    raise DataError(f"{path}: no such file")
  examples = []
  with open(path, encoding="utf-8") as f:
    for line, text in enumerate(f, 1):
      if not text.strip():
        continue
      try:
        d = json.loads(text)
        ex = Example(str(d["query"]), tuple(str(c) for c in d["choices"]), int(d["gold"]),
                     str(d.get("subject", "")))
      except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise DataError(f"{path}:{line}: expected JSON with query, choices, gold "
                        f"({type(e).__name__}: {e})") from None
      if examples and len(ex.choices) != len(examples[0].choices):
        raise DataError(f"{path}:{line}: {len(ex.choices)} choices, the first line has "
                        f"{len(examples[0].choices)}")
      if not 0 <= ex.gold < len(ex.choices) or len(ex.choices) < 2:
        raise DataError(f"{path}:{line}: gold {ex.gold} is not an index into "
                        f"{len(ex.choices)} choices")
      examples.append(ex)
  if not examples:
    raise DataError(f"{path}: no examples")
  return examples


def format_question(ex: Example, answer: bool) -> str:
  """'Q\\nA. a\\nB. b\\n...Answer:' (+ ' X\\n\\n' with the answer), Hendrycks' layout."""
  text = ex.query + "".join(f"\n{LETTERS[i]}. {c}" for i, c in enumerate(ex.choices))
  text += "\nAnswer:"
  return text + f" {LETTERS[ex.gold]}\n\n" if answer else text


def mmlu_prompt(ex: Example, shots: Sequence[Example]) -> str:
  """The k-shot prompt of the original MMLU evaluation, ending in 'Answer:'."""
  subject = ex.subject.replace("_", " ")
  head = f"The following are multiple choice questions (with answers) about {subject}.\n\n"
  return head + "".join(format_question(s, True) for s in shots) + format_question(ex, False)


def score_examples(examples: Sequence[Example], prompts: Sequence[str],
                   loglikelihood: LogLikelihood, *, letters: bool = True) -> dict:
  """acc_letter (if `letters`), acc and acc_norm over `examples`, and n."""
  requests, spans = [], []
  for ex, prompt in zip(examples, prompts):
    start = len(requests)
    if letters:
      requests += [(prompt, f" {LETTERS[i]}") for i in range(len(ex.choices))]
    requests += [(prompt, f" {c}") for c in ex.choices]
    spans.append(start)
  ll = np.asarray(loglikelihood(requests), np.float64)
  correct = {"acc_letter": [], "acc": [], "acc_norm": []} if letters else {"acc": [],
                                                                           "acc_norm": []}
  for ex, start in zip(examples, spans):
    k = len(ex.choices)
    if letters:
      correct["acc_letter"].append(int(np.argmax(ll[start:start + k])) == ex.gold)
      start += k
    choice_ll = ll[start:start + k]
    lengths = np.array([len(f" {c}") for c in ex.choices], np.float64)
    correct["acc"].append(int(np.argmax(choice_ll)) == ex.gold)
    correct["acc_norm"].append(int(np.argmax(choice_ll / lengths)) == ex.gold)
  return {**{k: float(np.mean(v)) for k, v in correct.items()}, "n": len(examples)}


def evaluate_mmlu(test: dict[str, list[Example]], dev: dict[str, list[Example]],
                  loglikelihood: LogLikelihood, *, shots: int = 5,
                  max_per_subject: int | None = None) -> dict:
  """Per-subject and averaged accuracies, the first `shots` dev examples as the prompt.

  Returns {"subjects": {subject: {acc_letter, acc, acc_norm, n}}, "macro": mean over
  subjects, "micro": weighted by subject size, "shots": k, "chance": mean 1/k}.
  """
  per_subject = {}
  for subject, examples in test.items():
    pool = dev.get(subject, [])
    if len(pool) < shots:
      raise DataError(f"MMLU subject {subject!r}: {shots}-shot needs {shots} dev examples, "
                      f"found {len(pool)}")
    examples = examples[:max_per_subject]
    prompts = [mmlu_prompt(ex, pool[:shots]) for ex in examples]
    per_subject[subject] = score_examples(examples, prompts, loglikelihood)
  keys = ("acc_letter", "acc", "acc_norm")
  sizes = np.array([r["n"] for r in per_subject.values()], np.float64)
  macro = {k: float(np.mean([r[k] for r in per_subject.values()])) for k in keys}
  micro = {k: float(np.sum([r[k] * r["n"] for r in per_subject.values()]) / sizes.sum())
           for k in keys}
  chance = float(np.mean([1 / len(ex.choices) for exs in test.values() for ex in exs]))
  return {"subjects": per_subject, "macro": macro, "micro": {**micro, "n": int(sizes.sum())},
          "shots": shots, "chance": chance}


def model_loglikelihood(scorer: evaluation.Scorer, tokenizer, *, max_len: int,
                        batch_size: int = 32) -> LogLikelihood:
  """A `LogLikelihood` from a token scorer: context and continuation encoded separately."""

  def loglikelihood(requests):
    encoded = [(tokenizer.encode(ctx), tokenizer.encode(cont)) for ctx, cont in requests]
    return evaluation.continuation_logprobs(scorer, encoded, max_len=max_len,
                                            batch_size=batch_size)

  return loglikelihood


def classify(loglikelihood: LogLikelihood, prompt: str, labels: Sequence[str]) -> np.ndarray:
  """Zero-shot classification: p(label | prompt) renormalised over `labels` [n]."""
  ll = np.asarray(loglikelihood([(prompt, label) for label in labels]), np.float64)
  p = np.exp(ll - ll.max())
  return p / p.sum()
