r"""Samples text from a workdir's latest checkpoint.

  ./launch.sh sample --workdir=runs/baby --prompt="ROMEO:" --num_tokens=300
"""

import time

import jax
from absl import flags

from lm import cli, run_files, sampling

_WORKDIR = flags.DEFINE_string("workdir", None, "A training run's workdir.", required=True)
_PROMPT = flags.DEFINE_string("prompt", "\n", "Text to continue.")
_PROMPT_FILE = flags.DEFINE_string("prompt_file", None, "Read the prompt from this file.")
_NUM_TOKENS = flags.DEFINE_integer("num_tokens", 300, "New tokens per sample.")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 1, "Independent samples.")
_TEMPERATURE = flags.DEFINE_float("temperature", 0.8, "Softmax temperature; 0 is greedy.")
_SEED = flags.DEFINE_integer("seed", 0, "PRNG seed.")


def main(argv):
  del argv
  _, tokenizer, model_cfg, params = run_files.load_run(_WORKDIR.value)
  prompt = _PROMPT.value
  if _PROMPT_FILE.value:
    with open(_PROMPT_FILE.value, encoding="utf-8") as f:
      prompt = f.read()
  ids = tokenizer.encode(prompt)
  for i in range(_NUM_SAMPLES.value):
    start = time.perf_counter()
    out = sampling.sample(params, model_cfg, ids, num_tokens=_NUM_TOKENS.value,
                          temperature=_TEMPERATURE.value,
                          rng=jax.random.fold_in(jax.random.PRNGKey(_SEED.value), i))
    seconds = time.perf_counter() - start
    print(f"--- sample {i} ({len(out) / seconds:.0f} tokens/s incl. compile)")
    print(prompt + tokenizer.decode(out))


if __name__ == "__main__":
  cli.run(main)
