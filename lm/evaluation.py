"""Scoring text under a language model: log-probabilities, perplexity, bits per byte.

Everything here scores through one callback, `Scorer`:

    scorer(inputs [batch, length] int32, targets [batch, length] int32)
      -> [batch, length] float32, log p(targets[b, i] | inputs[b, :i + 1])

`decoder_scorer` makes one from this project's decoder; an imported model (Hugging Face)
or a toy in a test gives another. Long texts are cut into windows of the model's length:
`Protocol` names how (disjoint windows score every token once with lm-evaluation-harness's
rolling semantics; a stride below the window gives every scored token more context) and
what precedes the first token, and is written beside every number it produced.
"""

import dataclasses
import functools
import math
from typing import Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lm import metrics, sharding, steps
from lm.data import windows
from lm.errors import ConfigError, DataError

Scorer = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclasses.dataclass(frozen=True)
class Protocol:
  """How a long text is scored.

  window: tokens the model sees per forward pass (<= its maximum length).
  stride: None: disjoint windows (each token scored once, with 0..window-1 tokens of
    context). s < window: windows start every s tokens and each scores only its last s
    targets (the first scores all), so every token after the first window sees >= window - s
    earlier tokens.
  prefix: a special token (e.g. '<eos>', '<bos>') put before the text so that its first token
    is scored too; None: the first token only conditions.
  """

  window: int
  stride: int | None = None
  prefix: str | None = None

  def __post_init__(self):
    if self.window < 1:
      raise ConfigError(f"evaluation window={self.window} must be positive")
    if self.stride is not None and not 1 <= self.stride <= self.window:
      raise ConfigError(f"evaluation stride={self.stride} must be in [1, window={self.window}]")

  def describe(self) -> str:
    how = ("disjoint windows (every token scored once)" if self.stride in (None, self.window)
           else f"sliding windows, stride {self.stride}")
    first = (f"text starts after {self.prefix} (first token scored)" if self.prefix
             else "no BOS (first token of the text not scored)")
    return f"window {self.window} tokens, {how}, {first}"

  def to_dict(self) -> dict:
    return {**dataclasses.asdict(self), "description": self.describe()}


