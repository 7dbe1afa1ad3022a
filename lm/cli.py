"""Shared plumbing of the absl entry points in experiments/."""

import sys

from absl import app

from lm.errors import UserError


def run(main) -> None:
  """`app.run(main)`, printing bad user input as one `error: ...` line (exit status 2)."""

  def wrapped(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
      return main(argv)
    except UserError as e:
      sys.stderr.write(f"error: {e}\n")
      sys.exit(2)

  app.run(wrapped)
