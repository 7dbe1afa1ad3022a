r"""Evaluates a trained model: perplexity and bits per byte of splits, or MMLU accuracy.

  ./launch.sh evaluate --workdir=runs/baby --splits=validation,test          # perplexity
  ./launch.sh evaluate --workdir=runs/baby --splits=test --stride=32         # sliding
  ./launch.sh evaluate --workdir=runs/byte --task=mmlu --mmlu_dir=../shared/data/mmlu

Writes `<workdir>/eval_<split>.json` or `<workdir>/mmlu_<k>shot.json`, each with the
evaluation protocol. MMLU needs a tokenizer that encodes any text (byte, sentencepiece,
word); a char model stops at the first character outside its vocabulary, naming it.
"""

import os

from absl import flags

from lm import cli, eval_run

_WORKDIR = flags.DEFINE_string("workdir", None, "A training run's workdir.", required=True)
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step; default the latest.")
_TASK = flags.DEFINE_enum("task", "perplexity", ["perplexity", "mmlu"], "What to evaluate.")
_SPLITS = flags.DEFINE_list("splits", ["validation"], "perplexity: splits to score.")
flags.DEFINE_alias("split", "splits")
_STRIDE = flags.DEFINE_integer("stride", None, "perplexity: window stride; None: disjoint.")
_PREFIX = flags.DEFINE_string("prefix", "auto", "perplexity: special token before the text "
                              "('none'; 'auto': <eos> for word tokenizers, else none).")
_MMLU_DIR = flags.DEFINE_string("mmlu_dir", "../shared/data/mmlu", "mmlu: dev/ and test/.")
_SHOTS = flags.DEFINE_integer("shots", 5, "mmlu: dev examples per prompt.")
_SUBJECTS = flags.DEFINE_list("subjects", None, "mmlu: subjects to run; None: all 57.")
_MAX_PER_SUBJECT = flags.DEFINE_integer("max_per_subject", None, "mmlu: test questions per "
                                        "subject; None: all.")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Rows per forward pass.")


def main(argv):
  del argv
  model = eval_run.load_workdir(_WORKDIR.value, _STEP.value)
  if _TASK.value == "perplexity":
    prefix = None if _PREFIX.value == "none" else _PREFIX.value
    results = eval_run.perplexity(model, _WORKDIR.value, _SPLITS.value, stride=_STRIDE.value,
                                  prefix=prefix, batch_size=_BATCH.value)
    for split, r in results.items():
      print(f"{split}: loss {r['nll']:.4f} nats/token | perplexity {r['perplexity']:.2f} | "
            f"bits/byte {r['bits_per_byte']:.4f} | word perplexity {r['word_perplexity']:.2f} | {r['tokens']} tokens | "
            f"{r['protocol']['description']}")
    return
  r = eval_run.mmlu(model, _MMLU_DIR.value, shots=_SHOTS.value, subjects=_SUBJECTS.value,
                    max_per_subject=_MAX_PER_SUBJECT.value, batch_size=_BATCH.value)
  path = os.path.join(_WORKDIR.value, f"mmlu_{_SHOTS.value}shot.json")
  eval_run.write_json(path, r)
  for subject, s in r["subjects"].items():
    print(f"{subject:45s} n={s['n']:4d} acc_letter {s['acc_letter']:.3f} acc {s['acc']:.3f} "
          f"acc_norm {s['acc_norm']:.3f}")
  for avg in ("macro", "micro"):
    print(f"{avg} average: " + " ".join(f"{k} {r[avg][k]:.3f}"
                                        for k in ("acc_letter", "acc", "acc_norm")))
  n, acc = r["micro"]["n"], r["micro"]["acc_letter"]
  print(f"{n} questions, {_SHOTS.value}-shot; chance is {r['chance']:.1%} and acc_letter "
        f"{acc:.1%} +- {(acc * (1 - acc) / n) ** 0.5:.1%} (1 s.e.): a small model is expected "
        f"near chance ({r['note']}) -> {path}")


if __name__ == "__main__":
  cli.run(main)
