"""Shared plumbing of the absl entry points in experiments/."""

import ast
import os
import sys

from absl import app, flags, logging

from lm.errors import UserError

_CPU_DEVICES = flags.DEFINE_integer(
    "cpu_devices", None,
    "Split the host CPU into this many XLA devices (data parallel over cores); "
    "None: XLA's default of one. Only affects the CPU backend.")
_MULTIHOST = flags.DEFINE_bool(
    "multihost", os.environ.get("LM_MULTIHOST") == "1",
    "Call jax.distributed.initialize() first (one process per host of a multi-host TPU "
    "slice or GPU cluster; on TPU VMs it finds the other hosts itself). Default: "
    "$LM_MULTIHOST == 1, which `launch.sh tpu` sets.")


def run(main) -> None:
  """`app.run(main)`, printing bad user input as one `error: ...` line (exit status 2).

  absl logging defaults to warnings only (orbax logs every save at INFO); `--verbosity=0`
  brings the INFO lines back.
  """

  def wrapped(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)
    if _CPU_DEVICES.value is not None:
      import jax  # Must be configured before the first computation initialises backends.
      jax.config.update("jax_num_cpu_devices", _CPU_DEVICES.value)
    if _MULTIHOST.value:
      import jax  # Before anything touches a device.
      jax.distributed.initialize()
    try:
      return main(argv)
    except UserError as e:
      sys.stderr.write(f"error: {e}\n")
      sys.exit(2)

  app.run(wrapped, flags_parser=_parse_flags)


def _parse_flags(argv):
  """Parses flags; a bad flag or config override is one `error:` line, not a traceback."""
  try:
    return flags.FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
    sys.stderr.write(f"error: {_one_line(str(e))}\n")
    sys.exit(2)


def _one_line(message: str) -> str:
  """The useful line of an absl/ml_collections flag error."""
  if "Traceback" in message:  # config_flags embeds the config file's traceback.
    message = message.strip().splitlines()[-1]
  if len(message) > 1 and message[0] == message[-1] and message[0] in "'\"":
    try:  # ml_collections re-wraps a KeyError's repr.
      message = ast.literal_eval(message)
    except (ValueError, SyntaxError):
      pass
  return " ".join(message.split())
