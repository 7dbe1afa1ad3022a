"""GPT-2 (Hugging Face `model_type: gpt2`) <-> `lm.models.decoder.Decoder`.

GPT-2 is the Decoder with learned positions, LayerNorm (eps `layer_norm_epsilon`) with
biases, a tanh-approximated GELU MLP ('gelu_new', which is `nn.gelu(approximate=True)`),
biases on every projection (`use_bias=True`) and the output projection tied to the token
embedding. Every weight maps one to one:

  HF tensor (Conv1D weights are [in, out])    lm param
  wte.weight [vocab, width]                   embedding
  wpe.weight [n_positions, width]             position_embedding
  h.{i}.ln_1.weight / .bias                   block_{i}/attention_norm/scale / bias
  h.{i}.attn.c_attn.weight [width, 3 width]   block_{i}/attention/{query,key,value}/kernel
                                              ([width, heads, head_dim] each, in that order)
  h.{i}.attn.c_attn.bias [3 width]            block_{i}/attention/{query,key,value}/bias
  h.{i}.attn.c_proj.weight / .bias            block_{i}/attention/out/kernel [heads,
                                              head_dim, width] / bias
  h.{i}.ln_2.weight / .bias                   block_{i}/mlp_norm/scale / bias
  h.{i}.mlp.c_fc.weight / .bias               block_{i}/mlp/up/kernel [width, mlp] / bias
  h.{i}.mlp.c_proj.weight / .bias             block_{i}/mlp/down/kernel [mlp, width] / bias
  ln_f.weight / .bias                         final_norm/scale / bias

Checkpoints name these with a 'transformer.' prefix (GPT2LMHeadModel) or without it
(GPT2Model, e.g. the original `gpt2` upload); both load, and export writes the prefixed
GPT2LMHeadModel layout. The causal-mask buffers old checkpoints carry (`attn.bias`,
`attn.masked_bias`) are ignored; an `lm_head.weight` must equal `wte.weight` (tied).
"""

import numpy as np

from lm.errors import ConfigError, DataError
from lm.hf import tokenizer as hf_tokenizer
from lm.models.config import ModelConfig
from lm.models import decoder

MODEL_TYPE = "gpt2"
ARCHITECTURE = "GPT2LMHeadModel"
# Names of the tanh approximation of GELU in transformers' ACT2FN; all equal gelu_new.
_TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")
EOS = "<|endoftext|>"  # GPT-2's BOS, EOS and document separator.
_PREFIX = "transformer."
_IGNORED_BUFFERS = (".attn.bias", ".attn.masked_bias")


# ---------------------------------------------------------------------------- config


def config_from_hf(hf: dict, names=()) -> ModelConfig:
  """The lm ModelConfig computing what this GPT2Config computes; ConfigError names any
  option lm cannot express. (`names`, the tensor names, tell GPT-2 nothing more.)"""
  get = lambda key, default=None: hf.get(key, default)  # noqa: E731
  refuse = []
  if get("activation_function", "gelu_new") not in _TANH_GELUS:
    refuse.append(f"activation_function={get('activation_function')!r} (lm's GELU MLP is the "
                  f"tanh approximation: one of {_TANH_GELUS})")
  for key, supported in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                         ("add_cross_attention", False), ("tie_word_embeddings", True)):
    if bool(get(key, supported)) != supported:
      refuse.append(f"{key}={get(key)!r} (lm supports only {supported})")
  # reorder_and_upcast_attn only moves the scaling and upcasts the attention scores to
  # float32, which lm always does: in float32 it computes the same function, so it is
  # accepted.
  drops = {k: get(k, 0.1) for k in ("resid_pdrop", "embd_pdrop", "attn_pdrop")}
  if len(set(drops.values())) > 1:
    refuse.append(f"resid_pdrop/embd_pdrop/attn_pdrop={tuple(drops.values())} (lm has one "
                  "dropout rate for all three)")
  for key in ("n_embd", "n_head", "n_layer", "n_positions", "vocab_size"):
    if not isinstance(get(key), int):
      refuse.append(f"{key}={get(key)!r} (need an integer)")
  if refuse:
    raise ConfigError("GPT-2 config options lm does not support: " + "; ".join(refuse))
  if hf["n_embd"] % hf["n_head"]:
    raise ConfigError(f"GPT-2 config: n_head={hf['n_head']} does not divide "
                      f"n_embd={hf['n_embd']}")
  return ModelConfig(
      vocab_size=hf["vocab_size"], max_len=hf["n_positions"], num_layers=hf["n_layer"],
      num_heads=hf["n_head"], width=hf["n_embd"], mlp_width=get("n_inner"),
      position="learned", norm="layernorm", norm_eps=float(get("layer_norm_epsilon", 1e-5)),
      mlp="gelu", tie_embeddings=True, use_bias=True, dropout=float(drops["resid_pdrop"]),
      init_std=float(get("initializer_range", 0.02)), dtype="float32", param_dtype="float32")


