"""Progress line for long loops: step, loss, tokens/s (per device), MFU and ETA, on stderr."""

import sys
import time


def _hms(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
  """Call `update(step, **values)`; redraws in place on a terminal, else prints every call.

  Throughput counts from the first update, so compilation time does not skew the ETA.
  With `flops_per_token` and `peak_flops` (per device) the line adds MFU; `enabled=False`
  (every process but 0 of a multi-host run) prints nothing.
  """

  def __init__(self, total: int, *, tokens_per_step: int, start: int = 0, stream=None,
               devices: int = 1, flops_per_token: float | None = None,
               peak_flops: float | None = None, enabled: bool = True):
    self.total, self.tokens_per_step = total, tokens_per_step
    self.devices, self.flops_per_token, self.peak_flops = devices, flops_per_token, peak_flops
    self.enabled = enabled
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
      tokens = rate * self.tokens_per_step
      parts.append(f"{tokens:,.0f} tok/s ({tokens / self.devices:,.0f}/device)")
      if self.flops_per_token and self.peak_flops:
        parts.append(f"MFU {tokens * self.flops_per_token / (self.devices * self.peak_flops):.1%}")
      parts.append(f"ETA {_hms(eta)}")
    line = " | ".join(parts)
    if not self.enabled:
      return line
    if self.tty:
      self.stream.write("\r\033[K" + line)
    else:
      self.stream.write(line + "\n")
    self.stream.flush()
    return line

  def message(self, text: str) -> None:
    """A line of its own that the progress line does not overwrite."""
    if not self.enabled:
      return
    self.stream.write(("\r\033[K" if self.tty else "") + text + "\n")
    self.stream.flush()

  def close(self):
    if self.tty:
      self.stream.write("\n")
      self.stream.flush()
