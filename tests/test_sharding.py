"""Mesh parsing, rules and state shardings on the devices this process has.

Multi-device behaviour (8 fake devices) is in test_multidevice.py.
"""

import jax
import jax.numpy as jnp
import optax
import pytest
from jax.sharding import PartitionSpec as P

from configs import common
from lm import sharding
from lm.errors import ConfigError
from lm.models import decoder
from lm.models.config import ModelConfig


def test_parse_shape():
  assert sharding.parse_shape(None, 8) == {"data": 8, "fsdp": 1, "tensor": 1}
  assert sharding.parse_shape("fsdp:2,tensor:4", 8) == {"data": 1, "fsdp": 2, "tensor": 4}
  assert sharding.parse_shape(" tensor:2 , data:3", 6) == {"data": 3, "fsdp": 1, "tensor": 2}


@pytest.mark.parametrize("text,message", [
    ("data:4", "has 4 devices (4 x 1 x 1) but there are 8"),
    ("data:-1", "must be >= 1 (no -1"),
    ("data:two", "size 'two' of 'data' is not an integer"),
    ("pipeline:8", "each axis one of ('data', 'fsdp', 'tensor')"),
    ("data:4,data:2", "at most once"),
    ("data8", "expected comma-separated 'axis:size'"),
])
def test_bad_shape(text, message):
  with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
    sharding.parse_shape(text, 8)


def test_rules_from_config():
  rules = dict(sharding.rules_from_config(common.base_config().mesh.rules))
  assert rules["embed"] == ("fsdp",) and rules["mlp"] == ("tensor",)
  assert rules["head_dim"] is None
  c = common.base_config()
  c.mesh.rules.embed = "data, fsdp"
  assert dict(sharding.rules_from_config(c.mesh.rules))["embed"] == ("data", "fsdp")
  c.mesh.rules.embed = "model"
  with pytest.raises(ConfigError, match="mesh.rules.embed='model': 'model' is not a mesh axis"):
    sharding.rules_from_config(c.mesh.rules)


def test_state_shardings_follow_params_and_replicate_the_rest():
  cfg = ModelConfig(vocab_size=8, max_len=4, num_layers=1, num_heads=2, width=8)
  mesh = sharding.make_mesh(None, jax.devices()[:1])
  optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3))
  abstract = jax.eval_shape(lambda: {"step": jnp.zeros(()), "rng": jax.random.PRNGKey(0),
                                     "params": decoder.init_params(cfg, jax.random.PRNGKey(0)),
                                     "opt_state": optimizer.init(
                                         decoder.init_params(cfg, jax.random.PRNGKey(0)))})
  rules = sharding.rules_from_config(common.base_config().mesh.rules)
  specs = sharding.logical_specs(decoder.Decoder(cfg), jnp.zeros((1, 4), jnp.int32))
  params = sharding.param_shardings(specs, abstract["params"], mesh, rules)
  state = sharding.state_shardings(abstract, params, mesh)
  assert params["embedding"].spec == P("tensor", "fsdp")
  assert params["block_0"]["mlp"]["down"]["kernel"].spec == P("tensor", "fsdp")
  adam = state["opt_state"][1][0]
  assert adam.mu == params and adam.nu == params
  assert adam.count.spec == P() and state["step"].spec == P() and state["rng"].spec == P()


def test_local_rows_single_process_is_everything():
  mesh = sharding.make_mesh(None, jax.devices()[:1])
  assert sharding.local_rows(12, mesh) == slice(0, 12)
  batch = sharding.put_batch({"x": jnp.arange(12).reshape(6, 2)}, mesh)
  assert batch["x"].shape == (6, 2)
