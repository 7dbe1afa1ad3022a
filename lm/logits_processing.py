"""Choosing the next token: logits processors, then a strategy.

Each step of `lm.decoding.generate` turns the model's next-token logits [batch, vocab] into
a token in this documented order:
  1. processors, in the order given (penalties, no-repeat n-gram, banned/forced tokens,
     minimum length): each maps (logits, context) -> logits;
  2. the strategy: `Greedy()` takes the argmax; `Sample(...)` divides by the temperature,
     then keeps tokens by top-k, then top-p, then min-p, then typical-p (each filter sees the
     distribution the previous one left, renormalised) and draws from the softmax of what
     is left.
Every processor and strategy is a small frozen dataclass with one method; invalid
parameters raise ConfigError naming the parameter when the dataclass is built.
"""

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from lm.errors import ConfigError

NEG_INF = -jnp.inf


class Context(NamedTuple):
  """What processors may look at, at one decoding step.

  tokens: [batch, slots] int32, prompt (left-padded) and tokens generated so far.
  valid: [batch, slots] bool, True at real tokens (not padding, already written).
  step: int32 [], how many tokens have been generated (0 for the first new token).
  index: int32 [], the slot the next token goes to (the same for every row).
  stop_tokens: [batch, n] int32 padded with -1, each row's stop tokens.
  """
  tokens: jax.Array
  valid: jax.Array
  step: jax.Array
  index: jax.Array
  stop_tokens: jax.Array


def _check(ok: bool, message: str) -> None:
  if not ok:
    raise ConfigError(message)


def _counts(ctx: Context, vocab: int, only_generated_from=None):
  """[batch, vocab] float32: how often each token occurs among the valid tokens."""
  weight = ctx.valid.astype(jnp.float32)
  if only_generated_from is not None:
    slot = jnp.arange(ctx.tokens.shape[1])[None]
    weight = weight * (slot >= only_generated_from)
  rows = jnp.arange(ctx.tokens.shape[0])[:, None]
  return jnp.zeros((ctx.tokens.shape[0], vocab)).at[rows, ctx.tokens].add(weight)


# ---------------------------------------------------------------------------- processors


@dataclasses.dataclass(frozen=True)
class RepetitionPenalty:
  """CTRL (Keskar et al. 2019) as in HF: a token already in prompt or output has its logit
  divided by `penalty` if positive, multiplied by it if negative."""

  penalty: float

  def __post_init__(self):
    _check(self.penalty > 0, f"repetition_penalty={self.penalty} must be > 0")

  def __call__(self, logits, ctx: Context):
    seen = _counts(ctx, logits.shape[-1]) > 0
    penalised = jnp.where(logits > 0, logits / self.penalty, logits * self.penalty)
    return jnp.where(seen, penalised, logits)


@dataclasses.dataclass(frozen=True)
class PresenceFrequencyPenalty:
  """OpenAI's penalties over generated tokens only (not the prompt):
  logit - presence * [count > 0] - frequency * count."""

  presence: float = 0.0
  frequency: float = 0.0

  def __call__(self, logits, ctx: Context):
    prompt_slots = ctx.index - ctx.step  # Generated tokens fill the slots from here on.
    counts = _counts(ctx, logits.shape[-1], only_generated_from=prompt_slots)
    return logits - self.presence * (counts > 0) - self.frequency * counts


@dataclasses.dataclass(frozen=True)
class NoRepeatNgram:
  """Bans any token that would repeat an n-gram already in prompt or output (as HF)."""

  n: int

  def __post_init__(self):
    _check(self.n >= 1, f"no_repeat_ngram_size={self.n} must be >= 1")

  def __call__(self, logits, ctx: Context):
    n, slots = self.n, ctx.tokens.shape[1]
    clip = lambda i: jnp.clip(i, 0, slots - 1)  # noqa: E731
    # The window of n tokens starting at slot j must be real and already written; it
    # matches if its first n - 1 tokens equal the last n - 1 tokens, and then its last
    # token is banned.
    j = jnp.arange(slots)
    match = jnp.ones(ctx.tokens.shape, bool)
    for i in range(n):
      match &= (j + i < ctx.index)[None] & jnp.take(ctx.valid, clip(j + i), axis=1)
    for i in range(n - 1):
      s = ctx.index - (n - 1) + i  # Slot of the i-th token of the current suffix.
      suffix = jax.lax.dynamic_slice_in_dim(ctx.tokens, jnp.maximum(s, 0), 1, axis=1)
      real = jax.lax.dynamic_slice_in_dim(ctx.valid, jnp.maximum(s, 0), 1, axis=1) & (s >= 0)
      match &= (jnp.take(ctx.tokens, clip(j + i), axis=1) == suffix) & real
    rows = jnp.arange(logits.shape[0])[:, None]
    banned = jnp.zeros(logits.shape, bool).at[
        rows, jnp.take(ctx.tokens, clip(j + n - 1), axis=1)].max(match)
    return jnp.where(banned, NEG_INF, logits)


@dataclasses.dataclass(frozen=True)
class BannedTokens:
  """These token ids are never generated."""

  ids: tuple[int, ...]

  def __call__(self, logits, ctx: Context):
    del ctx
    return logits.at[:, jnp.asarray(self.ids, jnp.int32)].set(NEG_INF)


@dataclasses.dataclass(frozen=True)
class ForcedFirstToken:
  """The first generated token is `id` (e.g. a language tag or BOS)."""

  id: int

  def __call__(self, logits, ctx: Context):
    forced = jnp.full_like(logits, NEG_INF).at[:, self.id].set(0.0)
    return jnp.where(ctx.step == 0, forced, logits)


