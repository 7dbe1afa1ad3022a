"""Ahead-of-time memory planning: compile the train step for a mesh without running it.

    plan = planning.plan(config, vocab_size=50304, mesh_shape="data:2,fsdp:2,tensor:2")

lowers `lm.steps.train_step` (the function `lm.train` jits, with the same optimizer, loss,
accumulation, donation and shardings) on abstract inputs, compiles it for the mesh's devices
(fake CPU devices will do: `--cpu_devices=8`) and reads XLA's per-device memory analysis.
Parameters and optimizer state are counted from their shard shapes; temporaries are XLA's
`temp_size_in_bytes`. An out-of-memory layout shows up here, before accelerator time.
"""

import functools
import math

import jax
import jax.numpy as jnp

from lm import optim, sharding, steps, train
from lm.models import decoder


def _shard_bytes(abstract_tree, sharding_tree) -> int:
  """Bytes one device holds of `abstract_tree` laid out as `sharding_tree`."""
  return sum(math.prod(s.shard_shape(a.shape)) * jnp.dtype(a.dtype).itemsize
             for a, s in zip(jax.tree.leaves(abstract_tree), jax.tree.leaves(sharding_tree)))


def plan(config, *, vocab_size: int, mesh_shape: str | None, devices=None) -> dict:
  """Per-device bytes of `config`'s train step on a mesh of `mesh_shape` over `devices`.

  Returns a dict of byte counts: params, opt_state, batch (this device's rows), arguments,
  outputs, aliased (outputs written over donated arguments), temporaries, total = arguments
  + outputs - aliased + temporaries (XLA's peak estimate for one step), plus 'devices' and
  'compile_s'.
  """
  import time
  mesh = sharding.make_mesh(mesh_shape, devices)
  t = config.train
  sharding.check_batch(t.batch_size // t.accum_steps, mesh,
                       "train.batch_size / train.accum_steps")
  model_cfg = train.model_config(config, vocab_size)
  model = decoder.Decoder(model_cfg)
  optimizer = optim.build(config.optim, t.steps)
  make_state = lambda r: steps.create_state(decoder.init_params(model_cfg, r), optimizer, r)
  abstract = jax.eval_shape(make_state, jax.random.PRNGKey(0))
  state_sharding = sharding.train_state_shardings(
      decoder.logical_axes(model_cfg), abstract, mesh,
      sharding.rules_from_config(config.mesh.rules))
  shape = (t.batch_size, config.data.context)
  rows = sharding.batch_sharded(mesh)
  batch = {"inputs": jax.ShapeDtypeStruct(shape, jnp.int32, sharding=rows),
           "targets": jax.ShapeDtypeStruct(shape, jnp.int32, sharding=rows),
           "weights": jax.ShapeDtypeStruct(shape, jnp.float32, sharding=rows)}
  step = jax.jit(functools.partial(
      steps.train_step, model=model, optimizer=optimizer, loss_fn=train._loss_fn(config),  # pylint: disable=protected-access
      accum_steps=t.accum_steps, skip_nonfinite=t.nonfinite == "skip"),
      donate_argnames="state", out_shardings=(state_sharding, sharding.replicated(mesh)))
  start = time.perf_counter()
  compiled = step.lower(sharding.with_shardings(abstract, state_sharding), batch).compile()
  compile_s = time.perf_counter() - start
  memory = compiled.memory_analysis()
  out = {
      "params": _shard_bytes(abstract["params"], state_sharding["params"]),
      "opt_state": _shard_bytes(abstract["opt_state"], state_sharding["opt_state"]),
      "batch": _shard_bytes(batch, jax.tree.map(lambda b: b.sharding, batch)),
      "arguments": memory.argument_size_in_bytes,
      "outputs": memory.output_size_in_bytes,
      "aliased": memory.alias_size_in_bytes,
      "temporaries": memory.temp_size_in_bytes,
  }
  out["total"] = out["arguments"] + out["outputs"] - out["aliased"] + out["temporaries"]
  out.update(devices=mesh.size, mesh=dict(mesh.shape), compile_s=compile_s,
             param_count=decoder.param_count(model_cfg))
  return out


def format_table(plans: dict) -> str:
  """A Markdown table of `plan` results keyed by layout name, sizes in MiB."""
  mib = lambda b: f"{b / 2**20:,.1f}"  # noqa: E731
  lines = ["| layout | devices | params | opt state | batch | temporaries | outputs - aliased "
           "| total per device (MiB) |", "|---|---|---|---|---|---|---|---|"]
  for name, p in plans.items():
    lines.append(f"| {name} | {p['devices']} | {mib(p['params'])} | {mib(p['opt_state'])} | "
                 f"{mib(p['batch'])} | {mib(p['temporaries'])} | "
                 f"{mib(p['outputs'] - p['aliased'])} | {mib(p['total'])} |")
  return "\n".join(lines)