def window_batches(tokens: Sequence[int], protocol: Protocol,
                   batch_size: int) -> Iterator[dict[str, np.ndarray]]:
  """Batches of windows scoring every target token (tokens[1:]) exactly once.

  Yields inputs, targets [batch_size, window] int32 and weights [batch_size, window] float32
  (1 where a target is scored; padding rows and slots are 0).
  """
  tokens = np.asarray(tokens, np.int32)
  n, w = len(tokens), protocol.window
  stride = protocol.stride or w
  if n < 2:
    raise DataError(f"need at least 2 tokens to score (the first only conditions), got {n}")
  # Window j reads inputs tokens[j*stride : j*stride + w]; it scores targets at positions
  # (prev_end, j*stride + w], where prev_end is the last target of window j - 1.
  num_windows = 1 + max(0, -(-(n - 1 - w) // stride))
  offsets = np.arange(w + 1)
  for first in range(0, num_windows, batch_size):
    j = np.arange(first, first + batch_size)[:, None]
    positions = j * stride + offsets  # [batch, w + 1]; targets are positions[:, 1:].
    valid = positions < n
    chunk = np.where(valid, tokens[np.minimum(positions, n - 1)], windows.PAD_ID)
    target_pos = positions[:, 1:]
    prev_end = np.where(j == 0, 0, (j - 1) * stride + w)
    scored = valid[:, 1:] & (target_pos > prev_end) & (j < num_windows)
    yield {"inputs": chunk[:, :-1].astype(np.int32), "targets": chunk[:, 1:].astype(np.int32),
           "weights": scored.astype(np.float32)}


def token_logprob_sum(scorer: Scorer, tokens: Sequence[int], protocol: Protocol, *,
                      batch_size: int = 32) -> tuple[float, int]:
  """(sum of log p over the scored tokens, number of scored tokens) of `tokens` [n]."""
  total, count = 0.0, 0
  for batch in window_batches(tokens, protocol, batch_size):
    logp = np.asarray(scorer(batch["inputs"], batch["targets"]), np.float64)
    total += float(np.sum(logp * batch["weights"]))
    count += int(batch["weights"].sum())
  return total, count


def text_metrics(scorer: Scorer, tokenizer, text: str, protocol: Protocol, *,
                 batch_size: int = 32) -> dict:
  """Log-probability of `text` and its normalisations.

  Returns logprob (nats, summed over scored tokens), tokens, bytes (UTF-8 of `text`), words
  (whitespace-separated), perplexity = exp(-logprob / tokens), bits_per_byte =
  -logprob / (bytes ln 2), word_perplexity = exp(-logprob / words), nll = -logprob / tokens.
  Per-token perplexity depends on the tokenizer; bits per byte and per-word perplexity
  divide the same total by a count of the text itself, so they compare across tokenizers.
  """
  ids = tokenizer.encode(text)
  if protocol.prefix is not None:
    if protocol.prefix not in tokenizer.special_ids:
      raise ConfigError(f"evaluation prefix {protocol.prefix!r} is not a special token of this "
                        f"tokenizer (it has {sorted(tokenizer.special_ids) or 'none'})")
    ids = [tokenizer.special_ids[protocol.prefix]] + ids
  logprob, count = token_logprob_sum(scorer, ids, protocol, batch_size=batch_size)
  return summarize(logprob, count, num_bytes=len(text.encode("utf-8")),
                   num_words=len(text.split()), protocol=protocol)


def summarize(logprob: float, tokens: int, *, num_bytes: int, num_words: int,
              protocol: Protocol | None = None) -> dict:
  """The normalised forms of a total log-probability (see `text_metrics`)."""
  out = {"logprob": logprob, "tokens": tokens, "bytes": num_bytes, "words": num_words,
         "nll": -logprob / tokens, "perplexity": _exp(-logprob / tokens),
         "bits_per_byte": -logprob / (num_bytes * math.log(2)),
         "word_perplexity": _exp(-logprob / num_words) if num_words else float("nan")}
  if protocol is not None:
    out["protocol"] = protocol.to_dict()
  return out


def _exp(x: float) -> float:
  return math.exp(min(x, 700.0))


def decoder_scorer(model, params) -> Scorer:
  """A `Scorer` for a linen model returning (logits, aux): one jitted forward, no dropout."""

  @jax.jit
  def score(params, inputs, targets):
    logits, _ = model.apply({"params": params}, inputs, deterministic=True)
    logp = jax.nn.log_softmax(logits.astype(jnp.float32))
    return jnp.take_along_axis(logp, targets[..., None], -1)[..., 0]

  return lambda inputs, targets: np.asarray(score(params, inputs, targets))


def continuation_logprobs(scorer: Scorer, requests: Sequence[tuple[Sequence[int], Sequence[int]]],
                          *, max_len: int, batch_size: int = 32) -> list[float]:
  """For each (context ids, continuation ids): log p(continuation | context), summed.

  Each request is one row of `max_len` slots, right-padded; a context too long for the row
  loses its oldest tokens, and a continuation longer than the row has only its last
  `max_len` tokens scored (lm-evaluation-harness does the same).
  """
  rows = []
  for ctx, cont in requests:
    if not ctx or not cont:
      raise DataError("a scoring request needs a non-empty context and continuation")
    ids = (list(ctx) + list(cont))[-(max_len + 1):]
    rows.append((ids, min(len(cont), max_len)))
  out = []
  for first in range(0, len(rows), batch_size):
    chunk = rows[first:first + batch_size]
    inputs = np.full((batch_size, max_len), windows.PAD_ID, np.int32)
    targets = np.full((batch_size, max_len), windows.PAD_ID, np.int32)
    weights = np.zeros((batch_size, max_len), np.float32)
    for r, (ids, n_cont) in enumerate(chunk):
      length = len(ids) - 1
      inputs[r, :length], targets[r, :length] = ids[:-1], ids[1:]
      weights[r, length - n_cont:length] = 1.0
    logp = np.asarray(scorer(inputs, targets), np.float64)
    out += [float(s) for s in np.sum(logp * weights, axis=1)[:len(chunk)]]
  return out


def evaluate_tokens(params, tokens, *, model, loss_fn, context: int, batch_size: int,
                    max_batches: int | None = None, mesh=None) -> dict:
  """Metrics of `tokens` [n] scored in contiguous windows of `context` tokens (training's
  periodic evaluation; `text_metrics` is the general form).

  Every target token (tokens[1:]) is scored exactly once, with the context available
  inside its window (0 to context - 1 earlier tokens). `max_batches` None: the whole split.
  Returns `lm.metrics.summarize` of the sums: loss, nll, perplexity, accuracy, tokens.
  """
  mesh = mesh or sharding.data_mesh()
  step = _eval_step(model, loss_fn)
  total = None
  for i, batch in enumerate(windows.eval_batches(tokens, context=context,
                                                 batch_size=batch_size)):
    if max_batches is not None and i >= max_batches:
      break
    total = metrics.add(total, step(params, sharding.put_batch(batch, mesh)))
  return metrics.summarize(jax.device_get(total))


@functools.lru_cache(maxsize=16)
def _eval_step(model, loss_fn):
  # Cached so repeated evaluations in one run reuse one compiled function.
  return jax.jit(functools.partial(steps.eval_step, model=model, loss_fn=loss_fn))
