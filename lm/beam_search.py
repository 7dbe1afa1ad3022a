"""Beam search over a `lm.decoding.Model`, with length penalty and early stopping.

Scores follow HF transformers: a finished hypothesis (ended by a stop token, or still alive
after `max_new_tokens`) scores sum(log p) / length ** length_penalty, length counting the
new tokens. Each step expands the `beam_size` alive beams of every prompt, keeps the best
2 * beam_size candidates, moves those ending in a stop token into a pool of `beam_size`
finished hypotheses and keeps the best `beam_size` others alive (as flax's wmt/lm1b decode
and HF's BeamSearchScorer). A prompt is done when
  early_stopping=True: its pool holds beam_size hypotheses;
  early_stopping=False: also no alive beam can still beat the pool's worst member.
Logits processors are not applied here.
"""

import functools
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from lm import decoding
from lm.errors import ConfigError

_NEG = -1e30  # Finite "minus infinity", so differences and comparisons stay defined.


class BeamOutput(NamedTuple):
  """tokens: [batch, beam, max_new_tokens] best first, pad_id after the end; scores:
  [batch, beam] length-penalised log-probabilities; lengths: [batch, beam]."""

  tokens: Any
  scores: Any
  lengths: Any

  def best(self) -> list[list[int]]:
    return [self.tokens[i, 0, :self.lengths[i, 0]].tolist() for i in range(len(self.tokens))]


def _gather_beams(x, index):
  """x: [batch, beams, ...], index: [batch, n] -> [batch, n, ...]."""
  return jnp.take_along_axis(x, index.reshape(index.shape + (1,) * (x.ndim - 2)), axis=1)


@functools.partial(jax.jit, static_argnames=("beam_size", "max_new_tokens", "length_penalty",
                                             "early_stopping", "pad_id"))
