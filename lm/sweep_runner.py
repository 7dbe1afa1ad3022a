"""Runs every point of a config module's `get_sweep(arg)`, one process per point, then the table.

    ./launch.sh sweep --config=configs/ptb_word.py --workdir=runs/ptb_word

Point i trains in `<workdir>/<point_name>` as `python -m experiments.train --config=FILE:ARG
--config.KEY=VALUE ...`, then `python -m experiments.evaluate` writes its validation and
test evaluation. A point with results.json is not trained again; one without resumes from
its latest checkpoint (the train loop does that); one whose evaluations exist is not
evaluated again. So rerunning the command after a crash or a preemption finishes the job.

Preemption: SIGTERM/SIGINT sent to the sweep process is passed on to the running point,
whose train loop saves a checkpoint and exits 75. A point that exits 75 (or any signal to
the sweep) stops the sweep at once: no further points, the table of what exists is written,
and `run` raises `Stopped`, which the entry point turns into exit status 75, so
`LM_RETRIES=N ./launch.sh sweep ...` restarts the sweep and it resumes that point.
"""

import importlib.util
import os
import signal
import subprocess
import sys

from lm import preemption, sweep, tables
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


class Stopped(Exception):
  """The sweep stopped early on a preemption; rerunning it resumes (exit status 75)."""


class ChildRunner(preemption.StopRequest):
  """Context manager and runner: `self(cmd)` runs `cmd` and waits for it; while active,
  SIGTERM/SIGINT received by this process set `requested` (as `StopRequest`) and are sent
  on to the running child, so the child checkpoints and exits 75 instead of being orphaned.
  """

  def __init__(self):
    super().__init__()
    self._child = None

  def _handle(self, signum, frame):
    super()._handle(signum, frame)
    child = self._child
    if child is not None:
      try:
        child.send_signal(signum)  # A no-op if the child has already been reaped.
      except ProcessLookupError:
        pass

  def __call__(self, cmd) -> subprocess.CompletedProcess:
    self._child = subprocess.Popen(cmd)
    try:
      if self.requested is not None:  # The signal came before `_child` was set.
        self._child.send_signal(getattr(signal, self.requested))
      returncode = self._child.wait()  # PEP 475: resumes after the handler runs.
    finally:
      self._child = None
    return subprocess.CompletedProcess(cmd, returncode)


def run(config_arg: str, workdir: str, *, runner=None) -> list[dict]:
  """Runs the unfinished points in order, then writes the table into `workdir`.

  `runner(cmd)` runs one command (default: a `ChildRunner`; tests pass a fake). A point
  whose training fails is reported and skipped; its row in the table is marked missing.

  Raises:
    Stopped: a command exited 75 (preempted after saving) or this process got SIGTERM /
      SIGINT; later points were not started, the table was written.
  """
  steps = plan(config_arg, workdir)
  os.makedirs(workdir, exist_ok=True)
  failed, stopped = [], None
  with ChildRunner() as child_runner:
    runner = runner or child_runner
    for i, s in enumerate(steps, 1):
      print(f"[{i}/{len(steps)}] {s['name']}: {s['status']}", flush=True)
      cmds = ([s["train"]] if s["status"] in ("new", "resume") else []) + (
          [s["evaluate"]] if s["status"] != "done" else [])
      for cmd in cmds:
        code = runner(cmd).returncode if child_runner.requested is None else None
        if code == preemption.EXIT_PREEMPTED or child_runner.requested is not None:
          why = child_runner.requested or "its own preemption"
          stopped = f"point {s['name']} stopped ({why}); rerun the command to resume it"
          break
        if code != 0:
          failed.append(s["name"])
          break
      if stopped:
        break
  written = tables.write(workdir, [s["workdir"] for s in steps])
  print("table: " + ", ".join(written), flush=True)
  if failed:
    print(f"failed points (rerun the command to resume them): {', '.join(failed)}", flush=True)
  if stopped:
    raise Stopped(stopped)
  return steps
