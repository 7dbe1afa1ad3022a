"""Metrics leave jit as sums and weights; the host divides and writes them to files.

Each record goes to `<workdir>/metrics.jsonl` (one JSON object a line, with 'step' and
'split') and to TensorBoard event files under `<workdir>/tensorboard` (tensorboardX, which
needs no TensorFlow).
"""

import json
import math
import os

import numpy as np


def summarize(sums: dict) -> dict:
  """Turns accumulated sums into means: loss, perplexity, accuracy, z-loss.

  `sums` has 'loss_sum', 'weight_sum', 'nll_sum', 'token_sum', 'correct_sum', 'z_loss_sum'
  (see `lm.losses.cross_entropy`); other keys are passed through as floats.
  """
  sums = {k: float(np.asarray(v)) for k, v in sums.items()}
  if "token_sum" not in sums:
    return summarize_pairs(sums)
  tokens = sums.pop("token_sum")
  out = {
      "loss": sums.pop("loss_sum") / sums.pop("weight_sum"),
      "nll": sums["nll_sum"] / tokens,
      "accuracy": sums.pop("correct_sum") / tokens,
      "z_loss": sums.pop("z_loss_sum") / tokens,
      "tokens": tokens,
  }
  out["perplexity"] = math.exp(min(sums.pop("nll_sum") / tokens, 700.0))
  out.update(sums)
  return out


def summarize_pairs(sums: dict) -> dict:
  """Means per pair of preference sums (see `lm.losses.preference`): every 'x_sum' becomes
  'x' divided by 'weight_sum' (the number of pairs), which is reported as 'pairs'."""
  sums = {k: float(np.asarray(v)) for k, v in sums.items()}
  pairs = sums.pop("weight_sum")
  out = {k[:-len("_sum")] if k.endswith("_sum") else k: v / pairs if k.endswith("_sum") else v
         for k, v in sums.items()}
  out["pairs"] = pairs
  return out


def add(a: dict | None, b: dict) -> dict:
  """Elementwise sum of two metric dicts (the first may be None)."""
  return dict(b) if a is None else {k: a[k] + b[k] for k in a}


class Writer:
  """Appends metric records to JSONL and TensorBoard; only process 0 writes."""

  def __init__(self, workdir: str, *, enabled: bool = True):
    self.enabled = enabled
    self.path = os.path.join(workdir, "metrics.jsonl")
    self._tb = None
    if enabled:
      from tensorboardX import SummaryWriter  # Imported lazily: only writers need it.
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def truncate_after(self, step: int) -> None:
    """Drops records past `step` so a resumed run appends as if never stopped."""
    if not (self.enabled and os.path.exists(self.path)):
      return
    keep = []
    with open(self.path) as f:
      for line in f:
        try:
          if json.loads(line)["step"] <= step:
            keep.append(line)
        except (json.JSONDecodeError, KeyError):
          pass  # A line torn by a kill mid-write.
    with open(self.path, "w") as f:
      f.writelines(keep)

  def write(self, step: int, split: str, values: dict) -> None:
    if not self.enabled:
      return
    record = {"step": step, "split": split, **values}
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
    for k, v in values.items():
      self._tb.add_scalar(f"{split}/{k}", v, step)
    self._tb.flush()

  def close(self):
    if self._tb is not None:
      self._tb.close()


def read(workdir: str) -> list[dict]:
  """All records of `<workdir>/metrics.jsonl`."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f if line.strip()]
