r"""Pretrain -> SFT -> DPO (-> reward model) on synthetic tasks with known answers.

  ./launch.sh demo_align --workdir=runs/demo

Prints and writes `<workdir>/demo.json`: SFT held-out exact match, DPO held-out preference
accuracy before and after, KL to the reference, reward-model pairwise accuracy.
"""

import json

from absl import flags

from lm import cli, demo_align

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for every stage and the data.")
_REWARD = flags.DEFINE_bool("reward", True, "Also train the reward model.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
  del argv
  report = demo_align.run(_WORKDIR.value, reward=_REWARD.value)
  print(json.dumps(report, indent=2))


if __name__ == "__main__":
  cli.run(main)
