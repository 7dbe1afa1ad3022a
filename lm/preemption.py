"""Graceful stop on SIGTERM/SIGINT: finish the step, checkpoint, exit with a known status.

Cloud schedulers (TPU/GPU preemption, Slurm, Kubernetes) send SIGTERM some seconds before
killing a job. The train loop polls `StopRequest.requested` after every step; when set, it
saves a checkpoint and raises `Preempted`, which the entry point turns into exit status
`EXIT_PREEMPTED` so `launch.sh` knows to start the run again.
"""

import signal

EXIT_PREEMPTED = 75  # EX_TEMPFAIL in sysexits.h: "try again later".


class Preempted(Exception):
  """The run stopped on a signal after saving a checkpoint at `step`."""

  def __init__(self, step: int, signame: str):
    super().__init__(f"stopped by {signame} after saving step {step}; run again to resume")
    self.step = step


class StopRequest:
  """Context manager: while active, SIGTERM and SIGINT set `requested` instead of killing."""

  def __init__(self, signals=(signal.SIGTERM, signal.SIGINT)):
    self.signals = signals
    self.requested: str | None = None
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    self.requested = signal.Signals(signum).name

  def __enter__(self):
    for s in self.signals:
      try:
        self._previous[s] = signal.signal(s, self._handle)
      except ValueError:  # Not the main thread: leave signals alone.
        pass
    return self

  def __exit__(self, *exc):
    for s, handler in self._previous.items():
      signal.signal(s, handler)
    return False
