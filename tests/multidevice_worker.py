"""Runs the multi-device checks on 8 fake CPU devices; `test_multidevice.py` reads the JSON.

    python tests/multidevice_worker.py FAMILY[,FAMILY...]|common OUT.json
    python tests/multidevice_worker.py loop OUT.json CORPUS.txt

XLA must see the device-count flag before jax is imported, so this runs in its own
process. Each model family (and stage) is one entry of FAMILIES: a function returning the
ModelConfig, the stage and the batches; the model, its init and its state shardings come
from `lm.families` as `lm.train` gets them. Adding a family here and to the test's
FAMILIES list is all a new family needs. Several families in one call share one process
(one jax start-up).
"""

import os
import sys

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_force_host_platform_device_count=8")

import functools  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from configs import common  # noqa: E402
from lm import checkpoint, families, losses, sharding, steps  # noqa: E402
from lm.data import mlm  # noqa: E402
from lm.models import decoder  # noqa: E402
from lm.models.config import ModelConfig  # noqa: E402

MESHES = ("data:8", "fsdp:8", "data:2,fsdp:2,tensor:2", "fsdp:2,tensor:4")
RULES = sharding.rules_from_config(common.base_config().mesh.rules)
STEPS, BATCH, LENGTH, ACCUM = 3, 16, 8, 2


def _token_batch(vocab: int) -> dict:
  rng = np.random.default_rng(0)
  shape = (STEPS, BATCH, LENGTH)
  weights = (rng.random(shape) > 0.2).astype(np.float32)  # Uneven padding.
  return {"inputs": rng.integers(0, vocab, shape, dtype=np.int32),
          "targets": rng.integers(0, vocab, shape, dtype=np.int32), "weights": weights}


def decoder_family(scan_layers: bool = False):
  cfg = ModelConfig(vocab_size=16, max_len=LENGTH, num_layers=2, num_heads=4, width=32,
                    mlp_width=64, position="rope", scan_layers=scan_layers)
  return cfg, "pretrain", _token_batch(16)


def _padding(rng, shape) -> np.ndarray:
  """[..., length] bool: each row real up to a random length >= 2 (right padding)."""
  lengths = rng.integers(2, shape[-1] + 1, shape[:-1])
  return np.arange(shape[-1]) < lengths[..., None]


_ENCODER = dict(vocab_size=64, max_len=LENGTH, num_layers=1, num_heads=4, width=32,
                mlp_width=128, family="encoder", position="learned")


def encoder_mlm():
  """BERT MLM (transform + bias head) on right-padded rows, masked by `lm.data.mlm`."""
  cfg = ModelConfig(**_ENCODER, mlm_transform=True, use_bias=True)
  rng = np.random.default_rng(1)
  shape = (STEPS * BATCH, LENGTH)
  real = _padding(rng, shape)
  tokens = rng.integers(4, 64, shape)
  out = mlm.mask_tokens(tokens, rng, mask_id=3, random_ids=np.arange(4, 64), maskable=real,
                        rate=0.3)
  out["padding_mask"] = real
  return cfg, "mlm", {k: np.asarray(v).reshape(STEPS, BATCH, LENGTH) for k, v in out.items()}


def encoder_classify():
  """Sequence classifier (pooler, 3 classes) on right-padded rows: logits [b, 1, 3]."""
  cfg = ModelConfig(**_ENCODER, num_labels=3, pooler=True)
  rng = np.random.default_rng(2)
  return cfg, "classify", {
      "inputs": rng.integers(0, 64, (STEPS, BATCH, LENGTH), dtype=np.int32),
      "padding_mask": _padding(rng, (STEPS, BATCH, LENGTH)),
      "targets": rng.integers(0, 3, (STEPS, BATCH, 1), dtype=np.int32),
      "weights": np.ones((STEPS, BATCH, 1), np.float32)}


def encoder_decoder_family():
  """T5 (relative bias, RMSNorm, GeGLU, untied output) on padded sources and targets."""
  cfg = ModelConfig(vocab_size=64, max_len=LENGTH, num_layers=1, num_heads=4, width=32,
                    mlp_width=128, family="encoder_decoder", position="relative",
                    norm="rmsnorm", mlp="geglu", tie_embeddings=False, relative_buckets=8,
                    relative_max_distance=16)
  rng = np.random.default_rng(3)
  shape = (STEPS, BATCH, LENGTH)
  targets = rng.integers(2, 64, shape, dtype=np.int32)
  weights = _padding(rng, shape).astype(np.float32)
  return cfg, "span_corruption", {
      "inputs": rng.integers(2, 64, shape, dtype=np.int32),
      "padding_mask": _padding(rng, shape),
      "decoder_inputs": np.concatenate([np.ones((*shape[:2], 1), np.int32),  # BOS = 1.
                                        targets[..., :-1]], -1),
      "targets": targets, "weights": weights}


