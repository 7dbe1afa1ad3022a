r"""Exports a training run's checkpoint as a Hugging Face checkpoint directory.

  ./launch.sh export_hf --workdir=runs/gpt --out=export/gpt

writes config.json, model.safetensors and the run's tokenizer as tokenizer.json, which
`transformers.AutoModelForCausalLM` / `AutoTokenizer.from_pretrained("export/gpt")` load. Only GPT-2-shaped
runs export (learned positions, LayerNorm, GELU, biases, tied embeddings); others are
refused with the options that differ.
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
