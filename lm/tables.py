"""Perplexity tables of finished runs, as Markdown, CSV and LaTeX, plus learning curves.

A row per run folder: the config fields that vary across the folders, parameters, tokens
seen, training wall time (results.json `train_wall_s`: the train loop, summed over every
process of a resumed run; see lm/train.py) and tokens seen per second of it, and
validation/test perplexity and bits per byte from the folder's `eval_<split>.json`
(written by `experiments/evaluate.py`). A run without a finished evaluation keeps its row,
with those cells marked missing. Every table names the evaluation protocol(s) its numbers
were computed under.
"""

import csv
import io
import json
import math
import os

from lm import run_files

MISSING = "—"
SPLITS = ("validation", "test")
_HIDDEN = ("allow_config_change", "model.max_len")  # Never a meaningful column.


def _flatten(d: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = tuple(v) if isinstance(v, list) else v
  return out


def _read_json(path: str):
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def _params(config: dict, run_dir: str):
  """Parameter count from the config and the saved tokenizer's vocabulary, or None."""
  try:
    import ml_collections

    from lm import tokenizers, train
    from lm.models import decoder

    tok = tokenizers.load(run_files.tokenizer_path(run_dir))
    cfg = train.model_config(ml_collections.ConfigDict(config), tok.vocab_size)
    return decoder.param_count(cfg)
  except Exception:  # pylint: disable=broad-except
    return None  # Shown as a missing cell: the table must not die on one odd folder.


def _last_step(run_dir: str) -> int | None:
  """The last step with a training record in metrics.jsonl (an unfinished run)."""
  path = os.path.join(run_dir, "metrics.jsonl")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    steps = [json.loads(line)["step"] for line in f if line.strip().startswith("{")]
  return max(steps, default=None)


def collect(run_dirs) -> list[dict]:
  """One row (a dict) per run folder; values None where the folder lacks them."""
  rows = []
  for run_dir in run_dirs:
    config = _read_json(run_files.config_path(run_dir)) or {}
    results = _read_json(os.path.join(run_dir, "results.json"))
    row = {"run": os.path.basename(os.path.normpath(run_dir)), "dir": run_dir,
           "config": _flatten(config), "params": _params(config, run_dir) if config else None,
           "tokens_seen": None, "train_wall_s": None, "protocols": set(), "status": "no run"}
    if config:
      t = config["train"]
      step = t["steps"] if results else _last_step(run_dir)
      row["tokens_seen"] = step * t["batch_size"] * config["data"]["context"] if step else None
      row["status"] = "done" if results else f"stopped at step {step or 0}"
    if results:
      row["train_wall_s"] = results.get("train_wall_s")
      if results.get("train_wall_s_from_step"):  # Resumed from a checkpoint without it.
        row["status"] += f" (train time unknown before step {results['train_wall_s_from_step']})"
    for split in SPLITS:
      ev = _read_json(os.path.join(run_dir, f"eval_{split}.json"))
      row[f"{split}_ppl"] = ev and ev["perplexity"]
      row[f"{split}_bpb"] = ev and ev["bits_per_byte"]
      row[f"{split}_tokens"] = ev and ev["tokens"]
      if ev:
        row["protocols"].add(ev["protocol"]["description"])
    rows.append(row)
  return rows


def varying_keys(rows) -> list[str]:
  """Config fields whose values differ between rows (in the first row's order)."""
  keys = []
  for row in rows:
    keys += [k for k in row["config"] if k not in keys]
  return [k for k in keys if k not in _HIDDEN
          and len({repr(r["config"].get(k)) for r in rows}) > 1]


def _columns(rows):
  keys = varying_keys(rows)
  cols = [(k, k.rsplit(".", 1)[-1], lambda r, k=k: str(r["config"].get(k)) if r["config"]
           else None) for k in keys]  # str: a config value None is shown, not "missing".
  cols += [("status", "training", lambda r: r["status"]),
           ("params", "params", lambda r: r["params"]),
           ("tokens_seen", "tokens seen", lambda r: r["tokens_seen"]),
           ("train_wall_s", "train s", lambda r: r["train_wall_s"]),
           ("tokens_per_s", "tokens/s",
            lambda r: r["tokens_seen"] / r["train_wall_s"] if r["train_wall_s"] else None)]
  for split, short in (("validation", "valid"), ("test", "test")):
    cols += [(f"{short}_ppl", f"{short} ppl", lambda r, s=split: r[f"{s}_ppl"]),
             (f"{short}_bpb", f"{short} bits/byte", lambda r, s=split: r[f"{s}_bpb"])]
  return cols


def _fmt(v, key: str) -> str:
  if v is None or (isinstance(v, float) and math.isnan(v)):
    return MISSING
  if key in ("params", "tokens_seen"):
    return f"{v / 1e6:.2f}M"
  if key.endswith("_bpb"):
    return f"{v:.4f}"
  if key.endswith("_ppl"):
    return f"{v:.2f}"
  if key in ("train_wall_s", "tokens_per_s"):
    return f"{v:,.0f}"
  return str(v)


def protocol_line(rows) -> str:
  found = sorted(set().union(*(r["protocols"] for r in rows)))
  return ("Evaluation protocol: " + ("; ".join(found) if found else "no finished evaluation")
          + ". Bits per byte: total log-probability over the UTF-8 bytes of the split.")


def markdown(rows) -> str:
  cols = _columns(rows)
  lines = [protocol_line(rows), "",
           "| " + " | ".join(c[1] for c in cols) + " |",
           "|" + "|".join("---" for _ in cols) + "|"]
  lines += ["| " + " | ".join(_fmt(c[2](r), c[0]) for c in cols) + " |" for r in rows]
  if any(r[f"{s}_ppl"] is None for r in rows for s in SPLITS):
    lines += ["", f"{MISSING}: not available (no finished training or evaluation in the run "
              "folder; `./launch.sh evaluate --workdir=RUN --splits=validation,test`)."]
  return "\n".join(lines) + "\n"


def csv_text(rows) -> str:
  cols = _columns(rows)
  out = io.StringIO()
  w = csv.writer(out, lineterminator="\n")
  w.writerow(["run"] + [c[0] for c in cols] + ["protocol"])
  for r in rows:
    vals = [c[2](r) for c in cols]
    w.writerow([r["run"]] + ["" if v is None else v for v in vals]
               + ["; ".join(sorted(r["protocols"]))])
  return out.getvalue()


def latex(rows) -> str:
  cols = _columns(rows)
  esc = lambda s: str(s).replace("_", r"\_").replace("%", r"\%").replace("—", "--")
  lines = [r"% " + protocol_line(rows), r"\begin{tabular}{" + "r" * len(cols) + "}",
           r"\toprule", " & ".join(esc(c[1]) for c in cols) + r" \\", r"\midrule"]
  lines += [" & ".join(esc(_fmt(c[2](r), c[0])) for c in cols) + r" \\" for r in rows]
  lines += [r"\bottomrule", r"\end{tabular}"]
  return "\n".join(lines) + "\n"


def plot_curves(rows, path: str) -> None:
  """Validation perplexity (and train loss) against tokens seen, one line per run."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, (ax_train, ax_val) = plt.subplots(1, 2, figsize=(10, 4))
  for r in rows:
    c = r["config"]
    per_step = (c.get("train.batch_size") or 0) * (c.get("data.context") or 0)
    path_m = os.path.join(r["dir"], "metrics.jsonl")
    if not os.path.exists(path_m) or not per_step:
      continue
    with open(path_m) as f:
      records = [json.loads(line) for line in f if line.strip()]
    for ax, split, key in ((ax_train, "train", "loss"), (ax_val, c.get("eval.split"),
                                                        "perplexity")):
      pts = [(m["step"] * per_step, m[key]) for m in records if m["split"] == split and key in m]
      if pts:
        ax.plot(*zip(*pts), marker="." if split != "train" else None, label=r["run"])
  ax_train.set(xlabel="tokens seen", ylabel="train loss (nats/token)", title="training")
  ax_val.set(xlabel="tokens seen", ylabel="perplexity", yscale="log",
             title="validation (training's periodic evaluation)")
  ax_val.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def write(out_dir: str, run_dirs) -> list[str]:
  """Writes table.md, table.csv, table.tex and curves.png into `out_dir`; returns paths."""
  rows = collect(run_dirs)
  os.makedirs(out_dir, exist_ok=True)
  paths = []
  for name, text in (("table.md", markdown(rows)), ("table.csv", csv_text(rows)),
                     ("table.tex", latex(rows))):
    paths.append(os.path.join(out_dir, name))
    with open(paths[-1], "w") as f:
      f.write(text)
  paths.append(os.path.join(out_dir, "curves.png"))
  plot_curves(rows, paths[-1])
  return paths


def run_dirs_under(root: str) -> list[str]:
  """Sub-folders of `root` holding a config.json (runs), sorted by name."""
  if not os.path.isdir(root):
    from lm.errors import DataError

    raise DataError(f"no folder {root}")
  return sorted(os.path.join(root, d) for d in os.listdir(root)
                if os.path.exists(run_files.config_path(os.path.join(root, d))))
