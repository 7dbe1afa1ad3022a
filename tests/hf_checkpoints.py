"""Helpers shared by the Hugging Face parity tests (tests/test_hf_*.py): randomising a
reference model and writing damaged copies of a checkpoint directory."""

import json
import os
import shutil


def perturb_torch(model, seed: int, scale: float) -> None:
  """Adds scale * N(0, 1) noise to every parameter of a torch `model`, in place.

  Fresh models have zero biases and unit norm scales, which would hide a wrong mapping of
  those tensors; random values everywhere make every tensor count.
  """
  import torch
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for p in model.parameters():
      p.add_(scale * torch.randn(p.shape, generator=g))


def copy_with(src: str, dst, tensors: dict | None, files=("config.json", "tokenizer.json")):
  """Copies `files` of `src` into `dst`, with `tensors` (None: none) as its safetensors."""
  for name in files:
    shutil.copy(os.path.join(src, name), os.path.join(dst, name))
  if tensors is not None:
    from safetensors.numpy import save_file
    save_file(tensors, os.path.join(dst, "model.safetensors"))


def edit_config(directory, **changes) -> None:
  """Updates `directory`/config.json with `changes`."""
  path = os.path.join(directory, "config.json")
  with open(path) as f:
    config = json.load(f)
  config.update(changes)
  with open(path, "w") as f:
    json.dump(config, f)
