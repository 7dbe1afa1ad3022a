"""Train-step throughput, model FLOP/s and MFU on the config's device mesh.

MFU (model FLOPs utilisation, PaLM appendix B) = achieved model FLOP/s / peak FLOP/s, with
model FLOPs from `lm.models.decoder.flops_per_token` (causal-halved attention, no
rematerialisation) and the peak per device from `lm.throughput` (vendor table for TPUs and
NVIDIA GPUs; on CPU the best square matmul measured in the same run, so the ratio is honest
on any machine, including a laptop CPU with no published peak).
"""

import functools
import statistics
import time

import jax
import numpy as np

from lm import losses, optim, sharding, steps, train
from lm.models import decoder
from lm.throughput import matmul_peak  # noqa: F401  # Re-exported: the entry point uses it.


def train_step_throughput(config, *, vocab_size: int, steps_per_run: int = 20,
                          runs: int = 5) -> dict:
  """Median tokens/s and model FLOP/s of `config`'s jitted train step on random tokens."""
  train.validate(config)
  model_cfg = train.model_config(config, vocab_size)
  t = config.train
  mesh = sharding.make_mesh(config.mesh.shape)
  sharding.check_batch(t.batch_size // t.accum_steps, mesh)
  optimizer = optim.build(config.optim, t.steps)
  loss_fn = functools.partial(losses.get(config.loss.name), z_loss=config.loss.z_loss)
  model = decoder.Decoder(model_cfg)
  make = lambda r: steps.create_state(decoder.init_params(model_cfg, r), optimizer, r)  # noqa: E731
  abstract = jax.eval_shape(make, jax.random.PRNGKey(0))
  state_sharding = sharding.train_state_shardings(
      decoder.logical_axes(model_cfg), abstract, mesh,
      sharding.rules_from_config(config.mesh.rules))
  state = jax.jit(make, out_shardings=state_sharding)(jax.random.PRNGKey(0))
  step = jax.jit(functools.partial(steps.train_step, model=model, optimizer=optimizer,
                                   loss_fn=loss_fn, accum_steps=t.accum_steps),
                 donate_argnames="state", out_shardings=(state_sharding, None))
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
          "devices": mesh.size, "mesh": dict(mesh.shape), "dtype": model_cfg.dtype,
          "tokens_per_s_per_device": tokens_per_s / mesh.size}
