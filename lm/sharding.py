"""Device mesh and shardings. For now: data parallelism over every device.

Params and optimizer state are replicated; a batch is split along its first axis. The
scale-out issue extends this with fsdp/tensor axes and logical-axis rules; callers already
go through these functions, so that is a change here, not in the train loop.
"""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from lm.errors import ConfigError


def data_mesh(devices=None) -> Mesh:
  """A 1-D mesh named 'data' over `devices` (default: all)."""
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), ("data",))


def check_batch(batch_size: int, mesh: Mesh, what: str = "train.batch_size") -> None:
  n = mesh.shape["data"]
  if batch_size % n:
    raise ConfigError(f"{what}={batch_size} is not divisible by the {n} devices "
                      f"of the data-parallel mesh")


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  """Split along the leading (batch) axis."""
  return NamedSharding(mesh, P("data"))


def put_batch(batch: dict, mesh: Mesh) -> dict:
  return jax.device_put(batch, batch_sharded(mesh))
