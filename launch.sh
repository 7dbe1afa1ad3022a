#!/usr/bin/env bash
# Sets up the environment (a venv in the repo, once) and runs an entry point.
#
#   ./launch.sh                      train the default experiment (shakespeare_char:baby),
#                                    evaluate it, print validation perplexity and a sample
#   ./launch.sh test [pytest args]   install test extras and run the test suite
#   ./launch.sh ENTRY [flags]        run experiments/ENTRY.py, e.g.
#       ./launch.sh train --config=configs/shakespeare_char.py:baby --workdir=runs/baby \
#           --config.optim.lr=3e-4
#       ./launch.sh evaluate --workdir=runs/baby --split=test
#       ./launch.sh sample --workdir=runs/baby --prompt="ROMEO:"
#       ./launch.sh benchmark --config=configs/shakespeare_char.py:baby
#       ./launch.sh compile --config=configs/gpt2.py:small --cpu_devices=8 --mesh=fsdp:8
#   ./launch.sh tpu [--dry-run] --name=N --zone=Z --accelerator=v4-32 [--queued] [--spot]
#       [--delete] -- ENTRY [flags]   create or reuse a TPU VM, copy and install this
#                                    checkout, run `./launch.sh ENTRY flags` on every host
#                                    (per-host logs in logs/N/), delete with --delete
#   ./launch.sh sweep --config=configs/x.py[:arg] --workdir=runs/x
#                                    train + evaluate every point of get_sweep(arg), one
#                                    process each (finished points skipped, unfinished
#                                    resumed), then write the table into runs/x
#
# Environment: PYTHON (default python3, >= 3.10), LM_VENV (default .venv),
# TFDS_DATA_DIR (TFDS data dir; offline, put input.txt in $TFDS_DATA_DIR/downloads/manual),
# LM_RETRIES (default 0: restart `train` or `sweep` this many times when it exits with
# status 75, i.e. it was preempted by SIGTERM/SIGINT after saving a checkpoint; a restarted
# sweep skips its finished points and resumes the interrupted one).
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=${LM_VENV:-.venv}

# Installs the package (editable) with the given extras unless setup.cfg is unchanged since
# the last install with those extras. Idempotent: a second call does nothing.
setup_env() {
  local extras=$1 stamp="$VENV/.installed${1:+-$1}"
  if [[ -f "$stamp" && "$stamp" -nt setup.cfg ]]; then return; fi
  if [[ ! -x "$VENV/bin/python" ]]; then
    echo "launch.sh: creating $VENV" >&2
    "$PYTHON" -m venv "$VENV"
  fi
  echo "launch.sh: installing lm${extras:+[$extras]} into $VENV" >&2
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -e ".${extras:+[$extras]}"
  touch "$stamp"
}

# Runs the command; while it exits 75 (preempted, checkpoint saved), runs it again, at most
# LM_RETRIES times.
run_with_retries() {
  local tries=0 status
  while true; do
    status=0
    "$@" || status=$?
    if [[ $status -ne 75 || $tries -ge ${LM_RETRIES:-0} ]]; then return $status; fi
    tries=$((tries + 1))
    echo "launch.sh: preempted; restart $tries of ${LM_RETRIES}" >&2
  done
}

cmd=${1:-default}
[[ $# -gt 0 ]] && shift
case "$cmd" in
  default)
    setup_env ""
    run_with_retries "$VENV/bin/python" -m experiments.train \
      --config=configs/shakespeare_char.py:baby --workdir=runs/shakespeare_char_baby "$@"
    ;;
  tpu)
    exec "$PYTHON" -m lm.tpu "$@"  # Standard library only: no venv needed locally.
    ;;
  test)
    setup_env test
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  sweep)
    setup_env ""
    run_with_retries "$VENV/bin/python" -m experiments.sweep "$@"  # Exits 75 if preempted.
    ;;
  -h|--help|help)
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
    ;;
  *)
    if [[ ! -f "experiments/$cmd.py" ]]; then
      echo "launch.sh: no entry point experiments/$cmd.py; see ./launch.sh --help" >&2
      exit 2
    fi
    setup_env ""
    run_with_retries "$VENV/bin/python" -m "experiments.$cmd" "$@"
    ;;
esac
