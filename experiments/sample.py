r"""Samples text from a workdir's latest checkpoint with any decoding strategy.

  ./launch.sh sample --workdir=runs/baby --prompt="ROMEO:" --strategy=sample \
      --temperature=0.8 --top_p=0.9 --max_new_tokens=60
  ./launch.sh sample --workdir=runs/baby --prompt_file=prompts.txt --strategy=beam
  ./launch.sh sample --hf_checkpoint=ckpt/gpt2 --prompt="Hello" --stop="<|endoftext|>"
"""

from absl import flags

from lm import cli, generation

_WORKDIR = flags.DEFINE_string("workdir", None, "A training run's workdir.")
_HF = flags.DEFINE_string("hf_checkpoint", None, "Or a Hugging Face checkpoint directory.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step; None: the latest.")
_PROMPT = flags.DEFINE_multi_string("prompt", ["\n"], "Text to continue (repeatable).")
_PROMPT_FILE = flags.DEFINE_string("prompt_file", None,
                                   "Prompts, one a line (\\n for a newline); replaces --prompt.")
_STRATEGY = flags.DEFINE_enum("strategy", "sample", generation.STRATEGIES, "How to decode.")
_NEW = flags.DEFINE_integer("max_new_tokens", None, "New tokens; None: fill the context.")
_TEMPERATURE = flags.DEFINE_float("temperature", 0.8, "Softmax temperature; 0 is greedy.")
_TOP_K = flags.DEFINE_integer("top_k", None, "Keep the k most likely tokens.")
_TOP_P = flags.DEFINE_float("top_p", None, "Nucleus: keep the most likely tokens up to mass p.")
_MIN_P = flags.DEFINE_float("min_p", None, "Keep tokens with p >= min_p * max p.")
_TYPICAL_P = flags.DEFINE_float("typical_p", None, "Locally typical sampling mass.")
_REPETITION = flags.DEFINE_float("repetition_penalty", None, "CTRL repetition penalty (> 1).")
_PRESENCE = flags.DEFINE_float("presence_penalty", 0.0, "Subtracted once per generated token.")
_FREQUENCY = flags.DEFINE_float("frequency_penalty", 0.0, "Subtracted per occurrence.")
_NGRAM = flags.DEFINE_integer("no_repeat_ngram", None, "Never repeat an n-gram of this size.")
_MIN_NEW = flags.DEFINE_integer("min_new_tokens", None, "No stop before this many tokens.")
_SAMPLES = flags.DEFINE_integer("num_samples", 1, "Samples per prompt; the most likely is shown.")
_BEAM = flags.DEFINE_integer("beam_size", 4, "Beams (strategy 'beam').")
_LENGTH_PENALTY = flags.DEFINE_float("length_penalty", 1.0, "Beam score: logp / length**this.")
_STOP = flags.DEFINE_multi_string("stop", [], "Stop when the text ends with this (repeatable).")
_SEED = flags.DEFINE_integer("seed", 0, "PRNG seed.")


def main(argv):
  del argv
  prompts = (generation.read_prompts(_PROMPT_FILE.value) if _PROMPT_FILE.value
             else _PROMPT.value)
  settings = generation.Settings(
      strategy=_STRATEGY.value, max_new_tokens=_NEW.value, temperature=_TEMPERATURE.value,
      top_k=_TOP_K.value, top_p=_TOP_P.value, min_p=_MIN_P.value, typical_p=_TYPICAL_P.value,
      repetition_penalty=_REPETITION.value, presence_penalty=_PRESENCE.value,
      frequency_penalty=_FREQUENCY.value, no_repeat_ngram=_NGRAM.value,
      min_new_tokens=_MIN_NEW.value, num_samples=_SAMPLES.value, beam_size=_BEAM.value,
      length_penalty=_LENGTH_PENALTY.value, stop=tuple(_STOP.value), seed=_SEED.value)
  generation.sample_run(_WORKDIR.value, prompts, settings, step=_STEP.value,
                        hf_checkpoint=_HF.value)


if __name__ == "__main__":
  cli.run(main)
