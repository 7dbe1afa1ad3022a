"""BERT (Hugging Face `model_type: bert`) <-> `lm.models.encoder`.

BERT is lm's encoder with post-norm blocks, a LayerNorm on the summed token, position and
token-type embeddings, biases everywhere and the erf GELU ('gelu' in transformers is
`nn.gelu(approximate=False)`, lm's 'gelu_exact'). Which params come back depends on the
checkpoint's head (`head(names)`):

  'mlm'      BertForMaskedLM (or BertForPreTraining): `EncoderModel(cfg, head='mlm')`
             params {encoder, mlm_head}. The pooler and next-sentence head of
             BertForPreTraining are not part of the masked LM and are dropped.
  'pooler'   BertModel with its pooler: {encoder, pooler}, the params of
             `EncoderModel(cfg, head='sequence')` without a classifier (cfg.pooler=True).
  'encoder'  BertModel without a pooler: {encoder}; use `encoder.encode(cfg, params, ...)`.

  HF tensor (Linear weights are [out, in])     lm param (under encoder/)
  embeddings.word_embeddings.weight            embedding [vocab, width]
  embeddings.position_embeddings.weight        position_embedding [max_len, width]
  embeddings.token_type_embeddings.weight      type_embedding [type_vocab, width]
  embeddings.LayerNorm.weight / .bias          embed_norm/scale / bias
  encoder.layer.{i}.attention.self.{query,key,value}   block_{i}/attention/{query,key,value}
                                               (kernel [width, heads, head_dim], bias)
  encoder.layer.{i}.attention.output.dense     block_{i}/attention/out
  encoder.layer.{i}.attention.output.LayerNorm block_{i}/attention_norm
  encoder.layer.{i}.intermediate.dense         block_{i}/mlp/up
  encoder.layer.{i}.output.dense / .LayerNorm  block_{i}/mlp/down / mlp_norm
  pooler.dense                                 pooler (top level)
  cls.predictions.transform.dense / .LayerNorm mlm_head/transform / transform_norm
  cls.predictions.bias                         mlm_head/bias

Names carry a 'bert.' prefix in the head models and none in BertModel; both load. The
buffers `embeddings.position_ids` / `token_type_ids` are dropped; `cls.predictions.decoder
.weight` must equal the word embeddings and `.decoder.bias` the prediction bias (tied).
Export writes the BertForMaskedLM layout (or BertModel's, for params without an MLM head).
"""

import jax
import numpy as np

from lm.errors import ConfigError, DataError
from lm.hf import tokenizer as hf_tokenizer
from lm.models import encoder
from lm.models.config import ModelConfig

MODEL_TYPE = "bert"
ARCHITECTURE = "BertForMaskedLM"
_PREFIX = "bert."
_ACTIVATIONS = {"gelu": "gelu_exact", "gelu_new": "gelu", "gelu_pytorch_tanh": "gelu",
                "relu": "relu"}  # transformers' hidden_act -> lm's mlp.
_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")
_NSP = "cls.seq_relationship."


def head(names) -> str:
  """'mlm', 'pooler' or 'encoder': what a checkpoint's tensor names (or params' top-level
  keys) hold; see the module docstring."""
  names = set(names)
  if "classifier" in names:  # lm params of a 'sequence' or 'token' head.
    raise ConfigError("cannot export a classifier head to BERT (lm writes BertForMaskedLM or "
                      "BertModel); export the masked-LM run, or params without 'classifier'")
  if "mlm_head" in names or any(n.startswith("cls.predictions.") for n in names):
    return "mlm"
  return "pooler" if names & {"pooler", "pooler.dense.weight"} else "encoder"


# ---------------------------------------------------------------------------- config


