"""Sharded training on 8 fake CPU devices equals the single-device run.

Each check runs `multidevice_worker.py` in its own process, because XLA reads the fake
device count once, before jax is imported. A new model family is one entry in FAMILIES
(here and in the worker).
"""

import json
import os
import subprocess
import sys

import pytest

FAMILIES = ["decoder"]
MESHES = {"data:8": (8, 1, 1), "fsdp:8": (1, 8, 1), "data:2,fsdp:2,tensor:2": (2, 2, 2),
          "fsdp:2,tensor:4": (1, 2, 4)}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _worker(tmp_path_factory, *args) -> dict:
  out = tmp_path_factory.mktemp("multidevice") / "out.json"
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "multidevice_worker.py"),
                         args[0], str(out), *args[1:]], env=env, cwd=ROOT,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(out.read_text())


@pytest.fixture(scope="module", params=FAMILIES)
def family(request, tmp_path_factory):
  return _worker(tmp_path_factory, request.param)


@pytest.fixture(scope="module")
def common(tmp_path_factory):
  return _worker(tmp_path_factory, "common")


def _expected_shard(shape, logical, sizes) -> list:
  """Hand-applied default rules: vocab, heads, kv_heads, mlp -> tensor; embed -> fsdp."""
  rule = {"vocab": "tensor", "heads": "tensor", "kv_heads": "tensor", "mlp": "tensor",
          "embed": "fsdp"}
  return [n // sizes.get(rule.get(name), 1) for n, name in zip(shape, logical)]


LOGICAL = {  # Logical axes of a few decoder params (lm/models/layers.py).
    "embedding": ("vocab", "embed"),
    "block_0/attention/query/kernel": ("embed", "heads", "head_dim"),
    "block_1/attention/out/kernel": ("heads", "head_dim", "embed"),
    "block_0/mlp/up/kernel": ("embed", "mlp"),
    "block_1/mlp/down/kernel": ("mlp", "embed"),
    "final_norm/scale": ("embed",),
}


@pytest.mark.slow
@pytest.mark.parametrize("mesh", MESHES)
def test_sharded_steps_equal_single_device(family, mesh):
  got = family["meshes"][mesh]
  assert got["loss_rel"] < 1e-6, got["loss_rel"]  # float32 reduction-order noise only.
  # lr 1e-3: a missing gradient all-reduce would move params by ~1e-3; noise is ~1e-7.
  assert got["param_abs"] < 1e-5, got["param_abs"]


@pytest.mark.slow
@pytest.mark.parametrize("mesh", MESHES)
def test_params_are_sharded_as_the_rules_say(family, mesh):
  got = family["meshes"][mesh]
  sizes = dict(zip(("data", "fsdp", "tensor"), MESHES[mesh]))
  for name, logical in LOGICAL.items():
    if name not in family["shapes"]:
      continue  # Another family's params.
    expected = _expected_shard(family["shapes"][name], logical, sizes)
    assert got["shard_shapes"][name] == expected, (name, got["specs"][name])
  assert got["mu_specs_match"]  # Adam moments are laid out like their params.


@pytest.mark.slow
def test_checkpoint_saved_on_one_mesh_restores_on_others(common):
  for target, r in common["restore"].items():
    assert r["equal"] and r["sharding_is_target"] and r["meta_step"] == 1, target


@pytest.mark.slow
@pytest.mark.parametrize("key,message", [
    ("mesh_mismatch", "has 4 devices (2 x 2 x 1) but there are 8"),
    ("mesh_minus_one", "must be >= 1 (no -1"),
    ("no_rule", "logical axis 'mlp' with no rule; add --config.mesh.rules.mlp"),
    ("not_divisible", "(kv_heads=4) is not divisible by mesh axes ('tensor',) of size 8"),
    ("batch", "train.batch_size / train.accum_steps=12 is not divisible by the "
              "data-parallel size 8"),
])
def test_bad_mesh_input_is_a_clear_config_error(common, key, message):
  assert common["errors"][key].startswith("ConfigError: "), common["errors"][key]
  assert message in common["errors"][key]


@pytest.mark.slow
def test_loop_stopped_on_one_mesh_resumed_on_another(corpus_file, tmp_path_factory):
  got = _worker(tmp_path_factory, "loop", corpus_file)
  straight, moved = got["train_losses"]
  assert len(straight) == 4
  for a, b in zip(straight, moved):
    assert abs(a - b) < 1e-5 * abs(a)
  assert abs(got["final_loss"][0] - got["final_loss"][1]) < 1e-5
  assert got["load_run_devices"] == [0]  # Whole arrays on the first device.
