"""Sweep combinators, point names, and the runner's skip / resume / evaluate decisions."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from configs import ptb_word, shakespeare_char
from lm import sweep, sweep_runner
from lm.errors import ConfigError


def test_product_zip_chain():
  a, b = sweep.axis("x", [1, 2]), sweep.axis("y", ["p", "q", "r"])
  assert sweep.product(a, b) == [{"x": 1, "y": "p"}, {"x": 1, "y": "q"}, {"x": 1, "y": "r"},
                                 {"x": 2, "y": "p"}, {"x": 2, "y": "q"}, {"x": 2, "y": "r"}]
  assert sweep.zip_(a, sweep.axis("y", [5, 6])) == [{"x": 1, "y": 5}, {"x": 2, "y": 6}]
  assert sweep.chain(a, [{"z": 0}]) == [{"x": 1}, {"x": 2}, {"z": 0}]
  with pytest.raises(ConfigError, match="different lengths"):
    sweep.zip_(a, b)
  with pytest.raises(ConfigError, match=r"\['x'\] twice"):
    sweep.product(a, a)


def test_point_names_and_flags():
  p = {"model.width": 128, "data.tokenizer": "char", "data.split_fractions": (0.8, 0.1, 0.1)}
  assert sweep.point_name(p) == "width=128,tokenizer=char,split_fractions=0.8-0.1-0.1"
  assert sweep.override_flags(p) == ["--config.model.width=128", "--config.data.tokenizer=char",
                                     "--config.data.split_fractions=(0.8,0.1,0.1)"]
  with pytest.raises(ConfigError, match="share workdir names"):
    sweep.check_unique_names([{"a.w": 1}, {"b.w": 1}])


@pytest.mark.parametrize("module,arg", [(ptb_word, None), (ptb_word, "smoke"),
                                        (shakespeare_char, "baby"), (shakespeare_char, "smoke")])
def test_every_sweep_point_builds_a_config(module, arg):
  points = module.get_sweep(arg)
  assert len(points) >= 2
  for p in points:
    c = module.get_config(arg)
    for key, value in p.items():  # Locked config: a misspelt key fails here.
      section, name = key.split(".")
      c[section][name] = value
    from lm import train
    train.validate(c)


class FakeRunner:
  """Records commands; 'trains' by writing results.json, 'evaluates' by writing evals."""

  def __init__(self, fail=(), preempt=()):
    self.calls, self.fail, self.preempt = [], fail, preempt

  def __call__(self, cmd):
    entry = cmd[2].split(".")[-1]
    workdir = next(a.split("=", 1)[1] for a in cmd if a.startswith("--workdir="))
    self.calls.append((entry, os.path.basename(workdir)))
    if os.path.basename(workdir) in self.fail:
      return subprocess.CompletedProcess(cmd, 1)
    if os.path.basename(workdir) in self.preempt:  # Saved a checkpoint, exited 75.
      os.makedirs(os.path.join(workdir, "checkpoints"), exist_ok=True)
      return subprocess.CompletedProcess(cmd, 75)
    os.makedirs(workdir, exist_ok=True)
    names = (["results.json"] if entry == "train" else
             [f"eval_{s}.json" for s in sweep_runner.EVAL_SPLITS])
    for name in names:
      with open(os.path.join(workdir, name), "w") as f:
        json.dump({}, f)
    return subprocess.CompletedProcess(cmd, 0)


def test_runner_skips_finished_resumes_started_and_retries_failed(tmp_path, monkeypatch):
  monkeypatch.setattr(sweep_runner.tables, "write", lambda out, dirs: [])
  root = str(tmp_path / "sweep")
  config = "configs/ptb_word.py:smoke"
  names = [sweep.point_name(p) for p in ptb_word.get_sweep("smoke")]
  # Point 0 finished training (not evaluated), point 1 has a checkpoint folder only.
  os.makedirs(os.path.join(root, names[0]))
  open(os.path.join(root, names[0], "results.json"), "w").close()
  os.makedirs(os.path.join(root, names[1], "checkpoints"))
  assert [s["status"] for s in sweep_runner.plan(config, root)] == ["evaluate", "resume"]
  step = sweep_runner.plan(config, root)[1]
  assert "--config=configs/ptb_word.py:smoke" in step["train"]
  assert "--config.model.width=32" in step["train"]

  runner = FakeRunner(fail=(names[1],))
  sweep_runner.run(config, root, runner=runner)
  assert runner.calls == [("evaluate", names[0]), ("train", names[1])]
  assert [s["status"] for s in sweep_runner.plan(config, root)] == ["done", "resume"]

  runner = FakeRunner()
  sweep_runner.run(config, root, runner=runner)  # Only the unfinished point runs again.
  assert runner.calls == [("train", names[1]), ("evaluate", names[1])]
  runner = FakeRunner()
  sweep_runner.run(config, root, runner=runner)
  assert runner.calls == []


def test_runner_errors_name_the_problem(tmp_path):
  with pytest.raises(ConfigError, match="no config file"):
    sweep_runner.plan("configs/nope.py", str(tmp_path))
  with pytest.raises(ConfigError, match="defines no get_sweep"):
    sweep_runner.plan("configs/pipeline.py", str(tmp_path))


def test_a_preempted_point_stops_the_sweep_which_then_resumes(tmp_path, monkeypatch):
  tables_written = []
  monkeypatch.setattr(sweep_runner.tables, "write",
                      lambda out, dirs: tables_written.append(len(dirs)) or [])
  root, config = str(tmp_path / "sweep"), "configs/ptb_word.py:smoke"
  names = [sweep.point_name(p) for p in ptb_word.get_sweep("smoke")]
  runner = FakeRunner(preempt=(names[0],))
  with pytest.raises(sweep_runner.Stopped, match=f"point {names[0]} stopped"):
    sweep_runner.run(config, root, runner=runner)
  assert runner.calls == [("train", names[0])]  # Not evaluated, no later point started.
  assert tables_written == [len(names)]  # The table of what exists is still written.
  assert [s["status"] for s in sweep_runner.plan(config, root)][:2] == ["resume", "new"]
  runner = FakeRunner()
  sweep_runner.run(config, root, runner=runner)  # The restart resumes point 0 first.
  assert runner.calls[:3] == [("train", names[0]), ("evaluate", names[0]),
                              ("train", names[1])]


# The sweep process (a script, so the test's own signal handlers are untouched): two points
# whose training is CHILD; it exits like experiments/sweep.py.
_SWEEP = """
import sys
from lm import preemption, sweep_runner
root, child = sys.argv[1], sys.argv[2:]
sweep_runner.plan = lambda config, workdir: [
    {"name": n, "workdir": f"{root}/{n}", "status": "new", "train": child + [n],
     "evaluate": [sys.executable, "-c", ""]} for n in ("a", "b")]
