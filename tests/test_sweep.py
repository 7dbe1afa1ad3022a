"""Sweep combinators, point names, and the runner's skip / resume / evaluate decisions."""

import json
import os
import subprocess

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

  def __init__(self, fail=()):
    self.calls, self.fail = [], fail

  def __call__(self, cmd):
    entry = cmd[2].split(".")[-1]
    workdir = next(a.split("=", 1)[1] for a in cmd if a.startswith("--workdir="))
    self.calls.append((entry, os.path.basename(workdir)))
    if os.path.basename(workdir) in self.fail:
      return subprocess.CompletedProcess(cmd, 1)
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
