"""The pure, jittable train and eval steps shared by every training stage.

    step_fn = jax.jit(functools.partial(train_step, model=..., optimizer=..., loss_fn=...,
                                        accum_steps=...), donate_argnames="state")
    state, metrics = step_fn(state, batch)

The state is a plain dict {'step', 'params', 'opt_state', 'rng'} so orbax saves it as is.
A batch is a dict of [batch, length] arrays: 'inputs', 'targets', 'weights' (and optionally
'positions', 'segment_ids' for the model, and 'reference_logprobs' [batch] for preference
losses, see `lm.losses.preference`).
"""

import jax
import jax.numpy as jnp
import optax

_MODEL_INPUTS = ("positions", "segment_ids", "padding_mask", "type_ids", "decoder_inputs")
_LOSS_INPUTS = ("reference_logprobs",)


def create_state(params, optimizer: optax.GradientTransformation, rng) -> dict:
  """A fresh train state at step 0. `rng` is a raw uint32 key (orbax saves it as an array)."""
  return {"step": jnp.zeros((), jnp.int32), "params": params,
          "opt_state": optimizer.init(params), "rng": rng}


def _forward_sums(params, batch, rng, *, model, loss_fn, deterministic):
  extra = {k: batch[k] for k in _MODEL_INPUTS if k in batch}
  logits, _ = model.apply({"params": params}, batch["inputs"], deterministic=deterministic,
                          rngs={"dropout": rng}, **extra)
  extra = {k: batch[k] for k in _LOSS_INPUTS if k in batch}
  sums = loss_fn(logits=logits, targets=batch["targets"], weights=batch["weights"], **extra)
  return sums["loss_sum"], sums


def _tree_add(a, b):
  return jax.tree.map(jnp.add, a, b)


def train_step(state: dict, batch: dict, *, model, optimizer, loss_fn, accum_steps: int = 1,
               skip_nonfinite: bool = False, inject_nonfinite_at: int | None = None):
  """One optimizer update from `batch`, split into `accum_steps` micro-batches.

  Gradients of the loss *sums* are added over micro-batches and divided once by the total
  weight, so k micro-batches with uneven padding give exactly the update of one big batch.

  Args:
    skip_nonfinite: if the loss or gradient norm is not finite, keep params and optimizer
      state unchanged (the step counter still advances) and report it in 'nonfinite'.
    inject_nonfinite_at: for tests of the above: make the gradients of this (1-based) step NaN.

  Returns:
    The new state and metric sums (see `lm.losses.cross_entropy`) plus 'grad_norm_sum',
    'steps' and 'nonfinite' (1.0 on a step whose loss or gradients were not finite), all
    sums the host can add over steps. A skipped step contributes zeros to the loss sums.
  """
  rng = jax.random.fold_in(state["rng"], state["step"])
  grad_fn = jax.grad(_forward_sums, has_aux=True)
  kwargs = dict(model=model, loss_fn=loss_fn, deterministic=False)
  if accum_steps == 1:
    grads, sums = grad_fn(state["params"], batch, rng, **kwargs)
  else:
    # Micro-batch i is rows i, i + k, i + 2k, ... (k = accum_steps): with the batch split
    # in contiguous blocks over devices, every device holds an equal share of every
    # micro-batch, so the split needs no communication under a mesh.
    micro = jax.tree.map(lambda x: x.reshape(-1, accum_steps, *x.shape[1:]).swapaxes(0, 1),
                         batch)

    def body(carry, xs):
      mb, i = xs
      g, s = grad_fn(state["params"], mb, jax.random.fold_in(rng, i), **kwargs)
      return _tree_add(carry, (g, s)), None

    first = jax.tree.map(lambda x: x[0], micro)
    zeros = jax.tree.map(jnp.zeros_like,
                         jax.eval_shape(lambda: grad_fn(state["params"], first, rng, **kwargs)))
    (grads, sums), _ = jax.lax.scan(body, zeros, (micro, jnp.arange(accum_steps)))
  total = sums["weight_sum"]
  grads = jax.tree.map(lambda g: jnp.where(total > 0, g / jnp.maximum(total, 1e-30), 0.0),
                       grads)
  if inject_nonfinite_at is not None:
    bad = state["step"] + 1 == inject_nonfinite_at
    grads = jax.tree.map(lambda g: jnp.where(bad, jnp.nan, g), grads)
    sums = dict(sums, loss_sum=jnp.where(bad, jnp.nan, sums["loss_sum"]))
  grad_norm = optax.global_norm(grads)
  finite = jnp.isfinite(sums["loss_sum"]) & jnp.isfinite(grad_norm)
  updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
  params = optax.apply_updates(state["params"], updates)
  if skip_nonfinite:
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
    params, opt_state = keep(params, state["params"]), keep(opt_state, state["opt_state"])
    sums = jax.tree.map(lambda x: jnp.where(finite, x, 0.0), sums)
    grad_norm = jnp.where(finite, grad_norm, 0.0)
  metrics = dict(sums, grad_norm_sum=grad_norm, steps=finite.astype(jnp.float32),
                 nonfinite=1.0 - finite.astype(jnp.float32))
  new_state = {"step": state["step"] + 1, "params": params, "opt_state": opt_state,
               "rng": state["rng"]}
  return new_state, metrics


def eval_step(params, batch: dict, *, model, loss_fn) -> dict:
  """Metric sums of one batch, without dropout."""
  _, sums = _forward_sums(params, batch, jax.random.PRNGKey(0), model=model, loss_fn=loss_fn,
                          deterministic=True)
  return sums