sweep_runner.tables.write = lambda out, dirs: []
try:
  sweep_runner.run("unused", root)
except sweep_runner.Stopped as e:
  print(e)
  sys.exit(preemption.EXIT_PREEMPTED)
"""
# A training point: marks that it started (handler installed), then waits for a signal,
# records which one, and exits 75 like a train process that saved its checkpoint.
_CHILD = """
import os, signal, sys, time
root, name = sys.argv[1], sys.argv[2]
def handle(signum, frame):
  open(os.path.join(root, name + ".signal"), "w").write(signal.Signals(signum).name)
  sys.exit(75)
signal.signal(signal.SIGTERM, handle)
open(os.path.join(root, name + ".started"), "w").close()
time.sleep(30)
"""


def test_sigterm_to_the_sweep_reaches_the_running_point_and_exits_75(tmp_path):
  root = str(tmp_path)
  proc = subprocess.Popen(
      [sys.executable, "-c", textwrap.dedent(_SWEEP), root, sys.executable, "-c", _CHILD, root],
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  try:
    deadline = time.time() + 20
    while not os.path.exists(tmp_path / "a.started") and time.time() < deadline:
      assert proc.poll() is None, proc.communicate()[0]
      time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)  # To the sweep only, not to its child.
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 75, out
    assert (tmp_path / "a.signal").read_text() == "SIGTERM"  # Forwarded; the child saved.
    assert not os.path.exists(tmp_path / "b.started")  # The sweep stopped after point a.
  finally:
    if proc.poll() is None:  # Only on failure: leave no process behind.
      proc.kill()
      proc.wait()
  assert "point a stopped (SIGTERM)" in out