# The classifier head is the encoder plus two small matrices: one mesh (every axis > 1)
# checks it, at a fifth of the compile time of all four.
FAMILY_MESHES = {"encoder_classify": ("data:2,fsdp:2,tensor:2",)}
FAMILIES = {
    "decoder": decoder_family,
    "decoder_scanned": functools.partial(decoder_family, scan_layers=True),
    "encoder_mlm": encoder_mlm,
    "encoder_classify": encoder_classify,
    "encoder_decoder": encoder_decoder_family,
}


def _run(cfg, stage, batches, mesh_shape, devices):
  """Losses and final params of STEPS train steps on a mesh of `mesh_shape`, with the
  model, init and state shardings `lm.train` uses."""
  mesh = sharding.make_mesh(mesh_shape, devices)
  model = families.module(cfg, stage)
  # Clipping reduces a norm over every shard; lr 1e-3 keeps Adam's per-step move small.
  optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3, weight_decay=0.1))

  def make(rng):
    return steps.create_state(families.init_params(cfg, rng, stage), optimizer, rng)

  abstract = jax.eval_shape(make, jax.random.PRNGKey(0))
  state_sharding = sharding.train_state_shardings(families.logical_axes(cfg, stage), abstract,
                                                  mesh, RULES)
  state = jax.jit(make, out_shardings=state_sharding)(jax.random.PRNGKey(0))
  step = jax.jit(functools.partial(steps.train_step, model=model, optimizer=optimizer,
                                   loss_fn=losses.cross_entropy, accum_steps=ACCUM),
                 donate_argnames="state", out_shardings=(state_sharding, None))
  losses_ = []
  for i in range(STEPS):
    batch = sharding.put_batch({k: v[i] for k, v in batches.items()}, mesh)
    state, m = step(state, batch)
    losses_.append(float(m["loss_sum"]) / float(m["weight_sum"]))
  flat = jax.tree_util.tree_leaves_with_path(state["params"])
  name = lambda keys: "/".join(str(k.key) for k in keys)  # noqa: E731
  return {
      "losses": losses_,
      "params": {name(k): np.asarray(jax.device_get(v)) for k, v in flat},
      "specs": {name(k): [list(a) if isinstance(a, tuple) else a for a in v.sharding.spec]
                for k, v in flat},
      "shard_shapes": {name(k): list(v.addressable_shards[0].data.shape) for k, v in flat},
      "mu_specs_match": all(
          mu.sharding == p.sharding for mu, p in
          zip(jax.tree.leaves(state["opt_state"][1][0].mu), jax.tree.leaves(state["params"]))),
  }


