"""Peak FLOP/s per device and model-FLOPs utilisation (MFU).

MFU (PaLM appendix B) = model FLOP/s achieved / peak FLOP/s, with model FLOPs from the
model's `flops_per_token` (no rematerialisation counted). The peak is dense bfloat16 matmul
FLOP/s per chip from the vendors' spec sheets, looked up by `device.device_kind`; a config or
flag value overrides it, and on CPU (no published peak) it is measured: the best square
matmul in this process, on every device at once.
"""

import functools
import time

import jax
import jax.numpy as jnp

# (substring of device_kind, lowercase) -> dense bf16 peak FLOP/s per chip. First match wins,
# so more specific names come first ('v5 lite' before 'v5').
PEAK_FLOPS = (
    ("tpu v4", 275e12),
    ("tpu v5 lite", 197e12),  # v5e
    ("tpu v5e", 197e12),
    ("tpu v5p", 459e12),
    ("tpu v5", 459e12),  # v5p reports 'TPU v5'
    ("tpu v6 lite", 918e12),  # v6e (Trillium)
    ("tpu v6e", 918e12),
    ("a100", 312e12),
    ("h100", 989e12),  # SXM; the PCIe card is lower (756e12): override with peak_flops
    ("h200", 989e12),
)


def table_peak(device_kind: str) -> float | None:
  """The table's peak for `device_kind`, or None if unknown."""
  kind = device_kind.lower()
  for name, flops in PEAK_FLOPS:
    if name in kind:
      return flops
  return None


def _time(fn, *args, repeats: int) -> float:
  """Seconds per call of `fn(*args)`, best of 3 runs of `repeats` calls (after a warm-up)."""
  jax.block_until_ready(fn(*args))
  best = float("inf")
  for _ in range(3):
    start = time.perf_counter()
    for _ in range(repeats):
      out = fn(*args)
    jax.block_until_ready(out)
    best = min(best, (time.perf_counter() - start) / repeats)
  return best


def matmul_peak(dtype: str = "float32", sizes=(512, 1024, 2048)) -> dict:
  """Best FLOP/s per device of an [n, n] @ [n, n] matmul over `sizes`, every device busy.

  Each device multiplies its own pair of matrices (a batch sharded over the devices), so
  the peak counts the same cores the train step can use.
  """
  from lm import sharding  # Deferred: sharding imports flax.
  mesh = sharding.data_mesh()
  n_dev = mesh.size
  best = {"flops": 0.0, "size": None}
  for n in sizes:
    a = jax.device_put(jnp.ones((n_dev, n, n), dtype), sharding.batch_sharded(mesh))
    f = jax.jit(lambda x: jnp.einsum("bij,bjk->bik", x, x))
    seconds = _time(f, a, repeats=max(1, int(2e9 / (2 * n**3))))
    flops = 2 * n**3 / seconds
    if flops > best["flops"]:
      best = {"flops": flops, "size": n}
  return best


@functools.lru_cache(maxsize=4)
def device_peak(override: float | None = None, dtype: str = "float32") -> tuple[float, str]:
  """(peak FLOP/s per device, where it came from): override, table, or a measured matmul."""
  if override:
    return float(override), "config"
  kind = jax.devices()[0].device_kind
  peak = table_peak(kind)
  if peak is not None:
    return peak, f"table ({kind})"
  measured = matmul_peak(dtype, sizes=(256, 512))
  return measured["flops"], f"measured {dtype} matmul n={measured['size']}"


def mfu(tokens_per_s: float, flops_per_token: float, devices: int, peak: float) -> float:
  """Model FLOPs utilisation of `devices` devices of `peak` FLOP/s each."""
  return tokens_per_s * flops_per_token / (devices * peak)
