"""A plain temperature sampler over a fixed window (the decoding library replaces it).

Every step runs the full forward pass over the last `max_len` tokens; one compiled loop
serves any prompt length because the window has a fixed size.
"""

import functools

import jax
import jax.numpy as jnp

from lm.models.decoder import Decoder


@functools.partial(jax.jit, static_argnames=("model", "num_tokens"))
def _generate(params, window, length, rng, temperature, *, model, num_tokens):
  """window: [max_len] int32 holding the prompt's last `length` tokens left-aligned."""
  max_len = window.shape[0]

  def step(carry, key):
    window, length = carry
    logits, _ = model.apply({"params": params}, window[None])
    logits = logits[0, length - 1]
    greedy = jnp.argmax(logits)
    sampled = jax.random.categorical(key, logits / jnp.maximum(temperature, 1e-6))
    token = jnp.where(temperature > 0, sampled, greedy).astype(jnp.int32)
    full = length == max_len
    # When the window is full, slide it left by one and write at the end.
    window = jnp.where(full, jnp.roll(window, -1), window)
    window = window.at[jnp.where(full, max_len - 1, length)].set(token)
    return (window, jnp.minimum(length + 1, max_len)), token

  _, tokens = jax.lax.scan(step, (window, length), jax.random.split(rng, num_tokens))
  return tokens


def sample(params, model_cfg, prompt: list[int], *, num_tokens: int, temperature: float,
           rng) -> list[int]:
  """`num_tokens` new token ids continuing `prompt` (temperature 0: greedy)."""
  if not prompt:
    raise ValueError("the prompt must have at least one token")
  context = prompt[-model_cfg.max_len:]
  window = jnp.zeros((model_cfg.max_len,), jnp.int32).at[:len(context)].set(
      jnp.asarray(context, jnp.int32))
  out = _generate(params, window, jnp.int32(len(context)), rng, jnp.float32(temperature),
                  model=Decoder(model_cfg), num_tokens=num_tokens)
  return [int(t) for t in out]
