r"""Trains a model; restarting with the same --workdir resumes from its last checkpoint.

Exit status: 0 done; 2 bad input (one `error:` line, nothing computed); 3 non-finite loss
or gradients (train.nonfinite='stop'); 75 stopped by SIGTERM/SIGINT after saving a
checkpoint: run the same command again to resume (`LM_RETRIES=N ./launch.sh train ...`
does that automatically).

  ./launch.sh train --config=configs/shakespeare_char.py:baby --workdir=runs/baby \
      --config.optim.lr=3e-4
"""

from absl import flags, logging
from ml_collections import config_flags

import sys

from lm import cli, preemption, train

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file[:variant].",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and metrics.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  logging.info("config:\n%s", _CONFIG.value)
  try:
    results = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except preemption.Preempted as e:
    print(f"preempted: {e}", flush=True)
    sys.exit(preemption.EXIT_PREEMPTED)
  except train.NonFiniteError as e:
    sys.stderr.write(f"error: {e}\n")
    sys.exit(3)
  if "perplexity" in results:
    print(f"{results['split']} loss {results['loss']:.4f} nats/token | perplexity "
          f"{results['perplexity']:.3f} | accuracy {results['accuracy']:.3f} | "
          f"{results['tokens']:.0f} tokens | train "
          + (f"{results['train_wall_s']:.0f}s" if results["train_wall_s"] is not None
             else "time unknown (resumed from an old checkpoint)"))
  else:  # Preference stages: per-pair means.
    print(f"{results['split']} " + " | ".join(
        f"{k} {v:.4f}" for k, v in results.items() if isinstance(v, float)))
  for key in ("majority_baseline", "exact_match_greedy", "exact_match_beam"):
    if key in results:  # Encoder and encoder-decoder stages (lm.families).
      print(f"{key} {results[key]:.4f}")
  if "sample" in results:
    print(f"sample:\n{results['sample']['prompt']}{results['sample']['text']}")
  print(f"results: {_WORKDIR.value}/results.json")


if __name__ == "__main__":
  cli.run(main)
