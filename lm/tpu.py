"""`launch.sh tpu`: run an entry point on every host of a Cloud TPU VM slice.

    ./launch.sh tpu --name=lm-v4 --zone=us-central2-b --accelerator=v4-32 [--queued] \
        [--spot] [--delete] [--dry-run] -- train --config=configs/gpt2.py:small \
        --workdir=/mnt/runs/gpt2 --config.mesh.shape=fsdp:16

creates the TPU VM (or queued resource) unless it exists, copies this checkout to every
worker, installs it with jax[tpu], runs `./launch.sh ENTRY ARGS` on all workers at once
(`gcloud compute tpus tpu-vm ssh --worker=all`) with LM_MULTIHOST=1 so each process calls
`jax.distributed.initialize()`, keeps one log per host (`logs/host-<hostname>.log` on the
worker, fetched to `logs/<name>/`), and with --delete deletes the VM afterwards.
`--dry-run` prints every command instead of running it. Standard library only: it runs
before any virtual environment exists.
"""

import argparse
import re
import shlex
import subprocess
import sys

CLEANUP = ": always; "  # A no-op prefix marking commands that run even after a failure.
DEFAULT_VERSION = {"v4": "tpu-ubuntu2204-base", "v5p": "v2-alpha-tpuv5",
                   "v5litepod": "v2-alpha-tpuv5-lite", "v6e": "v2-alpha-tpuv6e"}


def hosts(accelerator: str) -> int | None:
  """Worker VMs of a slice: 'v4-32' -> 4 (v4/v5p: N TensorCores, 2 per chip, 4 chips a
  host; v5e/v6e: N chips, one host up to 8, else 4 chips a host). None if unknown."""
  m = re.fullmatch(r"(v4|v5p|v5litepod|v6e|v2|v3)-(\d+)", accelerator)
  if not m:
    return None
  family, n = m.group(1), int(m.group(2))
  if family in ("v2", "v3"):
    return max(1, n // 8)
  if family in ("v4", "v5p"):
    return max(1, n // 8)
  return 1 if n <= 8 else n // 4


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="launch.sh tpu", description=__doc__.split("\n\n")[0])
  p.add_argument("--name", required=True, help="TPU VM (and queued resource) name.")
  p.add_argument("--zone", required=True)
  p.add_argument("--accelerator", required=True, help="e.g. v4-8, v4-32, v5litepod-16.")
  p.add_argument("--version", help="TPU VM runtime version (default by generation).")
  p.add_argument("--project", help="Google Cloud project (default: gcloud's).")
  p.add_argument("--queued", action="store_true", help="Ask through a queued resource and "
                 "wait until it is ACTIVE.")
  p.add_argument("--spot", action="store_true", help="Spot (preemptible) capacity.")
  p.add_argument("--delete", action="store_true", help="Delete the VM after the run "
                 "(alone, without an entry point: only delete).")
  p.add_argument("--dry-run", action="store_true", help="Print the commands, run nothing.")
  p.add_argument("--remote-dir", default="lm", help="Code folder on each worker (~/DIR).")
  p.add_argument("entry", nargs=argparse.REMAINDER,
                 help="-- ENTRY [flags]: what `./launch.sh` runs on every worker.")
  return p


def commands(args) -> list[str]:
  """Every shell command `launch.sh tpu` runs, in order (comments start with '#').

  Fetching logs and deleting the VM (CLEANUP) run even after a failed command.
  """
  entry = args.entry[1:] if args.entry[:1] == ["--"] else args.entry
  where = [f"--zone={args.zone}"] + ([f"--project={args.project}"] if args.project else [])
  loc = " ".join(where)
  vm = "gcloud compute tpus tpu-vm"
  qr = "gcloud compute tpus queued-resources"
  n = hosts(args.accelerator)
  out = [f"# {args.name}: {args.accelerator}, "
         + (f"{n} host(s), workers 0..{n - 1}" if n else "host count unknown")
         + "; every worker runs the same command"]
  if entry:
    generation = args.accelerator.split("-")[0]
    version = args.version or DEFAULT_VERSION.get(generation, "tpu-ubuntu2204-base")
    spot = " --spot" if args.spot else ""
    if args.queued:
      out += [f"{qr} describe {args.name} {loc} >/dev/null 2>&1 || {qr} create {args.name} "
              f"--node-id={args.name} {loc} --accelerator-type={args.accelerator} "
              f"--runtime-version={version}{spot}",
              f"until [ \"$({qr} describe {args.name} {loc} --format='value(state.state)')\""
              f" = ACTIVE ]; do sleep 30; done"]
    else:
      out.append(f"{vm} describe {args.name} {loc} >/dev/null 2>&1 || {vm} create "
                 f"{args.name} {loc} --accelerator-type={args.accelerator} "
                 f"--version={version}{spot}")
    tarball = f"/tmp/lm-{args.name}.tgz"
    remote = args.remote_dir
    out += [
        f"tar czf {tarball} --exclude=./.venv --exclude=./.git --exclude=./runs "
        f"--exclude=./logs .",
        f"{vm} scp {tarball} {args.name}:lm.tgz {loc} --worker=all",
        _ssh(vm, args.name, loc,
             f"mkdir -p ~/{remote} && tar xzf ~/lm.tgz -C ~/{remote} && cd ~/{remote} && "
             "(test -x .venv/bin/python || python3 -m venv .venv) && "
             ".venv/bin/pip install --quiet --upgrade pip && "
             ".venv/bin/pip install --quiet -e . 'jax[tpu]' && touch .venv/.installed"),
        _ssh(vm, args.name, loc,
             f"set -o pipefail; cd ~/{remote} && mkdir -p logs && LM_MULTIHOST=1 "
             f"./launch.sh {' '.join(shlex.quote(a) for a in entry)} 2>&1 "
             "| tee logs/host-$(hostname).log"),
        f"mkdir -p logs/{args.name}",
    ]
    for worker in (range(n) if n else ["all"]):
      out.append(f"{CLEANUP}{vm} scp '{args.name}:{remote}/logs/host-*.log' logs/{args.name}/ {loc} "
                 f"--worker={worker}")
  if args.delete:
    out.append(CLEANUP + (f"{qr} delete {args.name} {loc} --force --quiet" if args.queued
                          else f"{vm} delete {args.name} {loc} --quiet"))
  return out


def _ssh(vm: str, name: str, loc: str, command: str) -> str:
  return f"{vm} ssh {name} {loc} --worker=all --command={shlex.quote(command)}"


def main(argv=None) -> int:
  args = _parser().parse_args(argv)
  entry = args.entry[1:] if args.entry[:1] == ["--"] else args.entry
  if not entry and not args.delete:
    sys.stderr.write("error: nothing to do: give `-- ENTRY [flags]` and/or --delete\n")
    return 2
  status = 0
  for command in commands(args):
    if status and not command.startswith(CLEANUP):
      continue  # Skip the rest after a failure, but still fetch logs and delete.
    print(command, flush=True)
    if args.dry_run or command.startswith("#"):
      continue
    code = subprocess.run(command, shell=True, check=False).returncode
    if code and not status:
      sys.stderr.write(f"launch.sh tpu: command failed with status {code}\n")
      status = code
  return status


if __name__ == "__main__":
  sys.exit(main())
