"""Kill, preempt, corrupt, NaN, lock, config change: what a run survives, tested for real."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from lm import checkpoint, metrics, preemption, run_files, train
from lm.errors import ConfigError, UserError

# A run long enough (a few seconds) that kills land in training, not only in start-up.
LONG = ["--config.train.steps=240", "--config.train.log_every=5",
        "--config.train.checkpoint_every=10", "--config.train.eval_every=60",
        "--config.train.keep_checkpoints=2", "--config.model.width=64",
        "--config.train.batch_size=16"]


def _cmd(corpus_file, workdir, *extra):
  return [sys.executable, "-m", "experiments.train", "--config=configs/shakespeare_char.py:smoke",
          f"--workdir={workdir}", "--config.data.source=text",
          f"--config.data.text_file={corpus_file}", *LONG, *extra]


def _final_params(workdir):
  *_, params = run_files.load_run(workdir)
  return jax.tree.leaves(params)


def _assert_same_run(a, b):
  assert metrics.read(a) == metrics.read(b)
  for x, y in zip(_final_params(a), _final_params(b)):
    np.testing.assert_array_equal(x, y)


@pytest.fixture
def reference(corpus_file, tmp_path):
  workdir = str(tmp_path / "reference")
  subprocess.run(_cmd(corpus_file, workdir), check=True, capture_output=True, timeout=300)
  return workdir


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_is_exact(corpus_file, tmp_path, reference):
  workdir = str(tmp_path / "killed")
  rng = random.Random(0)
  kills = 0
  for _ in range(8):
    proc = subprocess.Popen(_cmd(corpus_file, workdir), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
      proc.wait(timeout=rng.uniform(4.0, 9.0))
    except subprocess.TimeoutExpired:
      proc.kill()  # SIGKILL: no handler runs, no checkpoint is finished.
      proc.wait()
      kills += 1
      continue
    assert proc.returncode == 0
    break
  else:
    subprocess.run(_cmd(corpus_file, workdir), check=True, capture_output=True, timeout=300)
  assert kills >= 2, "kills must land mid-run for this test to mean anything"
  _assert_same_run(reference, workdir)


@pytest.mark.slow
def test_sigterm_saves_exits_75_and_resumes_exactly(corpus_file, tmp_path, reference):
  workdir = str(tmp_path / "preempted")
  proc = subprocess.Popen(_cmd(corpus_file, workdir), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  log = os.path.join(workdir, "metrics.jsonl")
  deadline = time.time() + 120
  while not (os.path.exists(log) and os.path.getsize(log) > 0) and time.time() < deadline:
    time.sleep(0.05)
  proc.send_signal(signal.SIGTERM)
  stdout, _ = proc.communicate(timeout=120)
  assert proc.returncode == 75, stdout
  step = int(stdout.split("after saving step ")[1].split(";")[0])
  assert 0 < step < 240
  assert str(step) in os.listdir(os.path.join(workdir, "checkpoints"))
  subprocess.run(_cmd(corpus_file, workdir), check=True, capture_output=True, timeout=300)
  _assert_same_run(reference, workdir)


def _truncate_largest_file(folder):
  files = [os.path.join(d, f) for d, _, fs in os.walk(folder) for f in fs]
  biggest = max(files, key=os.path.getsize)
  with open(biggest, "r+b") as f:
    f.truncate(os.path.getsize(biggest) // 3)


def test_corrupt_newest_checkpoint_falls_back_to_previous(smoke_config, tmp_path, capsys):
  straight, corrupt = str(tmp_path / "straight"), str(tmp_path / "corrupt")
  train.train_and_evaluate(smoke_config, straight)
  train.train_and_evaluate(smoke_config, corrupt)
  _truncate_largest_file(os.path.join(corrupt, "checkpoints", "20", "state"))
  capsys.readouterr()
  train.train_and_evaluate(smoke_config, corrupt)  # Redoes steps 11..20 from step 10.
  out = capsys.readouterr().out
  assert "checkpoints/20 failed to restore" in out and "using step 10 instead" in out
  assert os.listdir(os.path.join(corrupt, "checkpoints_corrupt"))[0].startswith("20-")
  assert "resumed from step 10" in out
  _assert_same_run(straight, corrupt)


def test_nonfinite_stop_names_the_step_and_saves_nothing(smoke_config, tmp_path):
  smoke_config.train.inject_nonfinite_at = 7
  workdir = str(tmp_path / "run")
  with pytest.raises(train.NonFiniteError, match=r"at step 7: grad_norm_sum=nan, loss_sum=nan"):
    train.train_and_evaluate(smoke_config, workdir)
  mngr = checkpoint.manager(workdir)
  assert mngr.latest_step() is None  # First checkpoint would have been step 10.


def test_nonfinite_skip_keeps_params_finite_and_counts(smoke_config, tmp_path):
  smoke_config.train.inject_nonfinite_at = 7
  smoke_config.train.nonfinite = "skip"
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(smoke_config, workdir)
  records = [r for r in metrics.read(workdir) if r["split"] == "train"]
  assert [r["skipped_steps"] for r in records] == [0, 1, 1, 1]
  assert all(np.isfinite(r["loss"]) for r in records)
  assert all(np.isfinite(x).all() for x in _final_params(workdir))


def test_two_processes_cannot_share_a_workdir(smoke_config, tmp_path):
  workdir = str(tmp_path / "run")
  with run_files.WorkdirLock(workdir):
    with pytest.raises(UserError, match="is in use by another process"):
      train.train_and_evaluate(smoke_config, workdir)


def test_changed_config_refuses_unless_allowed(smoke_config, tmp_path):
  workdir = str(tmp_path / "run")
  smoke_config.train.steps = 10
  train.train_and_evaluate(smoke_config, workdir)
  smoke_config.train.steps = 20
  smoke_config.optim.lr = 5e-4
  with pytest.raises(ConfigError, match=r"optim.lr: 0.001 -> 0.0005; train.steps: 10 -> 20"):
    train.train_and_evaluate(smoke_config, workdir)
  smoke_config.allow_config_change = True
  train.train_and_evaluate(smoke_config, workdir)
  with open(os.path.join(workdir, "run_info.jsonl")) as f:
    infos = [json.loads(line) for line in f]
  assert len(infos) == 2 and len(infos[1]["config_changes_accepted"]) == 2
  assert infos[0]["devices"] and infos[0]["packages"]["jax"] == jax.__version__
  assert "git_commit" in infos[0] and "git_dirty" in infos[0]


def test_torn_metrics_line_from_a_kill_is_dropped(tmp_path):
  writer = metrics.Writer(str(tmp_path))
  writer.write(5, "train", {"loss": 1.0})
  writer.write(10, "train", {"loss": 0.5})
  with open(writer.path, "a") as f:
    f.write('{"step": 15, "spl')  # Killed mid-write.
  writer.truncate_after(10)
  assert [r["step"] for r in metrics.read(str(tmp_path))] == [5, 10]


def test_signal_after_the_save_decision_still_saves(smoke_config, tmp_path, monkeypatch):
  # Regression: a SIGTERM landing after a step had decided not to save used to exit 75
  # with no checkpoint. Deliver it while the step-5 metrics record is being written.
  straight, preempted = str(tmp_path / "straight"), str(tmp_path / "preempted")
  train.train_and_evaluate(smoke_config, straight)
  write = metrics.Writer.write

  def write_then_signal(self, step, split, values):
    write(self, step, split, values)
    if step == 5 and split == "train":
      os.kill(os.getpid(), signal.SIGTERM)

  monkeypatch.setattr(metrics.Writer, "write", write_then_signal)
  with pytest.raises(preemption.Preempted, match="after saving step 6"):
    train.train_and_evaluate(smoke_config, preempted)
  monkeypatch.setattr(metrics.Writer, "write", write)
  assert checkpoint.manager(preempted).latest_step() == 6
  train.train_and_evaluate(smoke_config, preempted)
  _assert_same_run(straight, preempted)


def _edit_meta(workdir, step, edit):
  """Rewrites the JSON metadata of the checkpoint at `step` with `edit(meta)`."""
  path = os.path.join(workdir, "checkpoints", str(step), "meta", "metadata")
  with open(path) as f:
    meta = json.load(f)
  edit(meta)
  with open(path, "w") as f:
    json.dump(meta, f)


def test_train_wall_s_sums_the_processes_of_a_resumed_run(smoke_config, tmp_path):
  workdir = str(tmp_path / "run")
  t0 = time.perf_counter()
  train.train_and_evaluate(smoke_config, workdir, stop_at=10)
  first = time.perf_counter() - t0
  seen = {}
  _edit_meta(workdir, 10, lambda m: seen.update(m))
  assert 0 < seen["train_wall_s"] <= first and seen["train_wall_s_from_step"] == 0
  # Pretend the first process trained for 1000 s: the resumed run must add to that.
  _edit_meta(workdir, 10, lambda m: m.update(train_wall_s=1000.0))
  t0 = time.perf_counter()
  results = train.train_and_evaluate(smoke_config, workdir)
  second = time.perf_counter() - t0
  assert 1000.0 < results["train_wall_s"] < 1000.0 + second
  assert "train_wall_s_partial" not in results

  # A checkpoint from before the time was kept: unknown, marked, not a crash.
  shutil.rmtree(os.path.join(workdir, "checkpoints", "20"))
  os.remove(os.path.join(workdir, "results.json"))
  _edit_meta(workdir, 10, lambda m: [m.pop(k) for k in ("train_wall_s",
                                                         "train_wall_s_from_step")])
  t0 = time.perf_counter()
  results = train.train_and_evaluate(smoke_config, workdir)
  third = time.perf_counter() - t0
  assert results["train_wall_s"] is None and results["train_wall_s_from_step"] == 10
  assert 0 < results["train_wall_s_partial"] < third  # This process only.
  with open(os.path.join(workdir, "results.json")) as f:
    assert json.load(f)["train_wall_s_partial"] == results["train_wall_s_partial"]
