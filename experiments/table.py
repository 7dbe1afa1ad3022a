r"""Collects finished runs into a perplexity table (Markdown, CSV, LaTeX) and learning curves.

  ./launch.sh table --runs=runs/ptb_word --out=docs/tables/ptb_word

Rows are the run folders under --runs (or the folders listed in --run_dirs); columns are the
config fields that vary, parameters, tokens seen, wall time and validation/test perplexity
and bits per byte, with the evaluation protocol in the header. Missing evaluations are
marked, not fatal.
"""

from absl import flags

from lm import cli, tables
from lm.errors import UserError

_RUNS = flags.DEFINE_string("runs", None, "Folder whose sub-folders are runs.")
_RUN_DIRS = flags.DEFINE_list("run_dirs", None, "Explicit run folders (instead of --runs).")
_OUT = flags.DEFINE_string("out", None, "Output folder; default --runs.")


def main(argv):
  del argv
  if not _RUNS.value and not _RUN_DIRS.value:
    raise UserError("give --runs=FOLDER or --run_dirs=A,B")
  run_dirs = _RUN_DIRS.value or tables.run_dirs_under(_RUNS.value)
  out = _OUT.value or _RUNS.value
  if not out:
    raise UserError("give --out=FOLDER with --run_dirs")
  paths = tables.write(out, run_dirs)
  print(open(paths[0]).read() + "\nwrote " + ", ".join(paths))


if __name__ == "__main__":
  cli.run(main)
