"""Checkpoints through orbax: the train state plus a small JSON of run metadata.

Orbax writes each step into a temporary directory and renames it when complete, so a crash
mid-save never replaces the last good checkpoint.
"""

import os

import jax
import orbax.checkpoint as ocp


def manager(workdir: str, *, keep: int | None = None, save_every: int | None = None,
            async_save: bool = True) -> ocp.CheckpointManager:
  """A CheckpointManager over `<workdir>/checkpoints` keeping the newest `keep` steps."""
  options = ocp.CheckpointManagerOptions(
      max_to_keep=keep, save_interval_steps=save_every or 1, create=True,
      enable_async_checkpointing=async_save)
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
