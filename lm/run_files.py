"""What a run keeps in its workdir, and how evaluation and sampling read it back.

    <workdir>/config.json      the resolved config
    <workdir>/tokenizer.json   the tokenizer (see lm.tokenizers)
    <workdir>/checkpoints/     orbax checkpoints (see lm.checkpoint)
    <workdir>/metrics.jsonl    train and eval metrics, one record a line
    <workdir>/tensorboard/     the same metrics as TensorBoard events
    <workdir>/results.json     final evaluation and sample
    <workdir>/run_info.jsonl   one record per start: git commit, versions, devices, argv
    <workdir>/.lock            held while a process trains in the workdir
"""

import fcntl
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time

import ml_collections

from lm.errors import ConfigError, DataError, UserError


def config_path(workdir: str) -> str:
  return os.path.join(workdir, "config.json")


def tokenizer_path(workdir: str) -> str:
  return os.path.join(workdir, "tokenizer.json")


def write_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  os.makedirs(workdir, exist_ok=True)
  with open(config_path(workdir), "w") as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True) + "\n")


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a training run wrote into `workdir`."""
  path = config_path(workdir)
  if not os.path.exists(path):
    raise DataError(f"no config at {path}: is {workdir!r} a training workdir?")
  with open(path) as f:
    d = json.load(f)
  # JSON turns tuples into lists; the config only holds tuples of numbers.
  return ml_collections.ConfigDict(d)


class WorkdirLock:
  """An exclusive lock on `<workdir>/.lock`, so two processes never write one workdir.

  `flock` locks die with their process, so a killed run never leaves a stale lock.
  """

  def __init__(self, workdir: str):
    os.makedirs(workdir, exist_ok=True)
    self.path = os.path.join(workdir, ".lock")
    self._file = None

  def __enter__(self):
    f = open(self.path, "a+")
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      f.seek(0)
      holder = f.read().strip() or "unknown"
      f.close()
      raise UserError(f"workdir {os.path.dirname(self.path)} is in use by another process "
                      f"(pid {holder}); wait for it or use another --workdir") from None
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    self._file = f
    return self

  def __exit__(self, *exc):
    fcntl.flock(self._file, fcntl.LOCK_UN)
    self._file.close()
    return False


def config_changes(old: dict, new: dict, prefix: str = "") -> list[str]:
  """Human-readable differences 'a.b: old -> new' between two config dicts."""
  changes = []
  for key in sorted(set(old) | set(new)):
    a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
    if isinstance(a, dict) and isinstance(b, dict):
      changes += config_changes(a, b, f"{prefix}{key}.")
    elif (list(a) if isinstance(a, (list, tuple)) else a) != (
        list(b) if isinstance(b, (list, tuple)) else b):
      changes.append(f"{prefix}{key}: {a!r} -> {b!r}")
  return changes


def check_config_change(workdir: str, config: ml_collections.ConfigDict) -> list[str]:
  """Refuses to resume `workdir` under a different config unless allow_config_change.

  Returns the list of accepted changes (empty when the config is unchanged or new).
  """
  if not os.path.exists(config_path(workdir)):
    return []
  with open(config_path(workdir)) as f:
    old = json.load(f)
  new = json.loads(config.to_json_best_effort())
  for key in ("allow_config_change", "mesh"):  # A new mesh changes the layout, not the run.
    old.pop(key, None)
    new.pop(key, None)
  changes = config_changes(old, new)
  if changes and not config.allow_config_change:
    raise ConfigError(f"workdir {workdir} was trained with a different config ("
                      f"{'; '.join(changes)}); use another --workdir or pass "
                      "--config.allow_config_change=True")
  return changes


def _git(*args) -> str | None:
  try:
    out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                         cwd=os.path.dirname(os.path.abspath(__file__)))
  except (OSError, subprocess.TimeoutExpired):
    return None
  return out.stdout.strip() if out.returncode == 0 else None


def run_info(config_changes_accepted=()) -> dict:
  """Where and with what this process runs: code version, packages, devices, command."""
  import jax  # Deferred: the helpers above must not need jax.

  packages = {}
  for name in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "grain",
               "tensorflow-datasets", "numpy", "ml-collections"):
    try:
      packages[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      packages[name] = None
  status = _git("status", "--porcelain", "--untracked-files=no")
  return {
      "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
      "argv": sys.argv,
      "git_commit": _git("rev-parse", "HEAD"),
      "git_dirty": None if status is None else bool(status),
      "python": platform.python_version(),
      "host": platform.node(),
      "packages": packages,
      "devices": [str(d) for d in jax.devices()],
      "process_index": jax.process_index(),
      "config_changes_accepted": list(config_changes_accepted),
  }


def append_run_info(workdir: str, info: dict) -> None:
  with open(os.path.join(workdir, "run_info.jsonl"), "a") as f:
    f.write(json.dumps(info) + "\n")


def write_json(path: str, obj) -> None:
  """Writes atomically (temp file + rename) so readers never see half a file."""
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2)
    f.write("\n")
  os.replace(tmp, path)


def load_run(workdir: str, step: int | None = None):
  """(config, tokenizer, model_cfg, params) of the checkpoint at `step` (default latest)."""
  import jax  # Deferred: config/JSON helpers above must not need jax.

  from lm import checkpoint, families, optim, steps, tokenizers, train

  config = read_config(workdir)
  tokenizer = tokenizers.load(tokenizer_path(workdir))
  model_cfg = train.model_config(config, tokenizer.vocab_size)
  optimizer = optim.build(config.optim, config.train.steps)
  abstract = jax.eval_shape(lambda: steps.create_state(
      families.init_params(model_cfg, jax.random.PRNGKey(0), config.stage), optimizer,
      jax.random.PRNGKey(0)))
  # Whole arrays on one device, whatever mesh saved them (orbax reassembles the shards).
  one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=one),
                          abstract)
  mngr = checkpoint.manager(workdir, async_save=False)
  restored = checkpoint.restore(mngr, abstract, step)
  mngr.close()
  if restored is None:
    raise DataError(f"no checkpoint in {workdir}/checkpoints")
  state, _ = restored
  return config, tokenizer, model_cfg, state["params"]
