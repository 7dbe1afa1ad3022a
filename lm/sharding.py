"""Device mesh, sharding rules and sharded placement of state and batches.

The mesh always has three axes, ('data', 'fsdp', 'tensor'), from `config.mesh.shape` (e.g.
'data:2,fsdp:2,tensor:2'; axes left out have size 1; None puts every device on 'data').
JAX's SPMD partitioner (jit with shardings) is the distributed engine:

  * parameters carry logical axis names (`nn.with_logical_partitioning` in the models);
    `config.mesh.rules` maps each name to mesh axes, e.g. embed -> fsdp (fully-sharded data
    parallel: every weight matrix split along its width), heads/mlp/vocab -> tensor (Megatron
    tensor parallelism). An axis mapped to '' stays whole.
  * optimizer state follows the params it mirrors (Adam's mu and nu); scalars are replicated.
  * every batch is split along its first axis over ('data', 'fsdp'); each process feeds only
    the rows its own devices hold (`put_batch`).
  * activations follow from these by XLA's sharding propagation.

So data parallel is 'data:N', FSDP 'fsdp:N', tensor parallel 'tensor:N', and they combine.
"""

import math

import flax.linen as nn
import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from lm.errors import ConfigError

AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")  # The leading axis of every batch is split over these.


def parse_shape(text: str | None, num_devices: int) -> dict[str, int]:
  """{'data': d, 'fsdp': f, 'tensor': t} from 'data:2,fsdp:2,tensor:2' (None: all on data)."""
  if text is None:
    return {"data": num_devices, "fsdp": 1, "tensor": 1}
  shape = {axis: 1 for axis in AXES}
  seen = set()
  for part in text.split(","):
    name, sep, size = part.strip().partition(":")
    if not sep or name not in AXES or name in seen:
      raise ConfigError(f"mesh.shape={text!r}: expected comma-separated 'axis:size' with each "
                        f"axis one of {AXES} at most once, got {part.strip()!r}")
    try:
      shape[name] = int(size)
    except ValueError:
      raise ConfigError(f"mesh.shape={text!r}: size {size!r} of {name!r} is not an "
                        "integer") from None
    if shape[name] < 1:
      raise ConfigError(f"mesh.shape={text!r}: size of {name!r} must be >= 1 (no -1: "
                        "write every size out)")
    seen.add(name)
  if math.prod(shape.values()) != num_devices:
    raise ConfigError(f"mesh.shape={text!r} has {math.prod(shape.values())} devices "
                      f"({' x '.join(str(shape[a]) for a in AXES)}) but there are "
                      f"{num_devices}; the sizes must multiply to the device count")
  return shape


def make_mesh(shape: str | None = None, devices=None) -> Mesh:
  """The ('data', 'fsdp', 'tensor') mesh of `shape` over `devices` (default: all).

  `mesh_utils.create_device_mesh` orders devices so the inner axes (tensor, then fsdp) get
  the fastest links (same chip / host on TPU and GPU).
  """
  devices = jax.devices() if devices is None else list(devices)
  sizes = parse_shape(shape, len(devices))
  dims = tuple(sizes[a] for a in AXES)
  try:
    grid = mesh_utils.create_device_mesh(dims, devices=devices)
  except (AssertionError, ValueError, NotImplementedError):
    grid = np.asarray(devices).reshape(dims)  # CPU devices and odd subsets: plain order.
  return Mesh(grid, AXES)


def data_mesh(devices=None) -> Mesh:
  """Every device on the 'data' axis."""
  return make_mesh(None, devices)


def rules_from_config(rules_cfg) -> tuple:
  """Flax logical-axis rules ((name, mesh axes or None), ...) from `config.mesh.rules`."""
  rules = []
  for name, value in rules_cfg.items():
    axes = tuple(a.strip() for a in value.split(",") if a.strip())
    for axis in axes:
      if axis not in AXES:
        raise ConfigError(f"mesh.rules.{name}={value!r}: {axis!r} is not a mesh axis {AXES}")
    rules.append((name, axes or None))
  return tuple(rules)


def _path(keys) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in keys)


