"""Sharded training on 8 fake CPU devices equals the single-device run.

Each check runs `multidevice_worker.py` in its own process, because XLA reads the fake
device count once, before jax is imported. A new model family is one entry in GROUPS
here and in the worker's FAMILIES (and LOGICAL below); the GROUPS processes run at once.
"""

import json
import os
import subprocess
import sys

import pytest

# Families (and stages) by worker process; the processes run at the same time.
GROUPS = ("decoder", "encoder_mlm,encoder_classify,encoder_decoder")
FAMILIES = [f for group in GROUPS for f in group.split(",")]
MESHES = {"data:8": (8, 1, 1), "fsdp:8": (1, 8, 1), "data:2,fsdp:2,tensor:2": (2, 2, 2),
          "fsdp:2,tensor:4": (1, 2, 4)}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _start(tmp_path_factory, *args):
  out = tmp_path_factory.mktemp("multidevice") / "out.json"
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
  proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "multidevice_worker.py"),
                           args[0], str(out), *args[1:]], env=env, cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  return proc, out


def _finish(proc, out) -> dict:
  try:
    _, stderr = proc.communicate(timeout=600)
  except subprocess.TimeoutExpired:
    proc.kill()
    raise
  assert proc.returncode == 0, stderr[-3000:]
  return json.loads(out.read_text())


def _worker(tmp_path_factory, *args) -> dict:
  return _finish(*_start(tmp_path_factory, *args))


@pytest.fixture(scope="module")
def all_families(tmp_path_factory):
  started = [_start(tmp_path_factory, group) for group in GROUPS]
  out = {}
  for proc, path in started:
    out.update(_finish(proc, path))
  return out


@pytest.fixture(scope="module", params=FAMILIES)
def family(request, all_families):
  return all_families[request.param]


@pytest.fixture(scope="module")
def common(tmp_path_factory):
  return _worker(tmp_path_factory, "common")


# The default rules of configs/common.py, applied by hand; every other axis stays whole.
RULE = {"vocab": "tensor", "heads": "tensor", "kv_heads": "tensor", "mlp": "tensor",
        "embed": "fsdp"}


def _expected_shard(shape, logical, sizes) -> list:
  return [n // sizes.get(RULE.get(name), 1) for n, name in zip(shape, logical)]


LOGICAL = {  # Logical axes of a few params of each family, written out from the models.
    "decoder": {
        "embedding": ("vocab", "embed"),
        "block_0/attention/query/kernel": ("embed", "heads", "head_dim"),
        "block_1/attention/out/kernel": ("heads", "head_dim", "embed"),
        "block_0/mlp/up/kernel": ("embed", "mlp"),
        "block_1/mlp/down/kernel": ("mlp", "embed"),
        "final_norm/scale": ("embed",)},
    "encoder_mlm": {
        "encoder/embedding": ("vocab", "embed"),
        "encoder/position_embedding": ("length", "embed"),
        "encoder/block_0/attention/key/kernel": ("embed", "kv_heads", "head_dim"),
        "encoder/block_0/mlp/down/kernel": ("mlp", "embed"),
        "mlm_head/transform/kernel": ("embed", None),  # Square: 'embed' only once.
        "mlm_head/bias": ("vocab",)},
    "encoder_classify": {
        "encoder/block_0/attention/out/kernel": ("heads", "head_dim", "embed"),
        "pooler/kernel": ("embed", None),
        "classifier/kernel": ("embed", "classes")},
    "encoder_decoder": {
        "embedding": ("vocab", "embed"),
        "unembedding": ("embed", "vocab"),
        "encoder/relative_bias/embedding": ("relpos_buckets", "heads"),
        "decoder/relative_bias/embedding": ("relpos_buckets", "heads"),
        "decoder/block_0/cross_attention/key/kernel": ("embed", "kv_heads", "head_dim"),
        "decoder/block_0/cross_attention/out/kernel": ("heads", "head_dim", "embed"),
        "encoder/block_0/mlp/gate/kernel": ("embed", "mlp")},
}


def _meshes(family, mesh):
  if mesh not in family["meshes"]:
    pytest.skip("this family runs on fewer meshes (multidevice_worker.FAMILY_MESHES)")
  return family["meshes"][mesh]


@pytest.mark.slow
@pytest.mark.parametrize("mesh", MESHES)
def test_sharded_steps_equal_single_device(family, mesh):
  got = _meshes(family, mesh)
  assert got["loss_rel"] < 1e-6, got["loss_rel"]  # float32 reduction-order noise only.
  # lr 1e-3: a missing gradient all-reduce would move params by ~1e-3; noise is ~1e-6.
  assert got["param_abs"] < 1e-5, got["param_abs"]


@pytest.mark.slow
@pytest.mark.parametrize("mesh", MESHES)
def test_params_are_sharded_as_the_rules_say(family, mesh, request):
  got = _meshes(family, mesh)
  sizes = dict(zip(("data", "fsdp", "tensor"), MESHES[mesh]))
  name = request.node.callspec.params["family"]
  for param, logical in LOGICAL[name].items():  # The models name the axes we expect...
    assert tuple(family["logical"][param]) == logical, param
  for param, logical in family["logical"].items():  # ...and every param follows the rules.
    expected = _expected_shard(family["shapes"][param], logical, sizes)
    assert got["shard_shapes"][param] == expected, (param, got["specs"][param])
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
