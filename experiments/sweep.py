r"""Trains and evaluates every point of a config's `get_sweep(arg)`, then writes the table.

  ./launch.sh sweep --config=configs/ptb_word.py --workdir=runs/ptb_word
  ./launch.sh sweep --config=configs/shakespeare_char.py:tokenizers --workdir=runs/tok

Points run one after another, one process each, in `<workdir>/<point name>`; finished
points are skipped and unfinished ones resume, so rerunning the command completes a sweep.
The table (table.md / .csv / .tex, curves.png) lands in --workdir. `--dry_run` lists the
points and what would run.

Exit status 75: preempted (SIGTERM/SIGINT, passed on to the running point, which saves a
checkpoint); `LM_RETRIES=N ./launch.sh sweep ...` reruns the sweep, which resumes.
"""

import sys

from absl import flags

from lm import cli, preemption, sweep_runner

_CONFIG = flags.DEFINE_string("config", None, "Config file[:arg] defining get_sweep(arg).",
                              required=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder of the sweep's runs.", required=True)
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Only list the points and their status.")


def main(argv):
  del argv
  if _DRY_RUN.value:
    for s in sweep_runner.plan(_CONFIG.value, _WORKDIR.value):
      print(f"{s['name']}: {s['status']}\n  {' '.join(s['train'][1:])}")
    return
  try:
    sweep_runner.run(_CONFIG.value, _WORKDIR.value)
  except sweep_runner.Stopped as e:
    print(f"preempted: {e}", flush=True)
    sys.exit(preemption.EXIT_PREEMPTED)


if __name__ == "__main__":
  cli.run(main)
