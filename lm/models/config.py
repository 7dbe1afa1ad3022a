"""One frozen dataclass holds every size and option of a transformer.

Train, eval and decode variants are made with `dataclasses.replace`, never by copying
fields by hand. Every field is validated in `__post_init__` so a bad combination fails
before anything is initialised or compiled.
"""

import dataclasses

import jax.numpy as jnp

from lm.errors import ConfigError

_CHOICES = {
    "position": ("learned", "rope"),
    "norm": ("layernorm", "rmsnorm"),
    "mlp": ("gelu", "swiglu"),
    "dtype": ("float32", "bfloat16"),
    "param_dtype": ("float32", "bfloat16"),
    "remat": ("none", "full", "dots_saveable"),
}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Sizes and options of a decoder-only transformer."""

  vocab_size: int
  max_len: int  # Longest sequence the model sees (size of the learned position table).
  num_layers: int = 4
  num_heads: int = 4
  width: int = 128  # Residual stream width (d_model).
  num_kv_heads: int | None = None  # None: multi-head attention; fewer: grouped-query.
  head_dim: int | None = None  # None: width // num_heads.
  mlp_width: int | None = None  # None: 4 * width (gelu) or the 2/3 of that (swiglu).
  position: str = "learned"  # 'learned' absolute table or 'rope' (rotary).
  rope_theta: float = 10_000.0
  norm: str = "layernorm"  # 'layernorm' or 'rmsnorm'.
  norm_eps: float = 1e-5
  mlp: str = "gelu"  # 'gelu' (two matrices) or 'swiglu' (three).
  tie_embeddings: bool = True  # Output projection is the transposed token embedding.
  use_bias: bool = False  # Biases on dense layers and LayerNorm.
  dropout: float = 0.0  # On embeddings, attention probabilities and residual branches.
  dtype: str = "float32"  # Compute dtype of activations and matmuls.
  param_dtype: str = "float32"  # Storage dtype of parameters (master weights).
  init_std: float = 0.02  # Normal init std; residual outputs get std / sqrt(2 * layers).
  remat: str = "none"  # Recompute block activations in backward: 'none', 'full', 'dots_saveable'.
  scan_layers: bool = False  # lax.scan over blocks; params stacked on a leading 'layers' axis.

  def __post_init__(self):
    for name, choices in _CHOICES.items():
      if getattr(self, name) not in choices:
        raise ConfigError(f"model.{name}={getattr(self, name)!r}: expected one of {choices}")
    for name in ("vocab_size", "max_len", "num_layers", "num_heads", "width"):
      if getattr(self, name) <= 0:
        raise ConfigError(f"model.{name}={getattr(self, name)} must be positive")
    for name in ("num_kv_heads", "head_dim", "mlp_width"):
      if getattr(self, name) is not None and getattr(self, name) <= 0:
        raise ConfigError(f"model.{name}={getattr(self, name)} must be positive (or None)")
    if self.head_dim is None and self.width % self.num_heads:
      raise ConfigError(f"model.num_heads={self.num_heads} does not divide "
                        f"model.width={self.width} (or set model.head_dim)")
    if self.num_heads % self.kv_heads:
      raise ConfigError(f"model.num_kv_heads={self.kv_heads} does not divide "
                        f"model.num_heads={self.num_heads}")
    if self.position == "rope" and self.dims_per_head % 2:
      raise ConfigError(f"rotary positions need an even head_dim, got {self.dims_per_head}")
    if not isinstance(self.scan_layers, bool):
      raise ConfigError(f"model.scan_layers={self.scan_layers!r} must be True or False")
    if not 0.0 <= self.dropout < 1.0:
      raise ConfigError(f"model.dropout={self.dropout} must be in [0, 1)")

  @property
  def kv_heads(self) -> int:
    return self.num_kv_heads or self.num_heads

  @property
  def dims_per_head(self) -> int:
    return self.head_dim or self.width // self.num_heads

  @property
  def hidden_width(self) -> int:
    if self.mlp_width is not None:
      return self.mlp_width
    if self.mlp == "swiglu":
      # Same parameter count as a 4x GELU MLP with three matrices, rounded to 8.
      return -(-(8 * self.width // 3) // 8) * 8
    return 4 * self.width

  @property
  def compute_dtype(self):
    return jnp.dtype(self.dtype)

  @property
  def storage_dtype(self):
    return jnp.dtype(self.param_dtype)
