"""Train step and loop: accumulation, a smoke run, exact resume, bad input."""

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import shakespeare_char
from lm import losses, metrics, optim, run_files, steps, train
from lm.errors import ConfigError, DataError
from lm.models import decoder
from lm.models.config import ModelConfig

CFG = ModelConfig(vocab_size=13, max_len=6, num_layers=2, num_heads=2, width=16)


def _step(accum_steps, optimizer):
  return jax.jit(functools.partial(
      steps.train_step, model=decoder.Decoder(CFG), optimizer=optimizer,
      loss_fn=losses.cross_entropy, accum_steps=accum_steps))


@pytest.mark.parametrize("accum_steps", [2, 4])
def test_accumulation_equals_one_big_batch(accum_steps):
  rng = np.random.default_rng(0)
  batch = {"inputs": rng.integers(0, 13, (8, 6)), "targets": rng.integers(0, 13, (8, 6)),
           "weights": np.ones((8, 6), np.float32)}
  # Uneven padding: micro-batches hold very different numbers of real tokens.
  batch["weights"][0, 2:] = 0
  batch["weights"][1:3, :] = 0
  batch["weights"][5, 1:] = 0
  batch = jax.tree.map(jnp.asarray, batch)
  optimizer = optax.sgd(1.0)  # Plain SGD: the update is the gradient itself.
  params = decoder.init_params(CFG, jax.random.PRNGKey(0))
  state = steps.create_state(params, optimizer, jax.random.PRNGKey(1))
  one, m1 = _step(1, optimizer)(state, batch)
  many, mk = _step(accum_steps, optimizer)(state, batch)
  for a, b in zip(jax.tree.leaves(one["params"]), jax.tree.leaves(many["params"])):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(m1["loss_sum"], mk["loss_sum"], rtol=1e-6)
  assert float(m1["weight_sum"]) == float(mk["weight_sum"]) == float(batch["weights"].sum())


def test_gradient_is_of_the_token_weighted_mean():
  batch = {"inputs": jnp.array([[1, 2, 3, 4, 5, 6]]), "targets": jnp.array([[2, 3, 4, 5, 6, 7]]),
           "weights": jnp.array([[1.0, 1.0, 0.0, 1.0, 0.0, 0.0]])}
  params = decoder.init_params(CFG, jax.random.PRNGKey(0))
  state = steps.create_state(params, optax.sgd(1.0), jax.random.PRNGKey(1))
  new, _ = _step(1, optax.sgd(1.0))(state, batch)

  def mean_loss(p):
    logits, _ = decoder.Decoder(CFG).apply({"params": p}, batch["inputs"])
    logp = jax.nn.log_softmax(logits)
    nll = -jnp.take_along_axis(logp, batch["targets"][..., None], -1)[..., 0]
    return (nll * batch["weights"]).sum() / batch["weights"].sum()

  grads = jax.grad(mean_loss)(params)
  for p, g, n in zip(jax.tree.leaves(params), jax.tree.leaves(grads),
                     jax.tree.leaves(new["params"])):
    np.testing.assert_allclose(n, p - g, atol=1e-6)


def test_weight_decay_only_on_matrices():
  params = decoder.init_params(CFG, jax.random.PRNGKey(0))
  mask = optim.decay_mask(params)
  assert mask["embedding"] and mask["block_0"]["mlp"]["up"]["kernel"]
  assert not mask["block_0"]["mlp_norm"]["scale"] and not mask["final_norm"]["scale"]


def test_schedule_warmup_then_cosine_to_min():
  o = shakespeare_char.get_config("baby").optim
  sched = optim.schedule(o, 2000)
  assert float(sched(0)) == 0.0
  np.testing.assert_allclose(float(sched(50)), 5e-4, rtol=1e-6)
  np.testing.assert_allclose(float(sched(100)), 1e-3, rtol=1e-6)
  np.testing.assert_allclose(float(sched(1050)), 1e-4 + 0.5 * 9e-4, rtol=1e-5)
  np.testing.assert_allclose(float(sched(2000)), 1e-4, rtol=1e-6)


def test_smoke_run_loss_falls_and_writes_files(smoke_config, tmp_path):
  workdir = str(tmp_path / "run")
  smoke_config.train.steps = 40
  results = train.train_and_evaluate(smoke_config, workdir)
  records = metrics.read(workdir)
  train_loss = [r["loss"] for r in records if r["split"] == "train"]
  assert train_loss[-1] < train_loss[0] - 0.5, train_loss
  assert results["loss"] < train_loss[0]
  assert np.isclose(results["perplexity"], np.exp(results["nll"]))
  assert set(os.listdir(workdir)) >= {"config.json", "tokenizer.json", "checkpoints",
                                      "metrics.jsonl", "tensorboard", "results.json"}
  assert len(results["sample"]["text"]) == smoke_config.sample.num_tokens
  with open(os.path.join(workdir, "results.json")) as f:
    assert json.load(f)["loss"] == results["loss"]
  config, tokenizer, model_cfg, params = run_files.load_run(workdir)
  assert config.train.steps == 40 and model_cfg.vocab_size == tokenizer.vocab_size


def test_resume_is_exact(smoke_config, tmp_path):
  straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
  smoke_config.model.dropout = 0.1  # Dropout keys must resume too.
  train.train_and_evaluate(smoke_config, straight)
  assert train.train_and_evaluate(smoke_config, resumed, stop_at=10) == {}
  train.train_and_evaluate(smoke_config, resumed)
  assert metrics.read(straight) == metrics.read(resumed)
  *_, p_straight = run_files.load_run(straight)
  *_, p_resumed = run_files.load_run(resumed)
  for a, b in zip(jax.tree.leaves(p_straight), jax.tree.leaves(p_resumed)):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("override,error,message", [
    ({"train.accum_steps": 5}, ConfigError, "not divisible by train.accum_steps=5"),
    ({"data.context": 100000}, DataError, "longer than split"),
    ({"model.num_heads": 3}, ConfigError, "does not divide"),
    ({"optim.min_lr": 1.0}, ConfigError, "min_lr"),
    ({"data.text_file": "/nonexistent/x.txt"}, DataError, "no such file"),
])
def test_bad_input_fails_before_compute(smoke_config, tmp_path, override, error, message):
  for key, value in override.items():
    section, name = key.split(".")
    smoke_config[section][name] = value
  with pytest.raises(error, match=message):
    train.train_and_evaluate(smoke_config, str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run" / "checkpoints")


def test_empty_data_file(smoke_config, tmp_path):
  empty = tmp_path / "empty.txt"
  empty.write_text("")
  smoke_config.data.text_file = str(empty)
  with pytest.raises(DataError, match="empty"):
    train.train_and_evaluate(smoke_config, str(tmp_path / "run"))
