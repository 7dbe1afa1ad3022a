"""Instruction tuning data: Alpaca / chat examples -> token rows weighted on responses only.

    template = ChatTemplate.from_config(config.align.template)
    examples = load_examples(path)                       # [(where, messages)]
    encoded, counts = encode_examples(examples, tokenizer, template, context=..., truncation=...)
    rows = pack(encoded, context=...) if packing else pad(encoded, context=...)
    batches = RowBatches(rows, batch_size=..., seed=...)  # batch(step), a pure function

An example is a list of chat messages {'role', 'content'} (roles 'system', 'user',
'assistant'); an Alpaca record {'instruction', 'input', 'output'} becomes
[user: instruction (+ blank line + input), assistant: output]. Every assistant turn is
trained on (its content and the template's text after it, e.g. an end-of-sequence token);
every other token has weight 0.
"""

import dataclasses
import re

import grain
import numpy as np

from lm.data.records import read_records, string_field
from lm.errors import ConfigError, DataError

ROLES = ("system", "user", "assistant")
TRUNCATION = ("error", "drop", "truncate")
PAD_ID = 0


@dataclasses.dataclass(frozen=True)
class ChatTemplate:
  """How messages become text. Each turn format holds '{content}' once.

  The text of an assistant turn before '{content}' is prompt (weight 0); the content and
  the text after it are response (weight 1). Names of the tokenizer's special tokens (e.g.
  '<eos>' for the byte tokenizer) become those tokens; elsewhere they are plain text.
  """

  bos: str  # Text before the first turn (e.g. '<bos>'); '' for none.
  system: str
  user: str
  assistant: str

  @classmethod
  def from_config(cls, c) -> "ChatTemplate":
    template = cls(bos=c.bos, system=c.system, user=c.user, assistant=c.assistant)
    for role in ROLES:
      if getattr(template, role).count("{content}") != 1:
        raise ConfigError(f"align.template.{role}={getattr(template, role)!r} must contain "
                          "'{content}' exactly once")
    return template

  def render(self, messages) -> list[tuple[str, bool]]:
    """Text pieces and whether each is trained on (response) or not (prompt)."""
    pieces = [(self.bos, False)] if self.bos else []
    for m in messages:
      before, after = getattr(self, m["role"]).split("{content}")
      trained = m["role"] == "assistant"
      pieces += [(before, False), (m["content"], trained), (after, trained)]
    return [(text, trained) for text, trained in pieces if text]


def encode_text(tokenizer, text: str) -> list[int]:
  """Token ids of `text`, with the tokenizer's special-token names turned into their ids."""
  specials = tokenizer.special_ids
  if not specials:
    return tokenizer.encode(text)
  pattern = "(" + "|".join(re.escape(s) for s in sorted(specials, key=len, reverse=True)) + ")"
  ids = []
  for part in re.split(pattern, text):
    if part in specials:
      ids.append(specials[part])
    elif part:
      ids += tokenizer.encode(part)
  return ids


def _messages(where: str, record: dict) -> list[dict]:
  if "messages" in record:
    messages = record["messages"]
    if not isinstance(messages, list) or not messages:
      raise DataError(f"{where}: 'messages' must be a non-empty list")
    out = []
    for i, m in enumerate(messages):
      if not isinstance(m, dict):
        raise DataError(f"{where}: messages[{i}] must be an object")
      role = string_field(f"{where}: messages[{i}]", m, "role")
      if role not in ROLES:
        raise DataError(f"{where}: messages[{i}] has role {role!r}; expected one of {ROLES}")
      out.append({"role": role, "content": string_field(f"{where}: messages[{i}]", m,
                                                         "content")})
    if not any(m["role"] == "assistant" for m in out):
      raise DataError(f"{where}: no 'assistant' message to train on")
    return out
  if "instruction" in record or "output" in record:
    instruction = string_field(where, record, "instruction")
    extra = string_field(where, record, "input", optional=True)
    output = string_field(where, record, "output")
    prompt = instruction + ("\n\n" + extra if extra else "")
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]
  raise DataError(f"{where}: expected Alpaca fields ('instruction', 'input', 'output') or "
                  f"'messages'; got {sorted(record)}")


def load_examples(path: str) -> list[tuple[str, list[dict]]]:
  """(where, messages) for every record of an Alpaca or chat JSON / JSONL file."""
  return [(where, _messages(where, record)) for where, record in read_records(path)]


def encode_example(where: str, messages, tokenizer, template: ChatTemplate):
  """(tokens [n] int32, trained [n] bool) of one example.

  Raises:
    DataError: the rendered example has no trained token (never silently trained on all).
  """
  tokens, trained = [], []
  for text, is_response in template.render(messages):
    try:
      ids = encode_text(tokenizer, text)
    except DataError as e:  # E.g. a character outside a character vocabulary.
      raise DataError(f"{where}: {e}") from None
    tokens += ids
    trained += [is_response] * len(ids)
  # Position 0 is never a target, so a trained first token alone trains nothing.
  if not any(trained[1:]):
    raise DataError(f"{where}: the template leaves no response token to train on "
                    "(empty assistant content and nothing after '{content}')")
  return np.asarray(tokens, np.int32), np.asarray(trained, bool)


