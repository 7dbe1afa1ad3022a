"""Train-step throughput, model FLOP/s and MFU against a matmul peak measured in the same run.

MFU (model FLOPs utilisation, PaLM appendix B) = achieved model FLOP/s / peak FLOP/s, with
model FLOPs from `lm.models.decoder.flops_per_token` (causal-halved attention) and the peak
measured here as the best of square matmuls of a few sizes, so the ratio is honest on any
machine, including a laptop CPU with no published peak.
"""

import functools
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from lm import losses, optim, sharding, steps, train
from lm.models import decoder


def _time(fn, *args, repeats: int) -> float:
  """Seconds per call of `fn(*args)` (already compiled), best of a few runs of `repeats`."""
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
  """Best FLOP/s of an [n, n] @ [n, n] matmul over `sizes`, with every device busy.

  Each device multiplies its own pair of matrices (a batch sharded over the data mesh), so
  the peak counts the same cores the train step can use.
  """
  mesh = sharding.data_mesh()
  n_dev = mesh.shape["data"]
  best = {"flops": 0.0, "size": None}
  for n in sizes:
    a = jax.device_put(jnp.ones((n_dev, n, n), dtype), sharding.batch_sharded(mesh))
    f = jax.jit(lambda x: jnp.einsum("bij,bjk->bik", x, x))
    seconds = _time(f, a, repeats=max(1, int(2e9 / (2 * n**3))))
    flops = n_dev * 2 * n**3 / seconds
    if flops > best["flops"]:
      best = {"flops": flops, "size": n}
  return best


def train_step_throughput(config, *, vocab_size: int, steps_per_run: int = 20,
                          runs: int = 5) -> dict:
  """Median tokens/s and model FLOP/s of `config`'s jitted train step on random tokens."""
  train.validate(config)
  model_cfg = train.model_config(config, vocab_size)
  t = config.train
  mesh = sharding.data_mesh()
  sharding.check_batch(t.batch_size // t.accum_steps, mesh)
  optimizer = optim.build(config.optim, t.steps)
  loss_fn = functools.partial(losses.get(config.loss.name), z_loss=config.loss.z_loss)
  state = jax.jit(lambda r: steps.create_state(decoder.init_params(model_cfg, r), optimizer, r),
                  out_shardings=sharding.replicated(mesh))(jax.random.PRNGKey(0))
  step = jax.jit(functools.partial(steps.train_step, model=decoder.Decoder(model_cfg),
                                   optimizer=optimizer, loss_fn=loss_fn,
                                   accum_steps=t.accum_steps), donate_argnames="state")
  rng = np.random.default_rng(0)
  shape = (t.batch_size, config.data.context)
  batch = sharding.put_batch({"inputs": rng.integers(0, vocab_size, shape, dtype=np.int32),
                              "targets": rng.integers(0, vocab_size, shape, dtype=np.int32),
                              "weights": np.ones(shape, np.float32)}, mesh)
  compile_start = time.perf_counter()
  state, m = step(state, batch)
  jax.block_until_ready(m)
  compile_s = time.perf_counter() - compile_start
  rates = []
  for _ in range(runs):
    start = time.perf_counter()
    for _ in range(steps_per_run):
      state, m = step(state, batch)
    jax.block_until_ready(m)
    rates.append(steps_per_run * shape[0] * shape[1] / (time.perf_counter() - start))
  tokens_per_s = statistics.median(rates)
  flops = decoder.flops_per_token(model_cfg)
  return {"tokens_per_s": tokens_per_s, "tokens_per_s_runs": rates,
          "model_flops": tokens_per_s * flops, "flops_per_token": flops,
          "params": decoder.param_count(model_cfg), "compile_s": compile_s,
          "devices": mesh.shape["data"], "dtype": model_cfg.dtype}
