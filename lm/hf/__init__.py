"""Hugging Face checkpoints in and out: `config.json` + `model.safetensors` + tokenizer files.

    model_cfg, params, tokenizer = lm.hf.load("ckpt/gpt2")
    lm.hf.save("out/gpt2", model_cfg, params, tokenizer)   # transformers loads `out/gpt2`

`config.json`'s `model_type` picks a family from `FAMILIES`. A family is a module with

  MODEL_TYPE: str; ARCHITECTURE: str            e.g. 'gpt2', 'GPT2LMHeadModel'
  config_from_hf(hf: dict, names) -> model config  ConfigError naming unsupported options
                                                (names: the canonical tensor names, for
                                                what only the weights tell, e.g. untied)
  config_to_hf(model_cfg, tokenizer) -> dict    ConfigError naming what HF can't express
                                                (tokenizer may be None; it gives special ids)
  tensor_shapes(model_cfg) -> {name: shape}     every tensor, named as canonical_names does
  canonical_names(tensors) -> tensors           file names -> those names (strip prefixes,
                                                drop known buffers, check tied heads)
  params_from_hf(tensors, model_cfg) -> params  from checked float32 tensors
  params_to_hf(params, model_cfg) -> tensors    names as written to model.safetensors
  abstract_params(model_cfg) -> pytree          the lm model's param shapes
  load_tokenizer(directory, hf: dict) -> tokenizer or None

Loading checks everything before returning: the config maps, the tensor names and shapes
are exactly those the config implies, and the params built from them have exactly the lm
model's structure and shapes.

A family whose checkpoints come with different heads (BERT: with or without the MLM head)
also defines `head(names) -> str` (from tensor names or the params' top-level keys), and
its tensor_shapes / params_from_hf / abstract_params take that `head=`.
"""

import importlib

import jax
import numpy as np

from lm.errors import ConfigError, DataError
from lm.hf import safetensors_io
from lm.hf import tokenizer as hf_tokenizer

FAMILIES = {"gpt2": "lm.hf.gpt2", "bert": "lm.hf.bert", "t5": "lm.hf.t5"}  # model_type -> module.
# The family a run of each lm model family exports to.
EXPORT_TYPES = {"decoder": "gpt2", "encoder": "bert", "encoder_decoder": "t5"}


def family(model_type) -> object:
  """The family module of a config.json `model_type`."""
  if model_type not in FAMILIES:
    raise ConfigError(f"config.json model_type={model_type!r} is not supported; supported: "
                      f"{sorted(FAMILIES)}")
  return importlib.import_module(FAMILIES[model_type])


def load(directory: str):
  """(model_cfg, params, tokenizer) of a Hugging Face checkpoint directory.

  params are float32 numpy arrays in the lm model's pytree; tokenizer is None when the
  directory has no tokenizer files. Raises ConfigError/DataError (naming the option or
  tensor) on anything that does not map exactly.
  """
  hf = safetensors_io.read_config(directory)
  fam = family(hf.get("model_type"))
  tensors = fam.canonical_names(safetensors_io.read_weights(directory))
  model_cfg = fam.config_from_hf(hf, frozenset(tensors))
  kw = _head(fam, tensors)
  tensors = safetensors_io.check_tensors(tensors, fam.tensor_shapes(model_cfg, **kw), directory)
  params = fam.params_from_hf(tensors, model_cfg, **kw)
  _check_params(params, fam.abstract_params(model_cfg, **kw), directory)
  tokenizer = fam.load_tokenizer(directory, hf)
  if tokenizer is not None and tokenizer.vocab_size > model_cfg.vocab_size:
    raise DataError(f"{directory}: the tokenizer has {tokenizer.vocab_size} tokens, more "
                    f"than the model's vocab_size={model_cfg.vocab_size}")
  return model_cfg, params, tokenizer


def _head(fam, names) -> dict:
  """{'head': ...} for families with several heads (see above), else {}."""
  return {"head": fam.head(names)} if hasattr(fam, "head") else {}


def save(directory: str, model_cfg, params, tokenizer=None, *, model_type: str | None = None):
  """Writes `params` of `model_cfg` as a `model_type` checkpoint into a new `directory`.

  model_type: None picks it from the model's family (`EXPORT_TYPES`: decoder -> gpt2,
  encoder -> bert, encoder_decoder -> t5).

  The tokenizer is written too when it has a Hugging Face form (`lm.hf.tokenizer.from_lm`:
  Hugging Face tokenizers, and lm's byte and char tokenizers as tokenizer.json). Raises
  ConfigError naming each option the family cannot express, before writing anything.
  """
  fam = family(model_type or EXPORT_TYPES[model_cfg.family])
  if tokenizer is not None:
    tokenizer = hf_tokenizer.from_lm(tokenizer)  # None if it has no Hugging Face form.
  hf = fam.config_to_hf(model_cfg, tokenizer)
  params = jax.tree.map(lambda x: np.asarray(x, np.float32), params)
  kw = _head(fam, params)
  _check_params(params, fam.abstract_params(model_cfg, **kw), "params to export")
  tensors = fam.params_to_hf(params, model_cfg)
  safetensors_io.check_tensors(fam.canonical_names(tensors), fam.tensor_shapes(model_cfg, **kw),
                               "params to export")
  safetensors_io.write_checkpoint(directory, hf, tensors)
  if tokenizer is not None:
    tokenizer.save_hf(directory)


def export_run(workdir: str, out: str, *, step: int | None = None,
               model_type: str | None = None) -> list[str]:
  """Exports a training run's checkpoint (default the latest) to `out`; returns the files.

  model_type: None picks it from the run's model family (see `save`).

  The run's tokenizer is written as tokenizer.json (see `save`). A config `model_type`
  cannot express is refused before the checkpoint is restored or anything is written.
  """
  import os

  from lm import run_files, tokenizers, train  # Deferred: runs need the training stack.
  config = run_files.read_config(workdir)
  vocab_size = tokenizers.load(run_files.tokenizer_path(workdir)).vocab_size
  model_cfg = train.model_config(config, vocab_size)
  model_type = model_type or EXPORT_TYPES[model_cfg.family]
  family(model_type).config_to_hf(model_cfg)  # Before restoring.
  _, tokenizer, model_cfg, params = run_files.load_run(workdir, step)
  save(out, model_cfg, params, tokenizer, model_type=model_type)
  return sorted(os.listdir(out))


def _check_params(params, abstract, source: str) -> None:
  """DataError unless `params` has exactly the structure and shapes of `abstract`."""
  import flax.linen as nn  # Deferred with jax-heavy imports to the first load.
  want = {jax.tree_util.keystr(k): tuple(v.shape)
          for k, v in jax.tree_util.tree_leaves_with_path(nn.meta.unbox(abstract))}
  got = {jax.tree_util.keystr(k): tuple(np.shape(v))
         for k, v in jax.tree_util.tree_leaves_with_path(params)}
  if want != got:
    diff = sorted(set(want.items()) ^ set(got.items()))[:6]
    raise DataError(f"{source}: params do not match the lm model's (first differences: "
                    f"{diff})")
