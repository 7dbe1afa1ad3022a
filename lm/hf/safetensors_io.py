"""Reading and writing the files of a Hugging Face checkpoint directory, with numpy only.

    <dir>/config.json                      the model config ('model_type' picks the family)
    <dir>/model.safetensors                the weights (preferred), or
    <dir>/model.safetensors.index.json     a sharded checkpoint's index plus its shards, or
    <dir>/pytorch_model.bin                PyTorch's format, read only as described below

`pytorch_model.bin` is a pickle. Unpickling can run arbitrary code, so it is read only with
`torch.load(weights_only=True)`, PyTorch's restricted unpickler that accepts tensors and
plain containers and refuses everything else; a file it refuses is refused here too, with a
message. torch is imported only on that path (it is a test extra, not a dependency), and a
machine without it is told to convert the file to safetensors instead.

`check_tensors` validates a whole set of tensors against the expected names and shapes
before anything is built from them, so a bad checkpoint fails with one message naming the
tensor and nothing is half loaded.
"""

import json
import os

import numpy as np
from safetensors.numpy import load_file, save_file

from lm.errors import ConfigError, DataError

CONFIG = "config.json"
SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PYTORCH_BIN = "pytorch_model.bin"


def read_config(directory: str) -> dict:
  """The parsed `config.json` of a checkpoint directory."""
  if not os.path.isdir(directory):
    raise DataError(f"Hugging Face checkpoint directory {directory!r} does not exist")
  path = os.path.join(directory, CONFIG)
  if not os.path.exists(path):
    raise DataError(f"no {CONFIG} in {directory}: not a Hugging Face checkpoint directory")
  try:
    with open(path, encoding="utf-8") as f:
      config = json.load(f)
  except json.JSONDecodeError as e:
    raise DataError(f"{path} is not valid JSON: {e}") from None
  if not isinstance(config, dict):
    raise DataError(f"{path} must hold a JSON object")
  return config


def read_weights(directory: str) -> dict[str, np.ndarray]:
  """Every tensor of the checkpoint, by its name in the file, as numpy arrays."""
  single = os.path.join(directory, SAFETENSORS)
  index = os.path.join(directory, SAFETENSORS_INDEX)
  pickled = os.path.join(directory, PYTORCH_BIN)
  if os.path.exists(single):
    return _load_safetensors(single)
  if os.path.exists(index):
    return _read_sharded(directory, index)
  if os.path.exists(pickled):
    return _read_pytorch_bin(pickled)
  raise DataError(f"no weights in {directory}: expected {SAFETENSORS}, {SAFETENSORS_INDEX} "
                  f"or {PYTORCH_BIN}")


def _load_safetensors(path: str) -> dict[str, np.ndarray]:
  try:
    return load_file(path)
  except TypeError:  # numpy has no bfloat16: safetensors.numpy refuses BF16 tensors.
    return _load_with_ml_dtypes(path)
  except Exception as e:  # safetensors raises its own error types for corrupt headers.
    raise DataError(f"cannot read {path}: {e}") from None


_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
           "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
           "BOOL": "bool"}


def _load_with_ml_dtypes(path: str) -> dict[str, np.ndarray]:
  """The safetensors layout read by hand (8-byte little-endian header size, JSON header of
  dtype/shape/data_offsets, then the data), with ml_dtypes' bfloat16 for BF16."""
  import ml_dtypes  # A dependency of jax.
  with open(path, "rb") as f:
    data = f.read()
  size = int.from_bytes(data[:8], "little")
  try:
    header = json.loads(data[8:8 + size])
  except ValueError:
    raise DataError(f"cannot read {path}: malformed safetensors header") from None
  body, out = data[8 + size:], {}
  for name, info in header.items():
    if name == "__metadata__":
      continue
    if info["dtype"] not in _DTYPES:
      raise DataError(f"{path}: tensor {name!r} has unsupported dtype {info['dtype']}")
    dtype = ml_dtypes.bfloat16 if info["dtype"] == "BF16" else np.dtype(_DTYPES[info["dtype"]])
    start, end = info["data_offsets"]
    out[name] = np.frombuffer(body[start:end], dtype).reshape(info["shape"])
  return out