def config_from_hf(hf: dict, names=()) -> ModelConfig:
  """The lm encoder config of this BertConfig; ConfigError names unsupported options.
  `names`: the checkpoint's tensor names (a pooler sets cfg.pooler)."""
  get = hf.get
  refuse = []
  act = get("hidden_act", "gelu")
  if act not in _ACTIVATIONS:
    refuse.append(f"hidden_act={act!r} (supported: {sorted(_ACTIVATIONS)})")
  if get("position_embedding_type", "absolute") != "absolute":
    refuse.append(f"position_embedding_type={get('position_embedding_type')!r} (lm has "
                  "'absolute' learned positions)")
  for key, supported in (("is_decoder", False), ("add_cross_attention", False),
                         ("tie_word_embeddings", True)):
    if bool(get(key, supported)) != supported:
      refuse.append(f"{key}={get(key)!r} (lm supports only {supported})")
  drops = (get("hidden_dropout_prob", 0.1), get("attention_probs_dropout_prob", 0.1))
  if drops[0] != drops[1]:
    refuse.append(f"hidden_dropout_prob/attention_probs_dropout_prob={drops} (lm has one "
                  "dropout rate)")
  for key in ("hidden_size", "num_attention_heads", "num_hidden_layers", "intermediate_size",
              "max_position_embeddings", "vocab_size"):
    if not isinstance(get(key), int):
      refuse.append(f"{key}={get(key)!r} (need an integer)")
  if refuse:
    raise ConfigError("BERT config options lm does not support: " + "; ".join(refuse))
  if hf["hidden_size"] % hf["num_attention_heads"]:
    raise ConfigError(f"BERT config: num_attention_heads={hf['num_attention_heads']} does "
                      f"not divide hidden_size={hf['hidden_size']}")
  return ModelConfig(
      vocab_size=hf["vocab_size"], max_len=hf["max_position_embeddings"],
      num_layers=hf["num_hidden_layers"], num_heads=hf["num_attention_heads"],
      width=hf["hidden_size"], mlp_width=hf["intermediate_size"], position="learned",
      norm="layernorm", norm_eps=float(get("layer_norm_eps", 1e-12)), mlp=_ACTIVATIONS[act],
      tie_embeddings=True, use_bias=True, dropout=float(drops[0]),
      init_std=float(get("initializer_range", 0.02)), family="encoder", norm_position="post",
      embed_norm=True, type_vocab_size=int(get("type_vocab_size", 2)), mlm_transform=True,
      pooler=head(names) == "pooler", dtype="float32", param_dtype="float32")


def config_to_hf(cfg: ModelConfig, tokenizer=None) -> dict:
  """The BertConfig (config.json dict) of `cfg`; ConfigError names what BERT lacks."""
  refuse = []
  for name, supported in (("family", "encoder"), ("position", "learned"),
                          ("norm", "layernorm"), ("norm_position", "post"),
                          ("embed_norm", True), ("tie_embeddings", True), ("use_bias", True),
                          ("scale_attention", True), ("mlm_transform", True)):
    if getattr(cfg, name) != supported:
      refuse.append(f"model.{name}={getattr(cfg, name)!r} (BERT has {supported!r})")
  acts = {v: k for k, v in _ACTIVATIONS.items() if k != "gelu_pytorch_tanh"}
  if cfg.mlp not in acts:
    refuse.append(f"model.mlp={cfg.mlp!r} (BERT has one of {sorted(acts)})")
  if cfg.kv_heads != cfg.num_heads:
    refuse.append(f"model.num_kv_heads={cfg.num_kv_heads} (BERT has multi-head attention)")
  if cfg.dims_per_head * cfg.num_heads != cfg.width:
    refuse.append(f"model.head_dim={cfg.head_dim} (BERT has width // num_heads)")
  if refuse:
    raise ConfigError("cannot export to BERT: " + "; ".join(refuse))
  pad = None if tokenizer is None else tokenizer.special_ids.get("[PAD]")
  return {
      "model_type": MODEL_TYPE, "architectures": [ARCHITECTURE], "vocab_size": cfg.vocab_size,
      "hidden_size": cfg.width, "num_hidden_layers": cfg.num_layers,
      "num_attention_heads": cfg.num_heads, "intermediate_size": cfg.hidden_width,
      "hidden_act": acts[cfg.mlp], "hidden_dropout_prob": cfg.dropout,
      "attention_probs_dropout_prob": cfg.dropout, "max_position_embeddings": cfg.max_len,
      "type_vocab_size": cfg.type_vocab_size, "initializer_range": cfg.init_std,
      "layer_norm_eps": cfg.norm_eps, "position_embedding_type": "absolute",
      "is_decoder": False, "add_cross_attention": False, "tie_word_embeddings": True,
      "pad_token_id": pad, "dtype": "float32",
  }


