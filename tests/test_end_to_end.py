"""The entry points as a user runs them, on the real Tiny Shakespeare through TFDS."""

import json
import os
import subprocess
import sys

import pytest

REAL_INPUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared",
                          "data", "tinyshakespeare", "input.txt")


def _run(entry, *args):
  out = subprocess.run([sys.executable, "-m", f"experiments.{entry}", *args],
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  return out.stdout


@pytest.mark.skipif(not os.path.exists(REAL_INPUT), reason="no ../shared/data beside the repo")
def test_train_evaluate_sample_on_tiny_shakespeare(tmp_path):
  # Offline: the file in a manual dir is enough (TFDS prepares array_record from it).
  manual = os.path.dirname(REAL_INPUT)
  workdir = str(tmp_path / "run")
  data = [f"--config.data.manual_dir={manual}", f"--config.data.data_dir={tmp_path}/tfds"]
  stdout = _run("train", "--config=configs/shakespeare_char.py:smoke", f"--workdir={workdir}",
                *data)
  assert "validation loss" in stdout and "perplexity" in stdout and "sample:" in stdout
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  assert results["loss"] < 4.0  # Uniform over 65 characters would be 4.17.
  stdout = _run("evaluate", f"--workdir={workdir}", "--split=test")
  assert "test: loss" in stdout and os.path.exists(os.path.join(workdir, "eval_test.json"))
  stdout = _run("sample", f"--workdir={workdir}", "--prompt=ROMEO:", "--max_new_tokens=20")
  assert "\nROMEO:" in stdout and "tokens/s" in stdout
