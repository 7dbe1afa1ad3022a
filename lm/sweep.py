"""Sweeps as data: lists of override dicts built from tiny combinators (as google `simply`).

    sweep.product(sweep.axis("model.width", [128, 256]), sweep.axis("seed", [0, 1]))
    -> [{"model.width": 128, "seed": 0}, {"model.width": 128, "seed": 1},
        {"model.width": 256, "seed": 0}, {"model.width": 256, "seed": 1}]

A config module's `get_sweep(arg)` returns such a list; `lm.sweep_runner` trains each point
as `--config.KEY=VALUE` overrides in its own workdir, named by `point_name`.
"""

import itertools
import re

from lm.errors import ConfigError


def axis(key: str, values) -> list[dict]:
  """One point per value: [{key: v} for v in values]."""
  return [{key: v} for v in values]


def product(*sweeps: list[dict]) -> list[dict]:
  """Every combination, the last sweep varying fastest."""
  return [_merge(points) for points in itertools.product(*sweeps)]


def zip_(*sweeps: list[dict]) -> list[dict]:
  """Point i of every sweep merged; all sweeps must have the same length."""
  lengths = {len(s) for s in sweeps}
  if len(lengths) > 1:
    raise ConfigError(f"zip_ of sweeps of different lengths {[len(s) for s in sweeps]}")
  return [_merge(points) for points in zip(*sweeps)]


def chain(*sweeps: list[dict]) -> list[dict]:
  """The points of each sweep in turn."""
  return [dict(p) for s in sweeps for p in s]


def _merge(points) -> dict:
  out = {}
  for p in points:
    clash = set(out) & set(p)
    if clash:
      raise ConfigError(f"sweep points set {sorted(clash)} twice")
    out.update(p)
  return out


def point_name(point: dict) -> str:
  """A folder name for a point: 'width=128,num_heads=2' (last component of each key, in
  the point's order; a tuple's items joined by '-'). Other characters than letters, digits
  and '=,._+-' become '_'; an empty point is 'base'."""
  if not point:
    return "base"
  value = lambda v: "-".join(map(str, v)) if isinstance(v, (tuple, list)) else str(v)
  parts = [f"{k.rsplit('.', 1)[-1]}={value(v)}" for k, v in point.items()]
  return re.sub(r"[^A-Za-z0-9=,._+-]", "_", ",".join(parts))


def check_unique_names(points: list[dict]) -> None:
  names = [point_name(p) for p in points]
  dupes = sorted({n for n in names if names.count(n) > 1})
  if dupes:
    raise ConfigError(f"sweep points share workdir names {dupes}; make the points differ")


def override_flags(point: dict) -> list[str]:
  """Command-line flags for a point: ['--config.model.width=128', ...]."""
  return [f"--config.{k}={_flag_value(v)}" for k, v in point.items()]


def _flag_value(v) -> str:
  if isinstance(v, (tuple, list)):
    return "(" + ",".join(_flag_value(x) for x in v) + ("," if len(v) == 1 else "") + ")"
  return str(v)