def param_shardings(logical_specs, abstract_params, mesh: Mesh, rules: tuple):
  """NamedShardings of the params from their logical PartitionSpecs and `rules`.

  Raises ConfigError (before anything compiles) for a logical axis that no rule names or a
  dimension the mesh axes do not divide, naming the parameter.
  """
  known = {name for name, _ in rules}
  specs = jax.tree_util.tree_leaves_with_path(
      logical_specs, is_leaf=lambda x: isinstance(x, P))
  shapes = jax.tree.leaves(abstract_params)
  if len(specs) != len(shapes):
    raise ValueError(f"{len(specs)} logical specs for {len(shapes)} params")
  for (keys, spec), leaf in zip(specs, shapes):
    for name in spec:
      if isinstance(name, str) and name not in known:
        raise ConfigError(f"param {_path(keys)} has logical axis {name!r} with no rule; add "
                          f"--config.mesh.rules.{name}=... (known: {sorted(known)})")
    mesh_spec = nn.logical_to_mesh_axes(spec, rules)
    for dim, (size, axes) in enumerate(zip(leaf.shape, mesh_spec)):
      axes = (axes,) if isinstance(axes, str) else axes or ()
      parts = math.prod(mesh.shape[a] for a in axes)
      if size % parts:
        raise ConfigError(
            f"param {_path(keys)} {tuple(leaf.shape)}: dimension {dim} ({spec[dim]}={size}) "
            f"is not divisible by mesh axes {axes} of size {parts}; change mesh.shape or set "
            f"--config.mesh.rules.{spec[dim]}='' to keep it whole")
  return nn.logical_to_mesh_sharding(logical_specs, mesh, rules)


def logical_specs(model, example_input):
  """PartitionSpecs of logical names of `model`'s params (P() where a param has none)."""
  boxed = jax.eval_shape(lambda: model.init(jax.random.key(0), example_input))["params"]
  return nn.get_partition_spec(boxed)


def state_shardings(abstract_state: dict, params_sharding, mesh: Mesh) -> dict:
  """Shardings of a train state {'step', 'params', 'opt_state', 'rng'}.

  Any part of the optimizer state with the params' tree structure (Adam's mu and nu, and
  the like in other optax transforms) gets the params' shardings; everything else (counts,
  empty states, the rng) is replicated, which is always correct.
  """
  structure = jax.tree.structure(abstract_state["params"])
  rep = replicated(mesh)
  mirrors = lambda x: jax.tree.structure(x) == structure  # noqa: E731
  opt = jax.tree.map(lambda x: params_sharding if mirrors(x) else rep,
                     abstract_state["opt_state"], is_leaf=mirrors)
  out = jax.tree.map(lambda _: rep, abstract_state)
  out["params"], out["opt_state"] = params_sharding, opt
  return out


def train_state_shardings(specs, abstract_state: dict, mesh: Mesh, rules: tuple) -> dict:
  """`state_shardings` of a train state whose params have logical axes `specs`, under `rules`.

  specs: PartitionSpecs of logical axis names, like the params (`lm.families.logical_axes`).
  """
  return state_shardings(
      abstract_state, param_shardings(specs, abstract_state["params"], mesh, rules), mesh)


def with_shardings(abstract, shardings):
  """ShapeDtypeStructs of `abstract` carrying `shardings` (what orbax restores into)."""
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                      abstract, shardings)


def data_parallel_size(mesh: Mesh) -> int:
  return math.prod(mesh.shape[a] for a in BATCH_AXES)


def check_batch(batch_size: int, mesh: Mesh, what: str = "train.batch_size") -> None:
  n = data_parallel_size(mesh)
  if batch_size % n:
    raise ConfigError(f"{what}={batch_size} is not divisible by the data-parallel size {n} "
                      f"(mesh data x fsdp = {mesh.shape['data']} x {mesh.shape['fsdp']})")


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  """Split along the leading (batch) axis over ('data', 'fsdp')."""
  return NamedSharding(mesh, P(BATCH_AXES))


def local_rows(batch_size: int, mesh: Mesh) -> slice:
  """The rows of a global batch that this process's devices hold (a contiguous block)."""
  index = batch_sharded(mesh).addressable_devices_indices_map((batch_size,))
  starts = sorted({s[0].start or 0 for s in index.values()})
  stops = sorted({batch_size if s[0].stop is None else s[0].stop for s in index.values()})
  if sum(b - a for a, b in zip(starts, stops)) != stops[-1] - starts[0]:
    raise ValueError("this process's batch rows are not contiguous")  # Not for our meshes.
  return slice(starts[0], stops[-1])


def put_local_batch(local: dict, batch_size: int, mesh: Mesh) -> dict:
  """Global arrays [batch_size, ...] from this process's rows `local` (see `local_rows`)."""
  sharding = batch_sharded(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(
      sharding, np.asarray(x), (batch_size, *np.shape(x)[1:])), local)


def put_batch(batch: dict, mesh: Mesh) -> dict:
  """Global arrays from a global batch that every process holds (each uses its rows)."""
  size = len(next(iter(batch.values())))
  rows = local_rows(size, mesh)
  return put_local_batch({k: np.asarray(v)[rows] for k, v in batch.items()}, size, mesh)
