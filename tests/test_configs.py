"""Every config variant builds, validates and makes a model; overrides are checked."""

import subprocess
import sys

import pytest

from configs import shakespeare_char
from lm import train
from lm.errors import ConfigError
from lm.models import decoder


@pytest.mark.parametrize("variant", ["baby", "gpu", "smoke"])
def test_variant_builds_and_validates(variant):
  c = shakespeare_char.get_config(variant)
  train.validate(c)
  cfg = train.model_config(c, vocab_size=65)
  assert cfg.max_len == c.data.context
  decoder.abstract_params(cfg)


def test_baby_is_nanogpt_cpu_config():
  c = shakespeare_char.get_config("baby")
  assert (c.model.num_layers, c.model.num_heads, c.model.width, c.data.context) == (4, 4, 128, 64)
  assert (c.train.batch_size, c.train.steps, c.model.dropout) == (12, 2000, 0.0)
  assert (c.optim.lr, c.optim.min_lr, c.optim.warmup_steps, c.optim.b2) == (1e-3, 1e-4, 100, 0.99)
  assert (c.optim.weight_decay, c.optim.clip_norm) == (0.1, 1.0)
  cfg = train.model_config(c, vocab_size=65)
  assert decoder.param_count(cfg, embeddings=False) == 787_584  # nanoGPT prints 0.80M


def test_unknown_variant():
  with pytest.raises(ConfigError, match="unknown config variant 'huge'"):
    shakespeare_char.get_config("huge")


def test_config_is_locked():
  c = shakespeare_char.get_config("smoke")
  with pytest.raises(AttributeError):
    c.model.num_layer = 3  # Typo of num_layers.


def test_context_override_follows_into_model():
  c = shakespeare_char.get_config("smoke")
  c.data.context = 16
  assert train.model_config(c, 10).max_len == 16


def _run(*args):
  return subprocess.run([sys.executable, "-m", "experiments.train", *args],
                        capture_output=True, text=True, timeout=120)


def test_cli_unknown_key_fails_with_one_clear_line(tmp_path):
  out = _run("--config=configs/shakespeare_char.py:smoke", f"--workdir={tmp_path}",
             "--config.model.num_layer=3")
  assert out.returncode == 2
  assert out.stderr.strip().splitlines()[-1] == (
      """error: 'num_layer' Did you mean "num_layers" instead of "num_layer"?""")
  assert not (tmp_path / "checkpoints").exists()


def test_cli_bad_value_is_one_error_line(tmp_path):
  out = _run("--config=configs/shakespeare_char.py:smoke", f"--workdir={tmp_path}",
             "--config.train.accum_steps=3")
  assert out.returncode == 2
  assert out.stderr.strip().splitlines()[-1] == (
      "error: train.batch_size=8 is not divisible by train.accum_steps=3")


def test_cli_unknown_variant(tmp_path):
  out = _run("--config=configs/shakespeare_char.py:huge", f"--workdir={tmp_path}")
  assert out.returncode == 2
  assert out.stderr.strip().splitlines()[-1].endswith(
      "unknown config variant 'huge'; known: baby, gpu, smoke")


def test_cli_missing_data_file(tmp_path):
  out = _run("--config=configs/shakespeare_char.py:smoke", f"--workdir={tmp_path}",
             "--config.data.source=text", f"--config.data.text_file={tmp_path}/missing.txt")
  assert out.returncode == 2
  assert out.stderr.strip().splitlines()[-1] == f"error: {tmp_path}/missing.txt: no such file"
