r"""Loss and perplexity of a workdir's latest checkpoint on a split.

  ./launch.sh evaluate --workdir=runs/baby --split=test

or of a Hugging Face checkpoint directory on a text file (protocol in lm/hf/evaluate.py):

  ./launch.sh evaluate --hf_checkpoint=ckpt/gpt2 --text_file=test.txt --output=gpt2.json
"""

import os

from absl import flags

from lm import cli, evaluation, families, losses, run_files, train
from lm.errors import UserError
from lm.models import decoder

_WORKDIR = flags.DEFINE_string("workdir", None, "A training run's workdir.")
_SPLIT = flags.DEFINE_enum("split", "validation", train.SPLITS, "Split to score.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step; default the latest.")


# Hugging Face checkpoints (lm/hf): instead of --workdir.
_HF = flags.DEFINE_string("hf_checkpoint", None, "A Hugging Face checkpoint directory.")
_TEXT = flags.DEFINE_string("text_file", None, "With --hf_checkpoint: UTF-8 text to score.")
_OUTPUT = flags.DEFINE_string("output", None, "With --hf_checkpoint: write the metrics here.")
_BATCH = flags.DEFINE_integer("batch_size", 4, "With --hf_checkpoint: windows per batch.")


def main_hf():
  from lm.hf import evaluate  # Deferred: only this branch needs the HF libraries.
  if not _TEXT.value:
    raise UserError("--hf_checkpoint needs --text_file")
  r = evaluate.evaluate_file(_HF.value, _TEXT.value, batch_size=_BATCH.value)
  if _OUTPUT.value:
    run_files.write_json(_OUTPUT.value, r)
  print(f"{_TEXT.value}: perplexity {r['perplexity']:.3f} | {r['bits_per_byte']:.4f} bits per "
        f"byte | {r['nll']:.4f} nats/token | {r['tokens']:.0f} tokens, {r['bytes']} bytes, "
        f"windows of {r['context']}" + (f" -> {_OUTPUT.value}" if _OUTPUT.value else ""))


def main(argv):
  del argv
  if bool(_WORKDIR.value) == bool(_HF.value):
    raise UserError("give exactly one of --workdir and --hf_checkpoint")
  if _HF.value:
    return main_hf()
  if run_files.read_config(_WORKDIR.value).model.get("family", "decoder") != "decoder":
    # Encoder / encoder-decoder runs: their stage's own evaluation (lm.families).
    result = families.evaluate_run(_WORKDIR.value, _STEP.value)
    run_files.write_json(os.path.join(_WORKDIR.value, "eval_family.json"), result)
    print(" | ".join(f"{k} {v:.4f}" for k, v in result.items() if isinstance(v, float)))
    return
  config, tokenizer, model_cfg, params = run_files.load_run(_WORKDIR.value, _STEP.value)
  _, tokens = train.load_data(config, _WORKDIR.value)
  loss_fn = losses.get(config.loss.name)  # Plain NLL: no smoothing or z-loss at eval.
  result = evaluation.evaluate_tokens(params, tokens[_SPLIT.value],
                                      model=decoder.Decoder(model_cfg), loss_fn=loss_fn,
                                      context=config.data.context,
                                      batch_size=config.eval.batch_size)
  result["split"] = _SPLIT.value
  path = os.path.join(_WORKDIR.value, f"eval_{_SPLIT.value}.json")
  run_files.write_json(path, result)
  print(f"{_SPLIT.value}: loss {result['nll']:.4f} nats/token | perplexity "
        f"{result['perplexity']:.3f} | {result['tokens']:.0f} tokens -> {path}")


if __name__ == "__main__":
  cli.run(main)
