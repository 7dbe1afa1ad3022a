"""Autoregressive decoding shared by every model family; it knows nothing about the model.

A model is seen only through `Model`: a `tokens_to_logits(tokens, cache) -> (logits, cache)`
callback and an `init_cache(start, slots)` that makes its empty cache (for a Decoder:
`lm.models.decoder.decoding_model(cfg, params)`). Decoding a batch of prompts is

  1. left-pad the prompts to the longest one (row i's real tokens start at slot start[i]);
  2. prefill: one call on the whole padded prompt [batch, P] fills the cache;
  3. one call per new token ([batch, 1]) inside a `lax.while_loop` that stops when every
     row has hit a stop token or stop sequence, or after `max_new_tokens`.

Left padding (rather than per-row write positions) is chosen so that every row's last
prompt token is in the last column and every row writes its next token into the same cache
slot: prefill reads the next-token logits from one column and each step is one
dynamic_update_slice with a scalar index, identical for all rows. The model side turns
`start` into per-row positions (slot - start) and masks the padding, so a padded row sees
exactly what it would see alone (tests/test_decoding.py checks this to 1e-5).

The cache holds P + max_new_tokens - 1 slots: the last generated token is never fed back.

How the next token is chosen (processors, temperature, filters, greedy or sampling) lives
in lm/logits_processing.py; beam search in lm/beam_search.py; scoring given continuations
(e.g. prompting a decoder as a sentiment classifier) in lm/scoring.py.
"""

import functools
from typing import Any, Callable, NamedTuple, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from lm.errors import ConfigError
from lm.logits_processing import Context, Greedy, Sample  # noqa: F401  (re-exported)


@flax.struct.dataclass
class Model:
  """What decoding needs from a model.

  tokens_to_logits: (tokens [batch, length] int32, cache) -> (logits [batch, length, vocab]
    float32, cache). A pytree (e.g. `jax.tree_util.Partial(fn, params)`) so that params are
    arguments of the compiled loop, not constants; a plain function works too but then every
    new function object compiles anew.
  init_cache: (start [batch] int32, slots: int) -> an empty cache. Every cache leaf with
    ndim >= 1 must have the batch as its leading axis (beam search reorders it).
  max_len: longest sequence the model can position (prompt + new tokens - 1); None: any.
  """

  tokens_to_logits: Callable
  init_cache: Callable = flax.struct.field(pytree_node=False)
  max_len: int | None = flax.struct.field(pytree_node=False)
  vocab_size: int = flax.struct.field(pytree_node=False)


class Output(NamedTuple):
  """tokens: [batch, max_new_tokens] int32, `pad_id` after each row ends.
  logprobs: [batch, max_new_tokens] float32, the model's log-probability of each token
    (log-softmax of the raw logits, before processors and temperature); 0 after the end.
  lengths: [batch] int32, new tokens per row, counting the stop token or sequence."""

  tokens: Any
  logprobs: Any
  lengths: Any

  def lists(self) -> list[list[int]]:
    """Each row's new tokens as a list, up to its length."""
    tokens, lengths = np.asarray(self.tokens), np.asarray(self.lengths)
    return [tokens[i, :lengths[i]].tolist() for i in range(len(tokens))]


# ---------------------------------------------------------------------------- inputs


def _as_model(model: Model) -> Model:
  if not isinstance(model.tokens_to_logits, jax.tree_util.Partial):
    model = model.replace(tokens_to_logits=jax.tree_util.Partial(model.tokens_to_logits))
  return model


def check_lengths(prompt_lengths: Sequence[int], max_new_tokens: int,
                  max_len: int | None) -> None:
  """ConfigError unless every prompt is non-empty and prompt + new tokens fit the model."""
  if max_new_tokens < 1:
    raise ConfigError(f"max_new_tokens={max_new_tokens} must be >= 1")
  if not prompt_lengths:
    raise ConfigError("no prompts given")
  for i, n in enumerate(prompt_lengths):
    if n == 0:
      raise ConfigError(f"prompt {i} is empty: give at least one token (e.g. a BOS token)")
    if max_len is not None and n > max_len:
      raise ConfigError(f"prompt {i} has {n} tokens, longer than the model's context "
                        f"(max_len={max_len})")
  longest = max(prompt_lengths)
  if max_len is not None and longest + max_new_tokens - 1 > max_len:
    raise ConfigError(f"longest prompt ({longest} tokens) + max_new_tokens={max_new_tokens} "
                      f"- 1 exceeds the model's max_len={max_len}: lower max_new_tokens to "
                      f"{max_len - longest + 1} or shorten the prompt")


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int = 0):
  """(tokens [batch, longest] int32 with each prompt right-aligned, start [batch] int32)."""
  longest = max(len(p) for p in prompts)
  tokens = np.full((len(prompts), longest), pad_id, np.int32)
  start = np.zeros(len(prompts), np.int32)
  for i, p in enumerate(prompts):
    start[i] = longest - len(p)
    tokens[i, start[i]:] = p
  return tokens, start


