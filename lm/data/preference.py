"""Preference pairs: prompt / chosen / rejected rows -> interleaved token rows.

Two layouts are read (one per row, detected by its fields):
  {'prompt', 'chosen', 'rejected'}: the prompt goes through the chat template as a user turn,
    each response as the assistant turn.
  Anthropic-HH {'chosen', 'rejected'}: two whole transcripts ('\\n\\nHuman: ...
    \\n\\nAssistant: ...') sharing a prefix; `split_hh` cuts them at the longest common prefix
    that ends at the last assistant marker, and the prefix is used as raw prompt text.

`encode_pairs` gives the rows of `lm.losses.preference`: row 2i is the chosen and 2i + 1 the
rejected sequence of pair i, weighted on response tokens only.
"""

import numpy as np

from lm.data import instruct
from lm.data.records import read_records, string_field
from lm.errors import DataError

HH_ASSISTANT = "\n\nAssistant:"


def split_hh(chosen: str, rejected: str, *, marker: str = HH_ASSISTANT):
  """(prompt, chosen_response, rejected_response) of two transcripts sharing a prompt.

  The prompt is the longest common prefix of the two that ends with `marker` (the last
  assistant turn marker the transcripts share), so prompt + response == transcript exactly.

  Raises:
    ValueError: the transcripts share no prefix ending with `marker`.
  """
  common = 0
  for a, b in zip(chosen, rejected):
    if a != b:
      break
    common += 1
  cut = chosen.rfind(marker, 0, common)  # The whole marker lies inside the shared prefix.
  if cut < 0:
    raise ValueError(f"the transcripts share no prefix ending with {marker!r}")
  cut += len(marker)
  return chosen[:cut], chosen[cut:], rejected[cut:]


def load_pairs(path: str) -> list[dict]:
  """Pairs {'where', 'prompt', 'chosen', 'rejected', 'raw_prompt'} of a JSON / JSONL file.

  raw_prompt is True for HH transcripts (the prompt is already formatted text).

  Raises:
    DataError naming file and line: a missing or non-string field, chosen == rejected, HH
    transcripts with no shared assistant prefix.
  """
  pairs = []
  for where, record in read_records(path):
    chosen = string_field(where, record, "chosen")
    rejected = string_field(where, record, "rejected")
    if "prompt" in record:
      prompt, raw = string_field(where, record, "prompt"), False
    else:
      try:
        prompt, chosen, rejected = split_hh(chosen, rejected)
      except ValueError as e:
        raise DataError(f"{where}: no 'prompt' field, and not an HH transcript pair: {e}"
                        ) from None
      raw = True
    if chosen == rejected:
      raise DataError(f"{where}: chosen and rejected responses are identical")
    if not chosen or not rejected:
      raise DataError(f"{where}: empty {'chosen' if not chosen else 'rejected'} response")
    pairs.append({"where": where, "prompt": prompt, "chosen": chosen, "rejected": rejected,
                  "raw_prompt": raw})
  return pairs


def _prompt_and_suffix(pair, tokenizer, template: instruct.ChatTemplate):
  """Prompt ids, and the template's text after an assistant response (e.g. '<eos>')."""
  before, after = template.assistant.split("{content}")
  if pair["raw_prompt"]:
    text = template.bos + pair["prompt"]
  else:
    user = template.user.replace("{content}", pair["prompt"])
    text = template.bos + user + before
  return instruct.encode_text(tokenizer, text), after


def encode_pairs(pairs, tokenizer, template: instruct.ChatTemplate, *, context: int,
                 truncation: str):
  """Interleaved rows (chosen, rejected, ...) of [2 * pairs, context] arrays, and counts.

  truncation for a sequence longer than context + 1 tokens: 'error', 'drop' (the pair) or
  'truncate' (keep at most the last context // 2 prompt tokens, then cut the response's
  end). Returns (rows, {'pairs', 'truncated', 'dropped'}).
  """
  if truncation not in instruct.TRUNCATION:
    raise DataError(f"align.truncation={truncation!r}: expected one of {instruct.TRUNCATION}")
  limit = context + 1
  encoded, truncated, dropped = [], 0, 0
  for pair in pairs:
    try:
      prompt, after = _prompt_and_suffix(pair, tokenizer, template)
      responses = [instruct.encode_text(tokenizer, pair[k] + after)
                   for k in ("chosen", "rejected")]
    except DataError as e:  # E.g. a character outside a character vocabulary.
      raise DataError(f"{pair['where']}: {e}") from None
    longest = len(prompt) + max(len(r) for r in responses)
    if longest > limit:
      if truncation == "error":
        raise DataError(f"{pair['where']}: {longest} tokens, longer than data.context + 1 = "
                        f"{limit} (set align.truncation to 'drop' or 'truncate')")
      if truncation == "drop":
        dropped += 1
        continue
      prompt = prompt[-(context // 2):] if len(prompt) > context // 2 else prompt
      responses = [r[:limit - len(prompt)] for r in responses]
      if responses[0] == responses[1]:  # Differed only past the cut: nothing to learn.
        dropped += 1
        continue
      truncated += 1
    for response in responses:
      tokens = np.asarray(prompt + response, np.int32)
      trained = np.arange(len(tokens)) >= len(prompt)
      encoded.append((tokens, trained))
  if not encoded:
    raise DataError(f"no preference pair fits data.context={context} ({dropped} dropped)")
  return instruct.pad(encoded, context=context), {"pairs": len(encoded) // 2,
                                                  "truncated": truncated, "dropped": dropped}