def config_to_hf(cfg: ModelConfig, tokenizer=None) -> dict:
  """The GPT2Config (as a config.json dict) of `cfg`; ConfigError names every option GPT-2
  cannot express. GPT-2's <|endoftext|> is both BOS and EOS, taken from the tokenizer (None
  when it has no such token)."""
  refuse = []
  for name, supported in (("position", "learned"), ("norm", "layernorm"), ("mlp", "gelu"),
                          ("tie_embeddings", True), ("use_bias", True)):
    if getattr(cfg, name) != supported:
      refuse.append(f"model.{name}={getattr(cfg, name)!r} (GPT-2 has {supported!r})")
  if cfg.kv_heads != cfg.num_heads:
    refuse.append(f"model.num_kv_heads={cfg.num_kv_heads} (GPT-2 has multi-head attention)")
  if cfg.dims_per_head * cfg.num_heads != cfg.width:
    refuse.append(f"model.head_dim={cfg.head_dim} (GPT-2 has width // num_heads)")
  if refuse:
    raise ConfigError("cannot export to GPT-2: " + "; ".join(refuse))
  eos = None if tokenizer is None else tokenizer.special_ids.get(EOS)
  return {
      "model_type": MODEL_TYPE, "architectures": [ARCHITECTURE],
      "vocab_size": cfg.vocab_size, "n_positions": cfg.max_len, "n_embd": cfg.width,
      "n_layer": cfg.num_layers, "n_head": cfg.num_heads,
      "n_inner": None if cfg.hidden_width == 4 * cfg.width else cfg.hidden_width,
      "activation_function": "gelu_new", "layer_norm_epsilon": cfg.norm_eps,
      "resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout, "attn_pdrop": cfg.dropout,
      "initializer_range": cfg.init_std, "scale_attn_weights": True,
      "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False,
      "add_cross_attention": False, "tie_word_embeddings": True, "use_cache": True,
      "dtype": "float32", "bos_token_id": eos, "eos_token_id": eos,
  }


# ---------------------------------------------------------------------------- weights


def tensor_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
  """Every tensor of the checkpoint (names as `canonical_names` returns them) and its shape."""
  w, m = cfg.width, cfg.hidden_width
  shapes = {"wte.weight": (cfg.vocab_size, w), "wpe.weight": (cfg.max_len, w),
            "ln_f.weight": (w,), "ln_f.bias": (w,)}
  for i in range(cfg.num_layers):
    shapes.update({
        f"h.{i}.ln_1.weight": (w,), f"h.{i}.ln_1.bias": (w,),
        f"h.{i}.attn.c_attn.weight": (w, 3 * w), f"h.{i}.attn.c_attn.bias": (3 * w,),
        f"h.{i}.attn.c_proj.weight": (w, w), f"h.{i}.attn.c_proj.bias": (w,),
        f"h.{i}.ln_2.weight": (w,), f"h.{i}.ln_2.bias": (w,),
        f"h.{i}.mlp.c_fc.weight": (w, m), f"h.{i}.mlp.c_fc.bias": (m,),
        f"h.{i}.mlp.c_proj.weight": (m, w), f"h.{i}.mlp.c_proj.bias": (w,),
    })
  return shapes


