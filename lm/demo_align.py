"""Pretrain -> SFT -> DPO on synthetic tasks with a known answer, with the numbers to check.

`run(workdir)` writes the data, trains every stage through `lm.train` (each from the
previous stage's workdir) and measures what the stages should have learnt:
  sft: greedy exact match of the reversal on held-out prompts;
  dpo: held-out preference accuracy before/after, the share of greedy answers ending in the
       preferred mark, exact match (should survive), and the KL to the SFT model.
"""

import json
import os
import random

import numpy as np

from lm import decoding, run_files, train
from lm.models import decoder
from configs import demo_align

ALPHABET = "abcdefgh"


def _word(rng) -> str:
  return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(3, 6)))


def write_data(root: str, seed: int = 0) -> dict:
  """Synthetic files under `root`; returns their paths. Train and held-out words differ."""
  rng = random.Random(seed)
  words = set()
  while len(words) < 6000:
    words.add(_word(rng))
  words = sorted(words)
  rng.shuffle(words)
  held_out, train_words = words[:200], words[200:]
  os.makedirs(root, exist_ok=True)
  paths = {k: os.path.join(root, f"{k}") for k in
           ("corpus.txt", "sft_train.jsonl", "sft_eval.jsonl", "pref_train.jsonl",
            "pref_eval.jsonl")}
  # Pretraining text: words, and words followed by their mirror image ('abc|cba'), so the
  # pretrained model has seen reversal but never the 'rev:...=' instruction format.
  # (Pretraining on random words alone left a model SFT could not teach in 800 steps.)
  lines = []
  for _ in range(8000):
    w = _word(rng)
    lines.append(f"{w}|{w[::-1]}" if rng.random() < 0.5 else f"{w} {_word(rng)}")
  corpus = "\n".join(lines)
  with open(paths["corpus.txt"], "w") as f:
    f.write(corpus)

  def sft(word):
    mark = rng.choice(".!")
    return {"instruction": f"rev:{word}", "output": word[::-1] + mark}

  def pair(word):
    return {"prompt": f"rev:{word}", "chosen": word[::-1] + ".", "rejected": word[::-1] + "!"}

  for name, rows in (("sft_train.jsonl", [sft(w) for w in train_words[:4000]]),
                     ("sft_eval.jsonl", [sft(w) for w in held_out]),
                     ("pref_train.jsonl", [pair(w) for w in train_words[4000:5600]]),
                     ("pref_eval.jsonl", [pair(w) for w in held_out])):
    with open(paths[name], "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in rows)
  paths["held_out"] = held_out
  return paths


def greedy_answers(workdir: str, words) -> list[str]:
  """Greedy completions (up to <eos>) of 'rev:WORD=' by the run in `workdir`."""
  config, tokenizer, model_cfg, params = run_files.load_run(workdir)
  bos, eos = tokenizer.special_ids["<bos>"], tokenizer.special_ids["<eos>"]
  prompts = [[bos] + tokenizer.encode(f"rev:{w}=") for w in words]
  out = decoding.generate(decoder.decoding_model(model_cfg, params), prompts,
                          max_new_tokens=10, stop_tokens=[eos])
  return [tokenizer.decode([t for t in row if t != eos]) for row in out.lists()]


def answer_stats(answers, words) -> dict:
  """exact: the reversal then one mark; dot: the share ending in the preferred '.'."""
  exact = [a[:-1] == w[::-1] and a[-1:] in (".", "!") for a, w in zip(answers, words)]
  return {"exact_match": float(np.mean(exact)),
          "dot_rate": float(np.mean([a.endswith(".") for a in answers]))}


def _stage(variant: str, workdir: str, **fields) -> dict:
  config = demo_align.get_config(variant)
  for key, value in fields.items():
    section, _, name = key.rpartition(".")
    (config[section] if section else config)[name] = value
  return train.train_and_evaluate(config, workdir)


def run(workdir: str, *, reward: bool = True) -> dict:
  """Every stage in `<workdir>/{pretrain,sft,dpo,reward}`; returns and saves the numbers."""
  paths = write_data(os.path.join(workdir, "data"))
  held_out = paths["held_out"]
  d = lambda name: os.path.join(workdir, name)  # noqa: E731
  report = {}
  pre = _stage("pretrain", d("pretrain"), **{"data.text_file": paths["corpus.txt"]})
  report["pretrain"] = {"validation_loss": pre["loss"]}
  sft = _stage("sft", d("sft"), init_from=d("pretrain"),
               **{"align.train_file": paths["sft_train.jsonl"],
                  "align.eval_file": paths["sft_eval.jsonl"]})
  report["sft"] = {"response_loss": sft["loss"], "response_token_accuracy": sft["accuracy"],
                   **answer_stats(greedy_answers(d("sft"), held_out), held_out),
                   "data_counts": sft["data_counts"]}
  pref = {"align.train_file": paths["pref_train.jsonl"],
          "align.eval_file": paths["pref_eval.jsonl"]}
  dpo = _stage("dpo", d("dpo"), init_from=d("sft"), **pref)
  from lm import metrics  # The held-out record at the first eval, to compare with the end.
  first = next(r for r in metrics.read(d("dpo")) if r["split"] != "train")
  report["dpo"] = {"heldout_preference_accuracy": dpo["accuracy"],
                   "heldout_logp_accuracy": dpo["logp_accuracy"],
                   "margin": dpo["margin"], "kl_per_token": dpo["kl_per_token"],
                   "first_eval": {k: first[k] for k in ("step", "accuracy", "logp_accuracy",
                                                        "kl_per_token")},
                   **answer_stats(greedy_answers(d("dpo"), held_out), held_out)}
  report["dpo_start"] = _initial_preference(d("dpo"))
  if reward:
    rm = _stage("reward", d("reward"), init_from=d("sft"), **pref)
    report["reward"] = {"heldout_pairwise_accuracy": rm["accuracy"], "loss": rm["loss"]}
  run_files.write_json(os.path.join(workdir, "demo.json"), report)
  return report


def _initial_preference(workdir: str) -> dict:
  """Held-out accuracies of the DPO starting point (policy == reference) from its cache."""
  cache = np.load(os.path.join(workdir, "reference_logprobs.npz"))["eval"].reshape(-1, 2)
  return {"heldout_preference_accuracy": 0.5,  # All implicit rewards are 0: ties count 1/2.
          "heldout_logp_accuracy": float(np.mean(cache[:, 0] > cache[:, 1]))}
