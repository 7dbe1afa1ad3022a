"""Runs every point of a config module's `get_sweep(arg)`, one process per point, then the table.

    ./launch.sh sweep --config=configs/ptb_word.py --workdir=runs/ptb_word

Point i trains in `<workdir>/<point_name>` as `python -m experiments.train --config=FILE:ARG
--config.KEY=VALUE ...`, then `python -m experiments.evaluate` writes its validation and
test evaluation. A point with results.json is not trained again; one without resumes from
its latest checkpoint (the train loop does that); one whose evaluations exist is not
evaluated again. So rerunning the command after a crash or a preemption finishes the job.
"""

import importlib.util
import os
import subprocess
import sys

from lm import sweep, tables
from lm.errors import ConfigError

EVAL_SPLITS = ("validation", "test")


def load_sweep(config_arg: str) -> tuple[str, str | None, list[dict]]:
  """(config file, arg, points) from 'configs/x.py[:arg]'."""
  path, _, arg = config_arg.partition(":")
  arg = arg or None
  if not os.path.isfile(path):
    raise ConfigError(f"no config file {path}")
  spec = importlib.util.spec_from_file_location("_sweep_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_sweep"):
    raise ConfigError(f"{path} defines no get_sweep(arg)")
  points = module.get_sweep(arg)
  if not points:
    raise ConfigError(f"{path}: get_sweep({arg!r}) returned no points")
  sweep.check_unique_names(points)
  return path, arg, points


def plan(config_arg: str, workdir: str) -> list[dict]:
  """What running the sweep would do: per point its name, workdir, commands and status
  ('done', 'evaluate', 'resume' or 'new')."""
  path, arg, points = load_sweep(config_arg)
  config_flag = f"--config={path}" + (f":{arg}" if arg else "")
  steps = []
  for point in points:
    name = sweep.point_name(point)
    run_dir = os.path.join(workdir, name)
    trained = os.path.exists(os.path.join(run_dir, "results.json"))
    evaluated = all(os.path.exists(os.path.join(run_dir, f"eval_{s}.json"))
                    for s in EVAL_SPLITS)
    started = os.path.isdir(os.path.join(run_dir, "checkpoints"))
    status = ("done" if trained and evaluated else "evaluate" if trained
              else "resume" if started else "new")
    train_cmd = [sys.executable, "-m", "experiments.train", config_flag,
                 f"--workdir={run_dir}", *sweep.override_flags(point)]
    eval_cmd = [sys.executable, "-m", "experiments.evaluate", f"--workdir={run_dir}",
                f"--splits={','.join(EVAL_SPLITS)}"]
    steps.append({"name": name, "workdir": run_dir, "point": point, "status": status,
                  "train": train_cmd, "evaluate": eval_cmd})
  return steps


def run(config_arg: str, workdir: str, *, runner=subprocess.run) -> list[dict]:
  """Runs the unfinished points in order, then writes the table into `workdir`.

  `runner(cmd)` runs one command (tests pass a fake). A point whose training fails is
  reported and skipped; its row in the table is marked missing.
  """
  steps = plan(config_arg, workdir)
  os.makedirs(workdir, exist_ok=True)
  failed = []
  for i, s in enumerate(steps, 1):
    print(f"[{i}/{len(steps)}] {s['name']}: {s['status']}", flush=True)
    if s["status"] in ("new", "resume"):
      if runner(s["train"]).returncode != 0:
        failed.append(s["name"])
        continue
    if s["status"] != "done":
      if runner(s["evaluate"]).returncode != 0:
        failed.append(s["name"])
  written = tables.write(workdir, [s["workdir"] for s in steps])
  print("table: " + ", ".join(written), flush=True)
  if failed:
    print(f"failed points (rerun the command to resume them): {', '.join(failed)}", flush=True)
  return steps
