"""Progress line for long loops: step, loss, tokens/s and ETA, on stderr."""

import sys
import time


def _hms(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
  """Call `update(step, **values)`; redraws in place on a terminal, else prints every call.

  Throughput counts from the first update, so compilation time does not skew the ETA.
  """

  def __init__(self, total: int, *, tokens_per_step: int, start: int = 0, stream=None):
    self.total, self.tokens_per_step = total, tokens_per_step
    self.stream = stream or sys.stderr
    self.tty = self.stream.isatty()
    self.first_step, self.first_time = None, None
    self.start = start

  def update(self, step: int, **values) -> str:
    now = time.perf_counter()
    if self.first_step is None:
      self.first_step, self.first_time = step, now
    done = step - self.first_step
    elapsed = now - self.first_time
    rate = done / elapsed if elapsed > 0 and done > 0 else 0.0
    eta = (self.total - step) / rate if rate else float("nan")
    parts = [f"step {step}/{self.total}"]
    parts += [f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items()]
    if rate:
      parts += [f"{rate * self.tokens_per_step:,.0f} tok/s", f"ETA {_hms(eta)}"]
    line = " | ".join(parts)
    if self.tty:
      self.stream.write("\r\033[K" + line)
    else:
      self.stream.write(line + "\n")
    self.stream.flush()
    return line

  def message(self, text: str) -> None:
    """A line of its own that the progress line does not overwrite."""
    self.stream.write(("\r\033[K" if self.tty else "") + text + "\n")
    self.stream.flush()

  def close(self):
    if self.tty:
      self.stream.write("\n")
      self.stream.flush()
