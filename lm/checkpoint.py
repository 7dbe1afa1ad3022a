"""Checkpoints through orbax: the train state plus a small JSON of run metadata.

Orbax writes each step into a temporary directory and renames it when complete, so a crash
mid-save never replaces the last good checkpoint.
"""

import os
import shutil
import time

import jax
import orbax.checkpoint as ocp
from absl import logging


def manager(workdir: str, *, keep: int | None = None, save_every: int | None = None,
            async_save: bool = True) -> ocp.CheckpointManager:
  """A CheckpointManager over `<workdir>/checkpoints` keeping the newest `keep` steps."""
  options = ocp.CheckpointManagerOptions(
      max_to_keep=keep, save_interval_steps=save_every or 1, create=True,
      enable_async_checkpointing=async_save,
      cleanup_tmp_directories=True)  # Left behind by a save that was killed midway.
  return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, "checkpoints")),
                               options=options, item_names=("state", "meta"))


def save(mngr: ocp.CheckpointManager, step: int, state, meta: dict, *, force=False) -> bool:
  """Saves `state` (a pytree of arrays) and `meta` (JSON-able) at `step`."""
  return mngr.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=force)


def restore(mngr: ocp.CheckpointManager, abstract_state, step: int | None = None):
  """(state, meta) at `step` (default: latest), shaped like `abstract_state`; None if none."""
  step = mngr.latest_step() if step is None else step
  if step is None:
    return None
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
  out = mngr.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
  return out.state, out.meta


def restore_latest_good(workdir: str, abstract_state, *, make_manager):
  """(manager, (state, meta) or None): the newest checkpoint that restores.

  A checkpoint that fails to restore (truncated or missing files) is moved to
  `<workdir>/checkpoints_corrupt/` and the next older one is tried, with a warning naming
  both. `make_manager()` builds a fresh manager (its step list must not include the one moved
  away).
  """
  mngr = make_manager()
  while True:
    step = mngr.latest_step()
    if step is None:
      return mngr, None
    try:
      return mngr, restore(mngr, abstract_state, step)
    except Exception as e:  # pylint: disable=broad-except  # Any failure means unusable.
      mngr.close()
      bad = os.path.join(workdir, "checkpoints", str(step))
      aside = os.path.join(workdir, "checkpoints_corrupt", f"{step}-{int(time.time())}")
      os.makedirs(os.path.dirname(aside), exist_ok=True)
      shutil.move(bad, aside)
      mngr = make_manager()
      older = mngr.latest_step()
      message = (f"checkpoint {bad} failed to restore ({type(e).__name__}: "
                 f"{str(e).splitlines()[0][:200] if str(e) else ''}); moved it to {aside}; "
                 + (f"using step {older} instead" if older is not None else
                    "no older checkpoint, starting from scratch"))
      logging.warning(message)
      print(f"warning: {message}", flush=True)