def _depth(x) -> int:
  d = 0
  while isinstance(x, (list, tuple)):
    if not x:
      return d + 1
    x, d = x[0], d + 1
  return d


def per_row(value, batch: int, depth: int, name: str) -> list:
  """`value` given once for all rows (nesting `depth`) or per row (depth + 1), as a list of
  `batch` per-row values."""
  if value is None:
    return [[] for _ in range(batch)]
  d = _depth(value)
  if d == depth or (d == 1 and not value):
    return [list(value)] * batch
  if d == depth + 1 and len(value) == batch:
    return [list(v) for v in value]
  raise ConfigError(f"{name} must be given once for all {batch} prompts or once per prompt")


def stop_arrays(stop_tokens: list, stop_sequences: list):
  """Per-row stops as arrays: [batch, n] -1-padded and [batch, m, L] left-padded with -1."""
  batch = len(stop_tokens)
  n = max(1, max(len(s) for s in stop_tokens))
  tokens = np.full((batch, n), -1, np.int32)
  for i, s in enumerate(stop_tokens):
    tokens[i, :len(s)] = s
  m = max(1, max(len(s) for s in stop_sequences))
  longest = max([1] + [len(q) for s in stop_sequences for q in s])
  seqs = np.full((batch, m, longest), -1, np.int32)
  for i, s in enumerate(stop_sequences):
    for j, q in enumerate(s):
      if not q:
        raise ConfigError(f"stop sequence {j} of prompt {i} is empty")
      seqs[i, j, longest - len(q):] = q
  return tokens, seqs


# ---------------------------------------------------------------------------- the loop


def _ends_with_stop(buffer, index, start, stop_sequences):
  """[batch] bool: the tokens up to slot `index` end with one of the row's stop sequences.

  buffer: [batch, slots]; stop_sequences: [batch, m, L] left-padded with -1 (don't care).
  """
  length = stop_sequences.shape[-1]
  slot = index - length + 1 + jnp.arange(length)  # [L]
  window = jnp.take(buffer, jnp.clip(slot, 0, buffer.shape[1] - 1), axis=1)  # [batch, L]
  real = (slot[None] >= start[:, None])
  equal = (window[:, None] == stop_sequences) & real[:, None]
  match = jnp.all((stop_sequences < 0) | equal, -1) & jnp.any(stop_sequences >= 0, -1)
  return jnp.any(match, -1)


class _State(NamedTuple):
  step: Any  # int32 [], tokens generated so far.
  logits: Any  # [batch, vocab], the model's logits for the next token.
  cache: Any
  buffer: Any  # [batch, P + max_new_tokens] prompt and new tokens.
  logprobs: Any  # [batch, max_new_tokens]
  done: Any  # [batch] bool
  lengths: Any  # [batch] int32


@functools.partial(jax.jit, static_argnames=("max_new_tokens", "strategy", "processors",
                                             "pad_id"))
def _generate(model, prompt, start, stop_tokens, stop_sequences, rng, *, max_new_tokens,
              strategy, processors, pad_id):
  batch, prompt_len = prompt.shape
  cache = model.init_cache(start, prompt_len + max_new_tokens - 1)
  logits, cache = model.tokens_to_logits(prompt, cache)
  buffer = jnp.concatenate(
      [prompt, jnp.full((batch, max_new_tokens), pad_id, jnp.int32)], axis=1)
  slot = jnp.arange(buffer.shape[1])[None]

  def choose(s: _State) -> _State:
    index = prompt_len + s.step
    ctx = Context(tokens=s.buffer, valid=(slot >= start[:, None]) & (slot < index),
                  step=s.step, index=index, stop_tokens=stop_tokens)
    x = s.logits
    for p in processors:
      x = p(x, ctx)
    token = strategy(x, jax.random.fold_in(rng, s.step))
    logprob = jnp.take_along_axis(jax.nn.log_softmax(s.logits), token[:, None], -1)[:, 0]
    token = jnp.where(s.done, pad_id, token)
    buffer = jax.lax.dynamic_update_slice(s.buffer, token[:, None], (0, index))
    stopped = (jnp.any(token[:, None] == stop_tokens, -1)
               | _ends_with_stop(buffer, index, start, stop_sequences))
    return _State(
        step=s.step + 1, logits=s.logits, cache=s.cache, buffer=buffer,
        logprobs=s.logprobs.at[:, s.step].set(jnp.where(s.done, 0.0, logprob)),
        done=s.done | stopped, lengths=s.lengths + ~s.done)

  def body(s: _State) -> _State:
    last = jax.lax.dynamic_slice_in_dim(s.buffer, prompt_len + s.step - 1, 1, axis=1)
    logits, cache = model.tokens_to_logits(last, s.cache)
    return choose(s._replace(logits=logits[:, -1], cache=cache))

  state = choose(_State(
      step=jnp.zeros((), jnp.int32), logits=logits[:, -1], cache=cache, buffer=buffer,
      logprobs=jnp.zeros((batch, max_new_tokens), jnp.float32),
      done=jnp.zeros((batch,), bool), lengths=jnp.zeros((batch,), jnp.int32)))
  state = jax.lax.while_loop(lambda s: (s.step < max_new_tokens) & ~jnp.all(s.done), body,
                             state)
  return Output(tokens=state.buffer[:, prompt_len:], logprobs=state.logprobs,
                lengths=state.lengths)


