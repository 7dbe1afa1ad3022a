"""One frozen dataclass holds every size and option of a transformer.

Train, eval and decode variants are made with `dataclasses.replace`, never by copying
fields by hand. Every field is validated in `__post_init__` so a bad combination fails
before anything is initialised or compiled.
"""

import dataclasses

import jax.numpy as jnp

from lm.errors import ConfigError

FAMILIES = ("decoder", "encoder", "encoder_decoder")

_CHOICES = {
    "family": FAMILIES,
    "position": ("learned", "rope", "relative"),
    "norm": ("layernorm", "rmsnorm"),
    "norm_position": ("pre", "post"),
    "mlp": ("gelu", "swiglu", "gelu_exact", "relu", "geglu"),
    "pooling": ("first", "mean"),
    "dtype": ("float32", "bfloat16"),
    "param_dtype": ("float32", "bfloat16"),
    "remat": ("none", "full", "dots_saveable"),
}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Sizes and options of a transformer of any family (decoder, encoder, encoder-decoder).

  Defaults are a GPT-2-like decoder. BERT: family='encoder', norm_position='post',
  embed_norm=True, type_vocab_size=2, use_bias=True, mlp='gelu_exact', norm_eps=1e-12,
  mlm_transform=True, pooler=True. T5 v1.0: family='encoder_decoder', position='relative',
  norm='rmsnorm', mlp='relu', scale_attention=False, scale_tied_logits=True.
  """

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
  family: str = "decoder"  # 'decoder' (GPT), 'encoder' (BERT) or 'encoder_decoder' (T5).
  num_encoder_layers: int | None = None  # encoder_decoder: encoder blocks; None: num_layers.
  norm_position: str = "pre"  # 'pre': x + f(norm(x)); 'post' (BERT): norm(x + f(x)).
  embed_norm: bool = False  # A norm on the summed embeddings (BERT).
  type_vocab_size: int = 0  # Token-type (segment) embeddings; 0: none (BERT uses 2).
  scale_attention: bool = True  # Logits / sqrt(head_dim); T5 does not scale.
  relative_buckets: int = 32  # position='relative' (T5): buckets of the bias table.
  relative_max_distance: int = 128  # position='relative': offsets past this share a bucket.
  scale_tied_logits: bool = False  # Hidden * width**-0.5 before a tied unembedding (T5).
  mlm_transform: bool = False  # Encoder MLM head: dense + activation + norm first (BERT).
  pooling: str = "first"  # Encoder sequence classifier: 'first' token or 'mean' of real ones.
  pooler: bool = False  # Sequence classifier: dense + tanh on the pooled vector (BERT).
  num_labels: int | None = None  # Encoder classifier heads: labels (from the data).

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
    for name in ("num_encoder_layers", "num_labels"):
      if getattr(self, name) is not None and getattr(self, name) <= 0:
        raise ConfigError(f"model.{name}={getattr(self, name)} must be positive (or None)")
    if self.type_vocab_size < 0:
      raise ConfigError(f"model.type_vocab_size={self.type_vocab_size} must be >= 0")
    if self.position == "relative" and (self.relative_buckets < 4
                                        or self.relative_max_distance < self.relative_buckets // 2):
      raise ConfigError(f"model.relative_buckets={self.relative_buckets} must be >= 4 and "
                        f"model.relative_max_distance={self.relative_max_distance} >= half of it")
    if self.family == "decoder" and self.position == "relative":
      raise ConfigError("model.position='relative' (T5 bias) is for the encoder and "
                        "encoder_decoder families; the decoder has 'learned' or 'rope'")
    if self.family != "decoder" and (self.scan_layers or self.remat != "none"):
      # The encoder families run their blocks in a plain Python loop (encoder.run_blocks):
      # these flags would be silently ignored, so they are refused instead.
      raise ConfigError(f"model.scan_layers={self.scan_layers} / model.remat={self.remat!r} "
                        f"are implemented for the decoder only; family {self.family!r} "
                        "needs model.scan_layers=False and model.remat='none'")
    if self.family != "encoder_decoder" and self.num_encoder_layers is not None:
      raise ConfigError("model.num_encoder_layers is for family 'encoder_decoder'")
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
    if self.mlp in ("swiglu", "geglu"):
      # Same parameter count as a 4x GELU MLP with three matrices, rounded to 8.
      return -(-(8 * self.width // 3) // 8) * 8
    return 4 * self.width

  @property
  def encoder_layers(self) -> int:
    return self.num_encoder_layers or self.num_layers

  @property
  def compute_dtype(self):
    return jnp.dtype(self.dtype)

  @property
  def storage_dtype(self):
    return jnp.dtype(self.param_dtype)