# ---------------------------------------------------------------------------- weights


def tensor_shapes(cfg: ModelConfig, head: str = "mlm") -> dict[str, tuple[int, ...]]:
  """Every tensor of the checkpoint (canonical names) and its shape."""
  w, m = cfg.width, cfg.hidden_width
  lin = lambda p, i, o: {p + ".weight": (o, i), p + ".bias": (o,)}  # noqa: E731
  ln = lambda p: {p + ".weight": (w,), p + ".bias": (w,)}  # noqa: E731
  shapes = {"embeddings.word_embeddings.weight": (cfg.vocab_size, w),
            "embeddings.position_embeddings.weight": (cfg.max_len, w),
            **ln("embeddings.LayerNorm")}
  if cfg.type_vocab_size:
    shapes["embeddings.token_type_embeddings.weight"] = (cfg.type_vocab_size, w)
  for i in range(cfg.num_layers):
    p = f"encoder.layer.{i}."
    for n in ("query", "key", "value"):
      shapes.update(lin(p + "attention.self." + n, w, w))
    shapes.update({**lin(p + "attention.output.dense", w, w),
                   **ln(p + "attention.output.LayerNorm"), **lin(p + "intermediate.dense", w, m),
                   **lin(p + "output.dense", m, w), **ln(p + "output.LayerNorm")})
  if head == "pooler":
    shapes.update(lin("pooler.dense", w, w))
  if head == "mlm":
    shapes.update({**lin("cls.predictions.transform.dense", w, w),
                   **ln("cls.predictions.transform.LayerNorm"),
                   "cls.predictions.bias": (cfg.vocab_size,)})
  return shapes


