r"""Loss and perplexity of a workdir's latest checkpoint on a split.

  ./launch.sh evaluate --workdir=runs/baby --split=test
"""

import os

from absl import flags

from lm import cli, evaluation, families, losses, run_files, train
from lm.models import decoder

_WORKDIR = flags.DEFINE_string("workdir", None, "A training run's workdir.", required=True)
_SPLIT = flags.DEFINE_enum("split", "validation", train.SPLITS, "Split to score.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step; default the latest.")


def main(argv):
  del argv
  if run_files.read_config(_WORKDIR.value).model.get("family", "decoder") != "decoder":
    # Encoder / encoder-decoder runs: their stage's own evaluation (lm.families).
    result = families.evaluate_run(_WORKDIR.value, _STEP.value)
    run_files.write_json(os.path.join(_WORKDIR.value, "eval_family.json"), result)
    print(" | ".join(f"{k} {v:.4f}" for k, v in result.items() if isinstance(v, float)))
    return
  config, tokenizer, model_cfg, params = run_files.load_run(_WORKDIR.value, _STEP.value)
  _, tokens = train.load_data(config, _WORKDIR.value)
  loss_fn = losses.get(config.loss.name)  # Plain NLL: no smoothing or z-loss at eval.
  result = evaluation.evaluate_tokens(params, tokens[_SPLIT.value],
                                      model=decoder.Decoder(model_cfg), loss_fn=loss_fn,
                                      context=config.data.context,
                                      batch_size=config.eval.batch_size)
  result["split"] = _SPLIT.value
  path = os.path.join(_WORKDIR.value, f"eval_{_SPLIT.value}.json")
  run_files.write_json(path, result)
  print(f"{_SPLIT.value}: loss {result['nll']:.4f} nats/token | perplexity "
        f"{result['perplexity']:.3f} | {result['tokens']:.0f} tokens -> {path}")


if __name__ == "__main__":
  cli.run(main)