def _beam_search(model, prompt, start, stop_tokens, *, beam_size, max_new_tokens,
                 length_penalty, early_stopping, pad_id):
  b, prompt_len = prompt.shape
  k, steps = beam_size, max_new_tokens
  lp = lambda length: jnp.maximum(length, 1).astype(jnp.float32) ** length_penalty  # noqa
  cache = model.init_cache(start, prompt_len + steps - 1)
  logits, cache = model.tokens_to_logits(prompt, cache)
  # Prefill once per prompt, then copy its cache to the beams: [b, ...] -> [b * k, ...].
  cache = jax.tree.map(lambda x: jnp.repeat(x, k, axis=0) if x.ndim else x, cache)
  logits = jnp.repeat(logits[:, -1], k, axis=0)
  stops = stop_tokens[:, None, :]  # [b, 1, n]

  def step(s):
    i, logits, cache, seqs, alive, fin_seqs, fin_scores, fin_lens, done = s
    vocab = logits.shape[-1]
    cand = alive[:, :, None] + jax.nn.log_softmax(logits).reshape(b, k, vocab)
    values, flat = jax.lax.top_k(cand.reshape(b, k * vocab), 2 * k)  # [b, 2k]
    beam, token = flat // vocab, (flat % vocab).astype(jnp.int32)
    cand_seqs = _gather_beams(seqs, beam).at[:, :, i].set(token)  # [b, 2k, steps]
    is_stop = jnp.any(token[..., None] == stops, -1) & (values > _NEG / 2)
    # Finished pool: merge the stopped candidates, keep the best k (unless the row is done).
    score = jnp.where(is_stop, values / lp(i + 1), _NEG)
    all_scores = jnp.concatenate([fin_scores, score], 1)
    top, pick = jax.lax.top_k(all_scores, k)
    all_seqs = jnp.concatenate([fin_seqs, cand_seqs], 1)
    all_lens = jnp.concatenate([fin_lens, jnp.full((b, 2 * k), i + 1)], 1)
    keep = done[:, None]
    fin_scores = jnp.where(keep, fin_scores, top)
    fin_seqs = jnp.where(keep[..., None], fin_seqs, _gather_beams(all_seqs, pick))
    fin_lens = jnp.where(keep, fin_lens, jnp.take_along_axis(all_lens, pick, 1))
    # Alive beams: the best k candidates that did not stop.
    alive, pick = jax.lax.top_k(jnp.where(is_stop, _NEG, values), k)
    seqs = _gather_beams(cand_seqs, pick)
    origin = (jnp.arange(b)[:, None] * k + jnp.take_along_axis(beam, pick, 1)).reshape(-1)
    cache = jax.tree.map(lambda x: x[origin] if x.ndim else x, cache)
    # Done: a full pool, and (early_stopping=False) no alive beam able to beat its worst.
    full = fin_scores[:, -1] > _NEG / 2
    if early_stopping:
      done = done | full
    else:
      # Log-probs only fall; with length_penalty > 0 the best an alive beam can still reach
      # is its score at the longest length, else at the next length.
      best_length = steps if length_penalty > 0 else i + 2
      done = done | (full & (alive[:, 0] / lp(best_length) <= fin_scores[:, -1]))
    return (i + 1, logits, cache, seqs, alive, fin_seqs, fin_scores, fin_lens, done)

  def body(s):
    i, cache, seqs = s[0], s[2], s[3]
    last = jax.lax.dynamic_slice_in_dim(seqs, i - 1, 1, axis=2).reshape(b * k, 1)
    logits, cache = model.tokens_to_logits(last, cache)
    return step((i, logits[:, -1], cache) + s[3:])

  seqs = jnp.full((b, k, steps), pad_id, jnp.int32)
  alive = jnp.tile(jnp.array([0.0] + [_NEG] * (k - 1)), (b, 1))  # Only beam 0 starts.
  s = step((jnp.zeros((), jnp.int32), logits, cache, seqs, alive, seqs,
            jnp.full((b, k), _NEG), jnp.zeros((b, k), jnp.int32), jnp.zeros((b,), bool)))
  s = jax.lax.while_loop(lambda s: (s[0] < steps) & ~jnp.all(s[-1]), body, s)
  i, _, _, seqs, alive, fin_seqs, fin_scores, fin_lens, done = s
  # Rows not done: their alive beams compete with the finished ones at their length.
  alive_scores = jnp.where(done[:, None], _NEG, alive / lp(i))
  scores, pick = jax.lax.top_k(jnp.concatenate([fin_scores, alive_scores], 1), k)
  tokens = _gather_beams(jnp.concatenate([fin_seqs, seqs], 1), pick)
  lengths = jnp.take_along_axis(
      jnp.concatenate([fin_lens, jnp.full((b, k), i, jnp.int32)], 1), pick, 1)
  return BeamOutput(tokens, scores, lengths)


def beam_search(model: decoding.Model, prompts: Sequence[Sequence[int]], *, beam_size: int,
                max_new_tokens: int, length_penalty: float = 1.0, early_stopping: bool = True,
                stop_tokens=None, pad_id: int = 0) -> BeamOutput:
  """The `beam_size` best continuations of each prompt, best first (see module doc).

  stop_tokens: one list for all prompts or one per prompt.
  """
  if beam_size < 1:
    raise ConfigError(f"beam_size={beam_size} must be >= 1")
  decoding.check_lengths([len(p) for p in prompts], max_new_tokens, model.max_len)
  tokens, start = decoding.left_pad(prompts, pad_id)
  stops, _ = decoding.stop_arrays(
      decoding.per_row(stop_tokens, len(prompts), 1, "stop_tokens"), [[]] * len(prompts))
  out = _beam_search(decoding._as_model(model), tokens, start, stops, beam_size=beam_size,
                     max_new_tokens=max_new_tokens, length_penalty=float(length_penalty),
                     early_stopping=early_stopping, pad_id=pad_id)
  return BeamOutput(*jax.device_get(out))