def canonical_names(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Names as in `tensor_shapes`: 'bert.' dropped, buffers dropped, the tied decoder checked
  and dropped; with an MLM head, the pooler and next-sentence head dropped."""
  out = {(n[len(_PREFIX):] if n.startswith(_PREFIX) else n): x for n, x in tensors.items()}
  for name in _BUFFERS:
    out.pop(name, None)
  for name, tied_to in (("cls.predictions.decoder.weight", "embeddings.word_embeddings.weight"),
                        ("cls.predictions.decoder.bias", "cls.predictions.bias")):
    x = out.pop(name, None)
    if x is not None:
      ref = out.get(tied_to)
      if ref is None or x.shape != ref.shape or not np.array_equal(x, ref):
        raise DataError(f"{name} differs from {tied_to}: lm imports BERT's MLM head only "
                        "tied to the word embeddings")
  if head(out) == "mlm":
    out = {n: x for n, x in out.items() if not n.startswith((_NSP, "pooler."))}
  return out


def abstract_params(cfg: ModelConfig, head: str = "mlm"):
  """Shapes of the lm params of `head` (see the module docstring)."""
  tree = encoder.abstract_params(cfg, head="mlm")
  if head == "mlm":
    return tree
  out = {"encoder": tree["encoder"]}
  if head == "pooler":
    out["pooler"] = {"kernel": jax.ShapeDtypeStruct((cfg.width, cfg.width), np.float32),
                     "bias": jax.ShapeDtypeStruct((cfg.width,), np.float32)}
  return out


def params_from_hf(t: dict[str, np.ndarray], cfg: ModelConfig, head: str = "mlm") -> dict:
  """lm params (see the module docstring) from checked tensors."""
  h, d, w = cfg.num_heads, cfg.dims_per_head, cfg.width
  ln = lambda p: {"scale": t[p + ".weight"], "bias": t[p + ".bias"]}  # noqa: E731
  lin = lambda p: {"kernel": t[p + ".weight"].T, "bias": t[p + ".bias"]}  # noqa: E731
  enc = {"embedding": t["embeddings.word_embeddings.weight"],
         "position_embedding": t["embeddings.position_embeddings.weight"],
         "embed_norm": ln("embeddings.LayerNorm")}
  if cfg.type_vocab_size:
    enc["type_embedding"] = t["embeddings.token_type_embeddings.weight"]
  for i in range(cfg.num_layers):
    p = f"encoder.layer.{i}."
    att = {n: {"kernel": t[f"{p}attention.self.{n}.weight"].T.reshape(w, h, d),
               "bias": t[f"{p}attention.self.{n}.bias"].reshape(h, d)}
           for n in ("query", "key", "value")}
    att["out"] = {"kernel": t[p + "attention.output.dense.weight"].T.reshape(h, d, w),
                  "bias": t[p + "attention.output.dense.bias"]}
    enc[f"block_{i}"] = {"attention": att, "attention_norm": ln(p + "attention.output.LayerNorm"),
                         "mlp": {"up": lin(p + "intermediate.dense"),
                                 "down": lin(p + "output.dense")},
                         "mlp_norm": ln(p + "output.LayerNorm")}
  params = {"encoder": enc}
  if head == "pooler":
    params["pooler"] = lin("pooler.dense")
  if head == "mlm":
    params["mlm_head"] = {"transform": lin("cls.predictions.transform.dense"),
                          "transform_norm": ln("cls.predictions.transform.LayerNorm"),
                          "bias": t["cls.predictions.bias"]}
  return params


def params_to_hf(params: dict, cfg: ModelConfig) -> dict[str, np.ndarray]:
  """BertForMaskedLM tensors ('bert.' prefix; BertModel's names without an MLM head)."""
  a = lambda x: np.asarray(x, np.float32)  # noqa: E731
  w = cfg.width
  ln = lambda p, x: {p + ".weight": a(x["scale"]), p + ".bias": a(x["bias"])}  # noqa: E731

  def lin(p, x):  # Dense kernels are [in, out]; all BERT's here are 2-D.
    return {p + ".weight": a(x["kernel"]).T, p + ".bias": a(x["bias"])}

  e = params["encoder"]
  out = {"embeddings.word_embeddings.weight": a(e["embedding"]),
         "embeddings.position_embeddings.weight": a(e["position_embedding"]),
         **ln("embeddings.LayerNorm", e["embed_norm"])}
  if cfg.type_vocab_size:
    out["embeddings.token_type_embeddings.weight"] = a(e["type_embedding"])
  for i in range(cfg.num_layers):
    b, p = e[f"block_{i}"], f"encoder.layer.{i}."
    for n in ("query", "key", "value"):
      x = b["attention"][n]
      out.update({f"{p}attention.self.{n}.weight": a(x["kernel"]).reshape(w, -1).T,
                  f"{p}attention.self.{n}.bias": a(x["bias"]).reshape(-1)})
    o = b["attention"]["out"]
    out.update({p + "attention.output.dense.weight": a(o["kernel"]).reshape(-1, w).T,
                p + "attention.output.dense.bias": a(o["bias"]),
                **ln(p + "attention.output.LayerNorm", b["attention_norm"]),
                **lin(p + "intermediate.dense", b["mlp"]["up"]),
                **lin(p + "output.dense", b["mlp"]["down"]),
                **ln(p + "output.LayerNorm", b["mlp_norm"])})
  if "pooler" in params:
    out.update(lin("pooler.dense", params["pooler"]))
  if "mlm_head" not in params:
    return out  # BertModel layout.
  mh = params["mlm_head"]
  out = {_PREFIX + k: v for k, v in out.items()}
  out.update({**lin("cls.predictions.transform.dense", mh["transform"]),
              **ln("cls.predictions.transform.LayerNorm", mh["transform_norm"]),
              "cls.predictions.bias": a(mh["bias"])})
  return out


# ---------------------------------------------------------------------------- tokenizer


def load_tokenizer(directory: str, hf: dict):
  """BERT's WordPiece from tokenizer.json (encode adds no [CLS]/[SEP]; see lm.hf.tokenizer)."""
  return hf_tokenizer.load_tokenizer_json(directory)