@dataclasses.dataclass(frozen=True)
class MinNewTokens:
  """Stop tokens are banned until `n` tokens have been generated."""

  n: int

  def __post_init__(self):
    _check(self.n >= 0, f"min_new_tokens={self.n} must be >= 0")

  def __call__(self, logits, ctx: Context):
    rows = jnp.arange(logits.shape[0])[:, None]
    stops = ctx.stop_tokens
    ban = jnp.zeros(logits.shape, bool).at[rows, jnp.maximum(stops, 0)].max(stops >= 0)
    return jnp.where(ban & (ctx.step < self.n), NEG_INF, logits)


# ---------------------------------------------------------------------------- filters


def keep_top_k(logits, k: int):
  """Keeps the k largest logits per row (ties with the k-th are kept too)."""
  k = min(k, logits.shape[-1])
  kth = jax.lax.top_k(logits, k)[0][..., -1:]
  return jnp.where(logits >= kth, logits, NEG_INF)


def _keep_smallest_set(logits, order, mass: float):
  """Keeps the tokens that come first in `order` ([batch, vocab] permutation) until their
  probability reaches `mass`; always at least one."""
  probs = jax.nn.softmax(logits, axis=-1)
  sorted_probs = jnp.take_along_axis(probs, order, axis=-1)
  before = jnp.cumsum(sorted_probs, axis=-1) - sorted_probs  # Mass strictly before each.
  keep_sorted = before < mass
  keep_sorted = keep_sorted.at[..., 0].set(True)
  rows = jnp.arange(logits.shape[0])[:, None]
  keep = jnp.zeros(logits.shape, bool).at[rows, order].set(keep_sorted)
  return jnp.where(keep, logits, NEG_INF)


def keep_top_p(logits, p: float):
  """Nucleus (Holtzman et al. 2020): the most likely tokens until their mass reaches p."""
  return _keep_smallest_set(logits, jnp.argsort(-logits, axis=-1), p)


def keep_min_p(logits, min_p: float):
  """Min-p (Nguyen et al. 2024): tokens with probability >= min_p * the top probability."""
  logp = jax.nn.log_softmax(logits, axis=-1)
  threshold = jnp.max(logp, axis=-1, keepdims=True) + jnp.log(min_p)
  return jnp.where(logp >= threshold, logits, NEG_INF)


def keep_typical_p(logits, mass: float):
  """Locally typical sampling (Meister et al. 2023): tokens whose surprisal is closest to the
  entropy, until their mass reaches `mass`."""
  logp = jax.nn.log_softmax(logits, axis=-1)
  p = jnp.exp(logp)
  entropy = -jnp.sum(jnp.where(p > 0, p * logp, 0.0), axis=-1, keepdims=True)
  distance = jnp.abs(-logp - entropy)
  distance = jnp.where(jnp.isfinite(logp), distance, jnp.inf)
  return _keep_smallest_set(logits, jnp.argsort(distance, axis=-1), mass)


# ---------------------------------------------------------------------------- strategies


@dataclasses.dataclass(frozen=True)
class Greedy:
  """The most likely token."""

  def __call__(self, logits, rng):
    """logits: [batch, vocab] -> [batch] int32."""
    del rng
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class Sample:
  """Random sampling from softmax(logits / temperature), restricted by the filters.

  None turns a filter off. temperature=0 is greedy.
  """

  temperature: float = 1.0
  top_k: int | None = None
  top_p: float | None = None
  min_p: float | None = None
  typical_p: float | None = None

  def __post_init__(self):
    _check(self.temperature >= 0, f"temperature={self.temperature} must be >= 0")
    _check(self.top_k is None or self.top_k >= 1, f"top_k={self.top_k} must be >= 1")
    _check(self.top_p is None or 0 < self.top_p <= 1, f"top_p={self.top_p} must be in (0, 1]")
    _check(self.min_p is None or 0 <= self.min_p <= 1, f"min_p={self.min_p} must be in [0, 1]")
    _check(self.typical_p is None or 0 < self.typical_p <= 1,
           f"typical_p={self.typical_p} must be in (0, 1]")

  def filtered_logits(self, logits):
    """[batch, vocab] logits of the distribution sampled from (-inf outside the filters)."""
    logits = logits / self.temperature
    if self.top_k is not None:
      logits = keep_top_k(logits, self.top_k)
    # p = 1 keeps everything by definition; skipping it also avoids float32 cumulative sums
    # reaching 1 before the tail and dropping tokens of tiny probability.
    if self.top_p is not None and self.top_p < 1:
      logits = keep_top_p(logits, self.top_p)
    if self.min_p is not None and self.min_p > 0:
      logits = keep_min_p(logits, self.min_p)
    if self.typical_p is not None and self.typical_p < 1:
      logits = keep_typical_p(logits, self.typical_p)
    return logits

  def __call__(self, logits, rng):
    """logits: [batch, vocab] -> [batch] int32."""
    if self.temperature == 0:
      return Greedy()(logits, rng)
    return jax.random.categorical(rng, self.filtered_logits(logits)).astype(jnp.int32)


def strategy(name: str, *, temperature: float = 1.0, top_k=None, top_p=None, min_p=None,
             typical_p=None):
  """A strategy by name: 'greedy' or 'sample' (with the given temperature and filters)."""
  if name == "greedy":
    return Greedy()
  if name == "sample":
    return Sample(temperature, top_k, top_p, min_p, typical_p)
  raise ConfigError(f"strategy={name!r}: expected 'greedy', 'sample' or 'beam'")