def canonical_names(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The checkpoint's tensors named as in `tensor_shapes`: the 'transformer.' prefix
  dropped, causal-mask buffers dropped, a tied `lm_head.weight` checked and dropped."""
  out = {}
  for name, x in tensors.items():
    name = name[len(_PREFIX):] if name.startswith(_PREFIX) else name
    if name.endswith(_IGNORED_BUFFERS):
      continue
    out[name] = x
  head = out.pop("lm_head.weight", None)
  if head is not None:
    wte = out.get("wte.weight")
    if wte is None or head.shape != wte.shape or not np.array_equal(head, wte):
      raise DataError("lm_head.weight differs from wte.weight: lm imports GPT-2 only with "
                      "the output projection tied to the token embedding")
  return out


def abstract_params(cfg: ModelConfig):
  """Shapes of the lm model's params (the family interface; see lm/hf/__init__.py)."""
  return decoder.abstract_params(cfg)


def params_from_hf(t: dict[str, np.ndarray], cfg: ModelConfig) -> dict:
  """lm Decoder params from checked tensors (see `tensor_shapes`)."""
  h, d, w = cfg.num_heads, cfg.dims_per_head, cfg.width
  norm = lambda p: {"scale": t[p + ".weight"], "bias": t[p + ".bias"]}  # noqa: E731
  dense = lambda p: {"kernel": t[p + ".weight"], "bias": t[p + ".bias"]}  # noqa: E731
  params = {"embedding": t["wte.weight"], "position_embedding": t["wpe.weight"],
            "final_norm": norm("ln_f")}
  for i in range(cfg.num_layers):
    p = f"h.{i}."
    qkv_w = np.split(t[p + "attn.c_attn.weight"], 3, axis=1)  # 3 x [width, width]
    qkv_b = np.split(t[p + "attn.c_attn.bias"], 3)
    attention = {name: {"kernel": k.reshape(w, h, d), "bias": b.reshape(h, d)}
                 for name, k, b in zip(("query", "key", "value"), qkv_w, qkv_b)}
    attention["out"] = {"kernel": t[p + "attn.c_proj.weight"].reshape(h, d, w),
                        "bias": t[p + "attn.c_proj.bias"]}
    params[f"block_{i}"] = {
        "attention_norm": norm(p + "ln_1"), "attention": attention,
        "mlp_norm": norm(p + "ln_2"),
        "mlp": {"up": dense(p + "mlp.c_fc"), "down": dense(p + "mlp.c_proj")}}
  return params


def params_to_hf(params: dict, cfg: ModelConfig) -> dict[str, np.ndarray]:
  """GPT2LMHeadModel tensors (with the 'transformer.' prefix) from lm Decoder params."""
  a = lambda x: np.asarray(x, np.float32)  # noqa: E731
  w = cfg.width
  out = {"wte.weight": a(params["embedding"]), "wpe.weight": a(params["position_embedding"]),
         "ln_f.weight": a(params["final_norm"]["scale"]),
         "ln_f.bias": a(params["final_norm"]["bias"])}
  for i in range(cfg.num_layers):
    b, p = params[f"block_{i}"], f"h.{i}."
    att = b["attention"]
    qkv = ("query", "key", "value")
    out.update({
        p + "ln_1.weight": a(b["attention_norm"]["scale"]),
        p + "ln_1.bias": a(b["attention_norm"]["bias"]),
        p + "attn.c_attn.weight": np.concatenate(
            [a(att[n]["kernel"]).reshape(w, -1) for n in qkv], axis=1),
        p + "attn.c_attn.bias": np.concatenate([a(att[n]["bias"]).reshape(-1) for n in qkv]),
        p + "attn.c_proj.weight": a(att["out"]["kernel"]).reshape(-1, w),
        p + "attn.c_proj.bias": a(att["out"]["bias"]),
        p + "ln_2.weight": a(b["mlp_norm"]["scale"]), p + "ln_2.bias": a(b["mlp_norm"]["bias"]),
        p + "mlp.c_fc.weight": a(b["mlp"]["up"]["kernel"]),
        p + "mlp.c_fc.bias": a(b["mlp"]["up"]["bias"]),
        p + "mlp.c_proj.weight": a(b["mlp"]["down"]["kernel"]),
        p + "mlp.c_proj.bias": a(b["mlp"]["down"]["bias"]),
    })
  return {_PREFIX + k: v for k, v in out.items()}


# ---------------------------------------------------------------------------- tokenizer


def load_tokenizer(directory: str, hf: dict):
  """The byte-level BPE tokenizer saved beside the weights (see lm.hf.tokenizer)."""
  return hf_tokenizer.load_bpe(directory)
