"""What a run keeps in its workdir, and how evaluation and sampling read it back.

    <workdir>/config.json      the resolved config
    <workdir>/tokenizer.json   the tokenizer (see lm.tokenizers)
    <workdir>/checkpoints/     orbax checkpoints (see lm.checkpoint)
    <workdir>/metrics.jsonl    train and eval metrics, one record a line
    <workdir>/tensorboard/     the same metrics as TensorBoard events
    <workdir>/results.json     final evaluation and sample
"""

import json
import os

import ml_collections

from lm.errors import DataError


def config_path(workdir: str) -> str:
  return os.path.join(workdir, "config.json")


def tokenizer_path(workdir: str) -> str:
  return os.path.join(workdir, "tokenizer.json")


def write_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  os.makedirs(workdir, exist_ok=True)
  with open(config_path(workdir), "w") as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True) + "\n")


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a training run wrote into `workdir`."""
  path = config_path(workdir)
  if not os.path.exists(path):
    raise DataError(f"no config at {path}: is {workdir!r} a training workdir?")
  with open(path) as f:
    d = json.load(f)
  # JSON turns tuples into lists; the config only holds tuples of numbers.
  return ml_collections.ConfigDict(d)


def write_json(path: str, obj) -> None:
  """Writes atomically (temp file + rename) so readers never see half a file."""
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2)
    f.write("\n")
  os.replace(tmp, path)


def load_run(workdir: str, step: int | None = None):
  """(config, tokenizer, model_cfg, params) of the checkpoint at `step` (default latest)."""
  import jax  # Deferred: config/JSON helpers above must not need jax.

  from lm import checkpoint, optim, steps, tokenizers, train
  from lm.models import decoder

  config = read_config(workdir)
  tokenizer = tokenizers.load(tokenizer_path(workdir))
  model_cfg = train.model_config(config, tokenizer.vocab_size)
  optimizer = optim.build(config.optim, config.train.steps)
  abstract = jax.eval_shape(lambda: steps.create_state(
      decoder.init_params(model_cfg, jax.random.PRNGKey(0)), optimizer, jax.random.PRNGKey(0)))
  mngr = checkpoint.manager(workdir, async_save=False)
  restored = checkpoint.restore(mngr, abstract, step)
  mngr.close()
  if restored is None:
    raise DataError(f"no checkpoint in {workdir}/checkpoints")
  state, _ = restored
  return config, tokenizer, model_cfg, state["params"]
