"""The AOT memory planner against the compiled memory of the plain single-device step."""

import functools

import jax
import numpy as np

from configs import gpt2
from lm import optim, planning, steps, train
from lm.models import decoder


def _actual(config, vocab_size):
  """Memory analysis and state bytes of the train step compiled as a plain single-device
  jit on concrete arrays (no mesh, no shardings): what train.py compiled before meshes."""
  model_cfg = train.model_config(config, vocab_size)
  optimizer = optim.build(config.optim, config.train.steps)
  state = steps.create_state(decoder.init_params(model_cfg, jax.random.PRNGKey(0)), optimizer,
                             jax.random.PRNGKey(1))
  shape = (config.train.batch_size, config.data.context)
  batch = {"inputs": np.zeros(shape, np.int32), "targets": np.zeros(shape, np.int32),
           "weights": np.ones(shape, np.float32)}
  step = jax.jit(functools.partial(steps.train_step, model=decoder.Decoder(model_cfg),
                                   optimizer=optimizer, loss_fn=train._loss_fn(config),  # pylint: disable=protected-access
                                   accum_steps=config.train.accum_steps),
                 donate_argnames="state")
  memory = step.lower(state, batch).compile().memory_analysis()
  total = (memory.argument_size_in_bytes + memory.output_size_in_bytes
           - memory.alias_size_in_bytes + memory.temp_size_in_bytes)
  nbytes = lambda tree: sum(x.nbytes for x in jax.tree.leaves(tree))  # noqa: E731
  return total, nbytes(state["params"]), nbytes(state["opt_state"])


def test_single_device_plan_within_20_percent_of_compiled_step():
  config = gpt2.get_config("tiny")
  plan = planning.plan(config, vocab_size=512, mesh_shape=None, devices=jax.devices()[:1])
  total, params, opt_state = _actual(config, 512)
  assert plan["params"] == params and plan["opt_state"] == opt_state
  assert abs(plan["total"] - total) <= 0.2 * total, (plan, total)
  # Adam keeps two float32 moments per float32 param, plus scalar counts.
  assert 2 * params <= opt_state <= 2 * params + 64
  assert plan["temporaries"] > 0


def test_table_lists_every_layout():
  plans = {"1 device": dict(devices=1, params=2**20, opt_state=2**21, batch=0,
                            temporaries=2**22, outputs=2**20 + 2**21, aliased=2**20 + 2**21,
                            total=2**20 * 7)}
  table = planning.format_table(plans)
  assert "| 1 device | 1 | 1.0 | 2.0 | 0.0 | 4.0 | 0.0 | 7.0 |" in table