def _read_sharded(directory: str, index_path: str) -> dict[str, np.ndarray]:
  with open(index_path, encoding="utf-8") as f:
    weight_map = json.load(f).get("weight_map")
  if not isinstance(weight_map, dict) or not weight_map:
    raise DataError(f"{index_path} has no 'weight_map'")
  tensors = {}
  for shard in sorted(set(weight_map.values())):
    path = os.path.join(directory, shard)
    if not os.path.exists(path):
      raise DataError(f"{index_path} names shard {shard!r}, which is missing")
    tensors.update(_load_safetensors(path))
  return tensors


def _read_pytorch_bin(path: str) -> dict[str, np.ndarray]:
  try:
    import torch  # Optional: only this path needs it.
  except ImportError:
    raise DataError(f"{path} is a PyTorch pickle and torch is not installed; convert it to "
                    f"{SAFETENSORS} (or install torch to read it with weights_only=True)") from None
  try:
    state = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # pickle.UnpicklingError for anything beyond tensors and containers.
    raise DataError(f"refusing {path}: it cannot be read with torch.load(weights_only=True) "
                    f"(which never runs code from the file): {str(e).splitlines()[0]}") from None
  if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
    raise DataError(f"{path} does not hold a flat dict of tensors (a state dict)")
  return {k: v.detach().to(torch.float32).numpy() if v.is_floating_point() else v.numpy()
          for k, v in state.items()}


def check_tensors(tensors: dict[str, np.ndarray], expected: dict[str, tuple[int, ...]],
                  source: str) -> dict[str, np.ndarray]:
  """`tensors` as float32 after checking they are exactly the `expected` names and shapes.

  Raises DataError naming the missing, unexpected or misshapen tensors (all of them).
  """
  missing = sorted(set(expected) - set(tensors))
  unexpected = sorted(set(tensors) - set(expected))
  problems = []
  if missing:
    problems.append(f"missing tensors {_listing(missing)}")
  if unexpected:
    problems.append(f"unexpected tensors {_listing(unexpected)}")
  for name in sorted(set(expected) & set(tensors)):
    if tuple(tensors[name].shape) != tuple(expected[name]):
      problems.append(f"tensor {name!r} has shape {tuple(tensors[name].shape)}, the config "
                      f"implies {tuple(expected[name])}")
  if problems:
    raise DataError(f"{source}: " + "; ".join(problems))
  for name, x in tensors.items():
    if not (np.issubdtype(x.dtype, np.floating) or x.dtype.name == "bfloat16"):
      raise DataError(f"{source}: tensor {name!r} has dtype {x.dtype}, expected a float")
  return {name: np.asarray(x, np.float32) for name, x in tensors.items()}


def _listing(names: list[str], limit: int = 8) -> str:
  shown = ", ".join(repr(n) for n in names[:limit])
  return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def write_checkpoint(directory: str, config: dict, tensors: dict[str, np.ndarray]) -> None:
  """Writes config.json and model.safetensors (float32) into a new or empty `directory`.

  Both files are written under temporary names and renamed at the end, so a failure leaves
  no checkpoint that looks complete.
  """
  os.makedirs(directory, exist_ok=True)
  for name in (CONFIG, SAFETENSORS, SAFETENSORS_INDEX, PYTORCH_BIN):
    if os.path.exists(os.path.join(directory, name)):
      raise ConfigError(f"{directory} already holds {name}; export into a new directory")
  weights = {k: np.ascontiguousarray(v, np.float32) for k, v in tensors.items()}
  tmp_weights = os.path.join(directory, SAFETENSORS + ".tmp")
  tmp_config = os.path.join(directory, CONFIG + ".tmp")
  save_file(weights, tmp_weights, metadata={"format": "pt"})  # transformers expects 'pt'.
  with open(tmp_config, "w", encoding="utf-8") as f:
    json.dump(config, f, indent=2, sort_keys=True)
    f.write("\n")
  os.replace(tmp_weights, os.path.join(directory, SAFETENSORS))
  os.replace(tmp_config, os.path.join(directory, CONFIG))