def family_checks(family: str) -> dict:
  cfg, stage, batches = FAMILIES[family]()
  devices = jax.devices()
  ref = _run(cfg, stage, batches, None, devices[:1])
  logical = jax.tree_util.tree_leaves_with_path(
      families.logical_axes(cfg, stage),
      is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
  out = {"shapes": {k: list(v.shape) for k, v in ref["params"].items()},
         "logical": {"/".join(str(k.key) for k in keys): list(spec) for keys, spec in logical},
         "losses": ref["losses"], "meshes": {}}
  for shape in FAMILY_MESHES.get(family, MESHES):
    got = _run(cfg, stage, batches, shape, devices)
    out["meshes"][shape] = {
        "loss_rel": max(abs(a - b) / abs(b) for a, b in zip(got["losses"], ref["losses"])),
        "param_abs": max(float(np.abs(got["params"][k] - v).max())
                         for k, v in ref["params"].items()),
        "specs": got["specs"], "shard_shapes": got["shard_shapes"],
        "mu_specs_match": got["mu_specs_match"]}
  return out


def _error(fn) -> str:
  try:
    fn()
  except Exception as e:  # pylint: disable=broad-except
    return f"{type(e).__name__}: {e}"
  return "no error"


def common_checks() -> dict:
  out = {}
  cfg, _, _ = decoder_family()
  model, init_params = decoder.Decoder(cfg), functools.partial(decoder.init_params, cfg)
  # A checkpoint saved from one mesh restores onto another, values equal, new layout.
  with tempfile.TemporaryDirectory() as tmp:
    state = {}
    layouts = {}
    for shape in ("data:2,fsdp:2,tensor:2", "fsdp:2,tensor:4", "data:8", None):
      mesh = sharding.make_mesh(shape)
      abstract = jax.eval_shape(init_params, jax.random.PRNGKey(0))
      specs = sharding.logical_specs(model, jnp.zeros((1, LENGTH), jnp.int32))
      layouts[shape] = (abstract, sharding.param_shardings(specs, abstract, mesh, RULES))
    abstract, saved_sharding = layouts["data:2,fsdp:2,tensor:2"]
    state = jax.jit(init_params, out_shardings=saved_sharding)(jax.random.PRNGKey(0))
    mngr = checkpoint.manager(tmp, async_save=False)
    checkpoint.save(mngr, 1, state, {"step": 1})
    mngr.wait_until_finished()
    out["restore"] = {}
    for shape in ("fsdp:2,tensor:4", "data:8", None):
      abstract, target = layouts[shape]
      restored, meta = checkpoint.restore(mngr, sharding.with_shardings(abstract, target))
      out["restore"][str(shape)] = {
          "equal": all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in
                       zip(jax.tree.leaves(state), jax.tree.leaves(restored))),
          "sharding_is_target": all(a.sharding == b for a, b in
                                    zip(jax.tree.leaves(restored), jax.tree.leaves(target))),
          "embedding_spec": str(restored["embedding"].sharding.spec),
          "meta_step": meta["step"]}
    mngr.close()
  # Bad input, caught before compiling.
  config = common.base_config()
  abstract = jax.eval_shape(init_params, jax.random.PRNGKey(0))
  specs = sharding.logical_specs(model, jnp.zeros((1, LENGTH), jnp.int32))
  no_mlp = tuple(r for r in RULES if r[0] != "mlp")
  out["errors"] = {
      "mesh_mismatch": _error(lambda: sharding.make_mesh("data:2,fsdp:2")),
      "mesh_minus_one": _error(lambda: sharding.make_mesh("data:-1")),
      "no_rule": _error(lambda: sharding.param_shardings(
          specs, abstract, sharding.make_mesh("data:8"), no_mlp)),
      "not_divisible": _error(lambda: sharding.param_shardings(
          specs, abstract, sharding.make_mesh("tensor:8"), RULES)),
  }
  from lm import train
  config.mesh.shape = "data:4,fsdp:2"
  config.train.batch_size, config.eval.batch_size = 12, 8
  out["errors"]["batch"] = _error(lambda: train.validate(config))
  return out


def loop_checks(corpus_file: str) -> dict:
  """The training loop on meshes: a run stopped on one mesh and resumed on another ends
  where a straight data-parallel run ends."""
  from configs import shakespeare_char
  from lm import metrics, train
  out = {}
  with tempfile.TemporaryDirectory() as tmp:
    def config(shape):
      c = shakespeare_char.get_config("smoke")
      c.data.source, c.data.text_file = "text", corpus_file
      c.mesh.shape, c.mesh.rules.vocab = shape, ""  # The corpus's vocabulary is odd-sized.
      c.train.steps, c.train.checkpoint_every, c.train.eval_every = 12, 6, 12
      c.train.log_every, c.sample.num_tokens = 3, 8
      return c
    straight = train.train_and_evaluate(config("data:8"), f"{tmp}/straight")
    train.train_and_evaluate(config("data:2,fsdp:2,tensor:2"), f"{tmp}/moved", stop_at=6)
    moved = train.train_and_evaluate(config("data:4,tensor:2"), f"{tmp}/moved")
    out["final_loss"] = [straight["loss"], moved["loss"]]
    # A sharded 8-device checkpoint read back as whole arrays (evaluate, sample, init_from).
    from lm import run_files
    *_, params = run_files.load_run(f"{tmp}/moved")
    out["load_run_devices"] = sorted({d.id for x in jax.tree.leaves(params)
                                      for d in x.devices()})
    out["train_losses"] = [[r["loss"] for r in metrics.read(f"{tmp}/{name}")
                            if r["split"] == "train"] for name in ("straight", "moved")]
  return out


def main():
  what, path = sys.argv[1:3]
  if what == "common":
    result = common_checks()
  elif what == "loop":
    result = loop_checks(sys.argv[3])
  else:
    result = {}
    for family in what.split(","):
      start = time.time()
      result[family] = family_checks(family)
      print(f"{family}: {time.time() - start:.1f} s", file=sys.stderr)
  with open(path, "w") as f:
    json.dump(result, f)


if __name__ == "__main__":
  main()