def encode_examples(examples, tokenizer, template: ChatTemplate, *, context: int,
                    truncation: str):
  """Encodes and fits examples to `context + 1` tokens (inputs and targets of `context`).

  truncation: what to do with a longer example: 'error' (DataError naming it), 'drop'
  (skip it) or 'truncate' (keep context + 1 tokens starting at most context // 2 tokens
  before the first response token: long prompts lose their start, long responses their end). Returns (list of (tokens, trained), counts {'examples', 'truncated', 'dropped'}).
  """
  if truncation not in TRUNCATION:
    raise ConfigError(f"align.truncation={truncation!r}: expected one of {TRUNCATION}")
  out, truncated, dropped = [], 0, 0
  for where, messages in examples:
    tokens, trained = encode_example(where, messages, tokenizer, template)
    if len(tokens) > context + 1:
      if truncation == "error":
        raise DataError(f"{where}: {len(tokens)} tokens, longer than data.context + 1 = "
                        f"{context + 1} (set align.truncation to 'drop' or 'truncate')")
      if truncation == "drop":
        dropped += 1
        continue
      # Keep at most context // 2 tokens before the first response token, then cut the end.
      start = max(0, int(np.argmax(trained[1:])) + 1 - context // 2)
      tokens, trained = tokens[start:start + context + 1], trained[start:start + context + 1]
      truncated += 1
    out.append((tokens, trained))
  if not out:
    raise DataError(f"no example fits data.context={context} ({dropped} dropped)")
  return out, {"examples": len(out), "truncated": truncated, "dropped": dropped}


def _empty_rows(n: int, context: int) -> dict:
  return {"inputs": np.full((n, context), PAD_ID, np.int32),
          "targets": np.full((n, context), PAD_ID, np.int32),
          "weights": np.zeros((n, context), np.float32),
          "positions": np.zeros((n, context), np.int32),
          "segment_ids": np.zeros((n, context), np.int32)}


def _place(rows, r: int, start: int, segment: int, tokens, trained) -> int:
  n = len(tokens) - 1
  end = start + n
  rows["inputs"][r, start:end] = tokens[:-1]
  rows["targets"][r, start:end] = tokens[1:]
  rows["weights"][r, start:end] = trained[1:]
  rows["positions"][r, start:end] = np.arange(n)
  rows["segment_ids"][r, start:end] = segment
  return end


def pad(encoded, *, context: int) -> dict:
  """One example a row: dict of [examples, context] arrays, padding at weight 0, segment 0."""
  rows = _empty_rows(len(encoded), context)
  for r, (tokens, trained) in enumerate(encoded):
    _place(rows, r, 0, 1, tokens, trained)
  return rows


def pack(encoded, *, context: int) -> dict:
  """Several examples a row, in order (a new row when the next does not fit).

  Each example keeps its own shift (targets never cross into the next example), its
  positions restart at 0 and its segment id (1, 2, ... within the row) keeps attention
  inside it. Padding has segment 0 and weight 0.
  """
  layout, row, used = [], [], 0
  for i, (tokens, _) in enumerate(encoded):
    n = len(tokens) - 1
    if used + n > context and row:
      layout.append(row)
      row, used = [], 0
    row.append(i)
    used += n
  layout.append(row)
  rows = _empty_rows(len(layout), context)
  for r, members in enumerate(layout):
    start = 0
    for segment, i in enumerate(members, 1):
      start = _place(rows, r, start, segment, *encoded[i])
  return rows


def _shuffle_seed(seed: int) -> int:
  return int(np.random.SeedSequence(seed).generate_state(1)[0])


class RowBatches:
  """Shuffled batches of prepared rows, a pure function of (seed, step), epochs running on.

  `rows` is a dict of arrays with a common leading dimension; `group` rows that belong
  together (a chosen and a rejected sequence) stay adjacent: indices are shuffled in groups.
  """

  def __init__(self, rows: dict, *, batch_size: int, seed: int, group: int = 1):
    n = len(next(iter(rows.values())))
    if n % group:
      raise ValueError(f"{n} rows are not whole groups of {group}")
    self.num_examples = n // group
    self.rows = rows
    self.group = group
    members = np.arange(group)
    self._dataset = (grain.MapDataset.range(self.num_examples)
                     .shuffle(seed=_shuffle_seed(seed)).repeat()
                     .map(lambda i: i * group + members).batch(batch_size))

  def batch(self, step: int) -> dict:
    """Batch of `step` >= 0: each array [batch_size * group, ...]."""
    index = self._dataset[step].reshape(-1)
    return {k: v[index] for k, v in self.rows.items()}


def fixed_batches(rows: dict, *, batch_size: int, group: int = 1):
  """Every row once, in order, in batches of `batch_size` groups; the last padded (weight 0)."""
  n = len(next(iter(rows.values())))
  size = batch_size * group
  for first in range(0, n, size):
    chunk = {k: v[first:first + size] for k, v in rows.items()}
    short = size - len(chunk["weights"])
    if short:
      chunk = {k: np.concatenate([v, np.zeros((short, *v.shape[1:]), v.dtype)])
               for k, v in chunk.items()}
    yield chunk
