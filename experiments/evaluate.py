r"""Evaluate a training run's checkpoint or an imported Hugging Face checkpoint.

  ./launch.sh evaluate --workdir=runs/baby --splits=validation,test          # perplexity
  ./launch.sh evaluate --workdir=runs/baby --splits=test --stride=32         # sliding
  ./launch.sh evaluate --workdir=runs/byte --task=mmlu --mmlu_dir=../shared/data/mmlu
  ./launch.sh evaluate --hf_checkpoint=ckpt/gpt2 --text_file=test.txt --output=gpt2.json
  ./launch.sh evaluate --hf_checkpoint=ckpt/gpt2 --task=mmlu --output=gpt2_mmlu.json

Writes `<workdir>/eval_<split>.json` or `<workdir>/mmlu_<k>shot.json` (or --output), each
with the evaluation protocol. MMLU needs a tokenizer that encodes any text (byte,
sentencepiece, word, Hugging Face); a char model stops at the first character outside its
vocabulary, naming it. Encoder and encoder-decoder runs get their stage's own evaluation.
"""

import os

from absl import flags

from lm import cli, eval_run, families, run_files
from lm.errors import UserError

_WORKDIR = flags.DEFINE_string("workdir", None, "A training run's workdir.")
_HF = flags.DEFINE_string("hf_checkpoint", None, "Instead of --workdir: a Hugging Face "
                          "checkpoint directory (config.json, model.safetensors, tokenizer).")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step; default the latest.")
_TASK = flags.DEFINE_enum("task", "perplexity", ["perplexity", "mmlu"], "What to evaluate.")
_SPLITS = flags.DEFINE_list("splits", ["validation"], "perplexity: splits to score.")
flags.DEFINE_alias("split", "splits")
_TEXT = flags.DEFINE_string("text_file", None, "perplexity of --hf_checkpoint: UTF-8 text.")
_STRIDE = flags.DEFINE_integer("stride", None, "perplexity: window stride; None: disjoint.")
_PREFIX = flags.DEFINE_string("prefix", "auto", "perplexity: special token before the text "
                              "('none'; 'auto': <eos> for word tokenizers, else none).")
_MMLU_DIR = flags.DEFINE_string("mmlu_dir", "../shared/data/mmlu", "mmlu: dev/ and test/.")
_SHOTS = flags.DEFINE_integer("shots", 5, "mmlu: dev examples per prompt.")
_SUBJECTS = flags.DEFINE_list("subjects", None, "mmlu: subjects to run; None: all 57.")
_MAX_PER_SUBJECT = flags.DEFINE_integer("max_per_subject", None, "mmlu: test questions per "
                                        "subject; None: all.")
_BATCH = flags.DEFINE_integer("batch_size", None, "Rows per forward pass (default 32; 4 for "
                              "--hf_checkpoint perplexity windows).")
_OUTPUT = flags.DEFINE_string("output", None, "Write the metrics here (default: in the "
                              "workdir; for --hf_checkpoint perplexity: not written).")


def main(argv):
  del argv
  if bool(_WORKDIR.value) == bool(_HF.value):
    raise UserError("give exactly one of --workdir and --hf_checkpoint")
  if _HF.value and _TASK.value == "perplexity":
    eval_run.hf_perplexity(_HF.value, _TEXT.value, output=_OUTPUT.value,
                           batch_size=_BATCH.value or 4)
    return
  if _TEXT.value:
    raise UserError("--text_file is for --hf_checkpoint perplexity; a run scores --splits")
  if _WORKDIR.value and run_files.read_config(_WORKDIR.value).model.get(
      "family", "decoder") != "decoder":
    # Encoder / encoder-decoder runs: their stage's own evaluation (lm.families).
    result = families.evaluate_run(_WORKDIR.value, _STEP.value)
    run_files.write_json(os.path.join(_WORKDIR.value, "eval_family.json"), result)
    print(" | ".join(f"{k} {v:.4f}" for k, v in result.items() if isinstance(v, float)))
    return
  model = (eval_run.load_hf(_HF.value) if _HF.value
           else eval_run.load_workdir(_WORKDIR.value, _STEP.value))
  batch = _BATCH.value or 32
  if _TASK.value == "perplexity":
    prefix = None if _PREFIX.value == "none" else _PREFIX.value
    results = eval_run.perplexity(model, _WORKDIR.value, _SPLITS.value, stride=_STRIDE.value,
                                  prefix=prefix, batch_size=batch)
    eval_run.print_perplexity(results)
    return
  r = eval_run.mmlu(model, _MMLU_DIR.value, shots=_SHOTS.value, subjects=_SUBJECTS.value,
                    max_per_subject=_MAX_PER_SUBJECT.value, batch_size=batch)
  path = _OUTPUT.value or (os.path.join(_WORKDIR.value, f"mmlu_{_SHOTS.value}shot.json")
                           if _WORKDIR.value else f"mmlu_{_SHOTS.value}shot.json")
  eval_run.write_json(path, r)
  eval_run.print_mmlu(r, _SHOTS.value, path)


if __name__ == "__main__":
  cli.run(main)