def generate(model: Model, prompts: Sequence[Sequence[int]], *, max_new_tokens: int,
             strategy=Greedy(), processors: Sequence = (), rng=None, stop_tokens=None,
             stop_sequences=None, pad_id: int = 0) -> Output:
  """Continues each prompt by up to `max_new_tokens` tokens.

  Args:
    model: see `Model`.
    prompts: token id lists, of any lengths (each >= 1).
    strategy: `Greedy()` or `Sample(temperature, top_k, top_p, min_p, typical_p)`.
    processors: applied in order before the strategy (lm/logits_processing.py).
    rng: a PRNG key (needed by `Sample`); the same key gives the same tokens.
    stop_tokens: ids ending a row (included in its output), one list for all rows or a
      list per row.
    stop_sequences: token lists ending a row when the text so far ends with one, one list
      of sequences for all rows or one per row.
    pad_id: written after a row ends and used to left-pad prompts.

  Returns:
    `Output` (tokens [batch, max_new_tokens], logprobs, lengths).
  """
  check_lengths([len(p) for p in prompts], max_new_tokens, model.max_len)
  tokens, start = left_pad(prompts, pad_id)
  stops, seqs = stop_arrays(per_row(stop_tokens, len(prompts), 1, "stop_tokens"),
                            per_row(stop_sequences, len(prompts), 2, "stop_sequences"))
  if rng is None:
    if not isinstance(strategy, Greedy) and not (isinstance(strategy, Sample)
                                                 and strategy.temperature == 0):
      raise ConfigError("sampling needs an rng (a PRNG key)")
    rng = jax.random.PRNGKey(0)
  return _generate(_as_model(model), tokens, start, stops, seqs, rng,
                   max_new_tokens=max_new_tokens, strategy=strategy,
                   processors=tuple(processors), pad_id=pad_id)


def best_of_n(model: Model, prompts: Sequence[Sequence[int]], *, n: int, rng, **kwargs):
  """Draws `n` samples per prompt; keeps the one with the highest total log-probability.

  kwargs are those of `generate` (stop_tokens/stop_sequences given once for all rows).
  Returns (best `Output` [batch, ...], all `Output` [batch * n, ...] with the samples of
  prompt i in rows i * n .. i * n + n - 1, scores [batch, n] float32).
  """
  if n < 1:
    raise ConfigError(f"num_samples={n} must be >= 1")
  for name in ("stop_tokens", "stop_sequences"):
    value = kwargs.get(name)
    if value is not None and _depth(value) == {"stop_tokens": 1, "stop_sequences": 2}[name] + 1:
      kwargs[name] = [row for row in value for _ in range(n)]
  every = generate(model, [p for p in prompts for _ in range(n)], rng=rng, **kwargs)
  scores = every.logprobs.sum(-1).reshape(len(prompts), n)
  best = jnp.arange(len(prompts)) * n + jnp.argmax(scores, axis=-1)
  return Output(*(x[best] for x in every)), every, scores


def continue_text(model: Model, prompt: Sequence[int], *, num_tokens: int, strategy, rng,
                  **kwargs) -> list[int]:
  """`num_tokens` new tokens continuing one prompt, even past the model's context.

  When the context is full, the last half of it becomes the prompt of a fresh prefill (the
  usual way to sample long text from a fixed-context model with a KV cache). With
  max_len=None it is one `generate` call.
  """
  if not prompt:
    raise ConfigError("the prompt is empty: give at least one token")
  max_len = model.max_len
  out, text = [], list(prompt)
  while len(out) < num_tokens:
    want = num_tokens - len(out)
    if max_len is not None:
      text = text[-(max_len if not out else max_len // 2):]
      want = min(want, max_len - len(text) + 1)
    new = generate(model, [text], max_new_tokens=want, strategy=strategy,
                   rng=jax.random.fold_in(rng, len(out)), **kwargs).lists()[0]
    out += new
    text += new
    if len(new) < want:
      break  # Stopped by a stop token or sequence.
  return out
