"""`launch.sh tpu --dry-run`: the gcloud commands for a multi-host slice and a sweep."""

import os
import shlex
import subprocess

import pytest

from lm import tpu

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _dry_run(*args) -> list[str]:
  out = subprocess.run(["bash", os.path.join(ROOT, "launch.sh"), "tpu", "--dry-run", *args],
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
  assert out.returncode == 0, out.stderr
  return out.stdout.strip().splitlines()


def _remote(line: str) -> str:
  """The command an `ssh --command=...` line runs on the workers, unquoted."""
  words = shlex.split(line)
  return next(w for w in words if w.startswith("--command="))[len("--command="):]


def test_v4_32_multihost_queued_run_then_delete():
  lines = _dry_run("--name=lm-v4", "--zone=us-central2-b", "--accelerator=v4-32", "--queued",
                   "--spot", "--delete", "--", "train", "--config=configs/gpt2.py:small",
                   "--workdir=/mnt/runs/gpt2", "--config.mesh.shape=fsdp:16",
                   "--config.sample.prompt=ROMEO's line")
  assert lines[0] == ("# lm-v4: v4-32, 4 host(s), workers 0..3; every worker runs the same "
                      "command")
  create, wait, tar, copy, install, run, mkdir, *fetch, delete = lines[1:]
  assert create.startswith("gcloud compute tpus queued-resources describe lm-v4 "
                           "--zone=us-central2-b >/dev/null 2>&1 || ")
  assert ("gcloud compute tpus queued-resources create lm-v4 --node-id=lm-v4 "
          "--zone=us-central2-b --accelerator-type=v4-32 "
          "--runtime-version=tpu-ubuntu2204-base --spot") in create
  assert "= ACTIVE ]; do sleep 30; done" in wait
  assert tar.startswith("tar czf /tmp/lm-lm-v4.tgz") and "--exclude=./.venv" in tar
  assert copy == ("gcloud compute tpus tpu-vm scp /tmp/lm-lm-v4.tgz lm-v4:lm.tgz "
                  "--zone=us-central2-b --worker=all")
  assert "--worker=all" in shlex.split(install)
  assert "pip install --quiet -e . 'jax[tpu]'" in _remote(install)
  assert shlex.split(run)[:7] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "lm-v4",
                                  "--zone=us-central2-b"]
  assert "--worker=all" in shlex.split(run)
  remote = _remote(run)
  assert remote.endswith("2>&1 | tee logs/host-$(hostname).log")
  launched = shlex.split(remote.split("LM_MULTIHOST=1 ")[1].split(" 2>&1")[0])
  assert launched == ["./launch.sh", "train", "--config=configs/gpt2.py:small",
                      "--workdir=/mnt/runs/gpt2", "--config.mesh.shape=fsdp:16",
                      "--config.sample.prompt=ROMEO's line"]  # Quoting survives two shells.
  assert mkdir == "mkdir -p logs/lm-v4"
  assert [f.split("--worker=")[1] for f in fetch] == ["0", "1", "2", "3"]
  assert all("'lm-v4:lm/logs/host-*.log' logs/lm-v4/" in f for f in fetch)
  assert delete.endswith("gcloud compute tpus queued-resources delete lm-v4 "
                         "--zone=us-central2-b --force --quiet")
  for line in lines:
    subprocess.run(["bash", "-n", "-c", line], check=True)  # Every line parses as shell.


def test_sweep_runs_the_sweep_entry_on_the_vm():
  lines = _dry_run("--name=sweep1", "--zone=europe-west4-a", "--accelerator=v5litepod-8",
                   "--project=my-proj", "--", "sweep", "--config=configs/ptb_word.py",
                   "--workdir=runs/ptb_word")
  assert any(line.startswith("gcloud compute tpus tpu-vm describe sweep1 "
                             "--zone=europe-west4-a --project=my-proj") and
             "--accelerator-type=v5litepod-8 --version=v2-alpha-tpuv5-lite" in line
             for line in lines)
  run = [line for line in lines if "LM_MULTIHOST=1" in line]
  assert len(run) == 1
  assert ("./launch.sh sweep --config=configs/ptb_word.py --workdir=runs/ptb_word"
          in _remote(run[0]))
  assert not any("delete" in line for line in lines)


def test_delete_alone():
  lines = _dry_run("--name=old", "--zone=z", "--accelerator=v4-8", "--delete")
  assert lines[1:] == [": always; gcloud compute tpus tpu-vm delete old --zone=z --quiet"]


def test_nothing_to_do_is_an_error():
  out = subprocess.run(["bash", os.path.join(ROOT, "launch.sh"), "tpu", "--name=x", "--zone=z",
                        "--accelerator=v4-8"], capture_output=True, text=True, timeout=60)
  assert out.returncode == 2 and "nothing to do" in out.stderr


@pytest.mark.parametrize("accelerator,n", [("v4-8", 1), ("v4-32", 4), ("v5p-128", 16),
                                            ("v5litepod-8", 1), ("v5litepod-16", 4),
                                            ("v6e-256", 64), ("v3-32", 4), ("x-1", None)])
def test_hosts(accelerator, n):
  assert tpu.hosts(accelerator) == n
