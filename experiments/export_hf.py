r"""Exports a training run's checkpoint as a Hugging Face checkpoint directory.

  ./launch.sh export_hf --workdir=runs/gpt --out=export/gpt

writes config.json, model.safetensors and the run's tokenizer (tokenizer.json, or
spiece.model for sentencepiece). The format follows the run's model family: decoder ->
GPT-2 (`AutoModelForCausalLM`), encoder -> BERT (`BertForMaskedLM`), encoder_decoder -> T5
(`T5ForConditionalGeneration`). Runs whose options the format cannot express (e.g. a
pre-norm encoder as BERT, rotary positions as GPT-2) are refused with the options that differ.
"""

from absl import flags

from lm import cli, hf

_WORKDIR = flags.DEFINE_string("workdir", None, "A training run's workdir.", required=True)
_OUT = flags.DEFINE_string("out", None, "New directory for the checkpoint.", required=True)
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step; default the latest.")


def main(argv):
  del argv
  files = hf.export_run(_WORKDIR.value, _OUT.value, step=_STEP.value)
  print(f"wrote {_OUT.value}: {', '.join(files)}")


if __name__ == "__main__":
  cli.run(main)
