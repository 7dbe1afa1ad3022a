"""T5 (Hugging Face `model_type: t5`) <-> `lm.models.encoder_decoder.EncoderDecoder`.

T5 is lm's encoder-decoder with pre-norm blocks, RMSNorm without bias (T5LayerNorm, eps
`layer_norm_epsilon`), no biases, unscaled attention logits (`scale_attention=False`) and
the bucketed relative position bias (`position='relative'`; `relative_attention_num_buckets`
/ `relative_attention_max_distance`). `feed_forward_proj` picks the MLP: 'relu' (T5 v1.0),
'gated-gelu' (v1.1: tanh GELU of wi_0 times wi_1, lm's 'geglu'), 'gated-silu' ('swiglu'),
'gelu' (erf GELU, 'gelu_exact'). `d_kv` is lm's head_dim, `d_ff` its mlp_width; HF's
`num_layers` is the encoder depth (lm num_encoder_layers) and `num_decoder_layers` the
decoder's (lm num_layers).

  HF tensor (Linear weights are [out, in])            lm param
  shared.weight [vocab, d_model]                      embedding
  {enc,dec}oder.block.0.layer.0.SelfAttention.        {enc,dec}oder/relative_bias/embedding
      relative_attention_bias.weight [buckets, heads] (one table per stack, in block 0)
  *.block.{i}.layer.0.SelfAttention.{q,k,v,o}         */block_{i}/attention/{query,key,value,out}
  *.block.{i}.layer.0.layer_norm                      */block_{i}/attention_norm/scale
  decoder.block.{i}.layer.1.EncDecAttention.{q,k,v,o} decoder/block_{i}/cross_attention/...
  decoder.block.{i}.layer.1.layer_norm                decoder/block_{i}/cross_attention_norm
  *.block.{i}.layer.{1 enc, 2 dec}.DenseReluDense.    */block_{i}/mlp/{up, gate, up, down}
      {wi, wi_0, wi_1, wo}
  *.block.{i}.layer.{1, 2}.layer_norm                 */block_{i}/mlp_norm/scale
  *.final_layer_norm                                  */final_norm/scale
  lm_head.weight [vocab, d_model], if untied          unembedding [d_model, vocab]

Tied or not is read from the weights: an `lm_head.weight` equal to `shared.weight` (or
none) is tied; a different one is the untied head of T5 v1.1. Tied logits are scaled by
d_model**-0.5 when the config says so (`scale_decoder_outputs` as transformers 5 writes it,
else `tie_word_embeddings` not false, as T5 v1.0 does; lm's scale_tied_logits). The
`{enc,dec}oder.embed_tokens.weight` copies must equal `shared.weight` and are dropped, as is
the unused cross-attention bias table transformers ignores too.

Decoding starts from `decoder_start_token_id` (the pad id, 0): give lm's decoder that token
as the prompt (`start_token(hf)`).
"""

import numpy as np

from lm.errors import ConfigError, DataError
from lm.hf import tokenizer as hf_tokenizer
from lm.models import encoder_decoder
from lm.models.config import ModelConfig

MODEL_TYPE = "t5"
ARCHITECTURE = "T5ForConditionalGeneration"
_MLPS = {"relu": "relu", "gated-gelu": "geglu", "gated-silu": "swiglu", "gelu": "gelu_exact"}
_IGNORED = ("decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight",)
_COPIES = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")


def start_token(hf: dict) -> int:
  """The decoder's first input (T5: the pad id)."""
  start = hf.get("decoder_start_token_id")
  return int(hf.get("pad_token_id", 0) if start is None else start)


def source_decoding(cfg: ModelConfig, params, hf: dict, sources):
  """(decoding model, one start-token prompt per source, [EOS] stop tokens) for
  `lm.generation`, as transformers' `generate` runs T5: each source (token list) gets the
  EOS T5Tokenizer appends, and the decoder starts from `start_token(hf)`."""
  eos, pad = int(hf.get("eos_token_id", 1)), int(hf.get("pad_token_id", 0))
  sources = [list(s) + [eos] for s in sources]
  tokens = np.full((len(sources), max(map(len, sources))), pad, np.int32)
  for i, s in enumerate(sources):
    tokens[i, :len(s)] = s
  mask = np.arange(tokens.shape[1])[None] < np.array([len(s) for s in sources])[:, None]
  model = encoder_decoder.decoding_model(cfg, params, tokens, mask)
  return model, [[start_token(hf)]] * len(sources), [eos]


# ---------------------------------------------------------------------------- config


def config_from_hf(hf: dict, names=()) -> ModelConfig:
  """The lm encoder-decoder config of this T5Config; ConfigError names unsupported options.
  `names` (the checkpoint's tensor names) say whether the output head is untied."""
  get = hf.get
  refuse = []
  proj = get("feed_forward_proj", "relu")
  if proj not in _MLPS:
    refuse.append(f"feed_forward_proj={proj!r} (supported: {sorted(_MLPS)})")
  for key, supported in (("is_encoder_decoder", True), ("is_decoder", False)):
    if bool(get(key, supported)) != supported:
      refuse.append(f"{key}={get(key)!r} (lm supports only {supported})")
  untied = "lm_head.weight" in names
  scale = get("scale_decoder_outputs", get("tie_word_embeddings", True) is not False)
  if untied and scale:
    refuse.append("an lm_head.weight different from shared.weight with scaled decoder outputs "
                  f"(tie_word_embeddings={get('tie_word_embeddings')!r}; lm scales only tied "
                  "logits)")
  for key in ("d_model", "d_kv", "d_ff", "num_heads", "num_layers", "vocab_size"):
    if not isinstance(get(key), int):
      refuse.append(f"{key}={get(key)!r} (need an integer)")
  if refuse:
    raise ConfigError("T5 config options lm does not support: " + "; ".join(refuse))
  heads, d_kv, width = hf["num_heads"], hf["d_kv"], hf["d_model"]
  decoder_layers = get("num_decoder_layers") or hf["num_layers"]
  return ModelConfig(
      vocab_size=hf["vocab_size"], max_len=int(get("n_positions", 512)),
      num_layers=decoder_layers, num_encoder_layers=hf["num_layers"], num_heads=heads,
      width=width, head_dim=None if heads * d_kv == width else d_kv, mlp_width=hf["d_ff"],
      position="relative", relative_buckets=int(get("relative_attention_num_buckets", 32)),
      relative_max_distance=int(get("relative_attention_max_distance", 128)),
      norm="rmsnorm", norm_eps=float(get("layer_norm_epsilon", 1e-6)), mlp=_MLPS[proj],
      tie_embeddings=not untied, scale_tied_logits=bool(scale) and not untied,
      use_bias=False, scale_attention=False, dropout=float(get("dropout_rate", 0.1)),
      family="encoder_decoder", dtype="float32", param_dtype="float32")


def config_to_hf(cfg: ModelConfig, tokenizer=None) -> dict:
  """The T5Config (config.json dict) of `cfg`; ConfigError names what T5 cannot express."""
  refuse = []
  for name, supported in (("family", "encoder_decoder"), ("position", "relative"),
                          ("norm", "rmsnorm"), ("norm_position", "pre"), ("use_bias", False),
                          ("scale_attention", False), ("embed_norm", False)):
    if getattr(cfg, name) != supported:
      refuse.append(f"model.{name}={getattr(cfg, name)!r} (T5 has {supported!r})")
  mlps = {v: k for k, v in _MLPS.items()}
  if cfg.mlp not in mlps:
    refuse.append(f"model.mlp={cfg.mlp!r} (T5 has one of {sorted(mlps)})")
  if cfg.kv_heads != cfg.num_heads:
    refuse.append(f"model.num_kv_heads={cfg.num_kv_heads} (T5 has multi-head attention)")
  if refuse:
    raise ConfigError("cannot export to T5: " + "; ".join(refuse))
  specials = {} if tokenizer is None else tokenizer.special_ids
  scale = cfg.tie_embeddings and cfg.scale_tied_logits
  return {
      "model_type": MODEL_TYPE, "architectures": [ARCHITECTURE], "vocab_size": cfg.vocab_size,
      "d_model": cfg.width, "d_kv": cfg.dims_per_head, "d_ff": cfg.hidden_width,
      "num_layers": cfg.encoder_layers, "num_decoder_layers": cfg.num_layers,
      "num_heads": cfg.num_heads, "relative_attention_num_buckets": cfg.relative_buckets,
      "relative_attention_max_distance": cfg.relative_max_distance,
      "dropout_rate": cfg.dropout, "layer_norm_epsilon": cfg.norm_eps,
      "feed_forward_proj": mlps[cfg.mlp], "is_encoder_decoder": True,
      # transformers 4 reads the scaling from tie_word_embeddings, 5 from
      # scale_decoder_outputs: both say the same.
      "tie_word_embeddings": bool(scale), "scale_decoder_outputs": bool(scale),
      "n_positions": cfg.max_len, "pad_token_id": specials.get("<pad>", 0),
      "eos_token_id": specials.get("</s>", 1), "decoder_start_token_id": specials.get("<pad>", 0),
      "dtype": "float32",
  }


# ---------------------------------------------------------------------------- weights


def _stacks(cfg):
  return (("encoder", cfg.encoder_layers, False), ("decoder", cfg.num_layers, True))


def _mlp_names(cfg) -> tuple[str, ...]:
  return ("wi_0", "wi_1", "wo") if cfg.mlp in ("geglu", "swiglu") else ("wi", "wo")


def tensor_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
  """Every tensor of the checkpoint (canonical names) and its shape."""
  w, m, inner = cfg.width, cfg.hidden_width, cfg.num_heads * cfg.dims_per_head
  shapes = {"shared.weight": (cfg.vocab_size, w)}
  if not cfg.tie_embeddings:
    shapes["lm_head.weight"] = (cfg.vocab_size, w)
  for stack, layers, cross in _stacks(cfg):
    shapes[f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"] = (
        cfg.relative_buckets, cfg.num_heads)
    shapes[f"{stack}.final_layer_norm.weight"] = (w,)
    for i in range(layers):
      p = f"{stack}.block.{i}.layer."
      attentions = [("0.SelfAttention", "0")] + ([("1.EncDecAttention", "1")] if cross else [])
      for att, norm in attentions:
        shapes.update({f"{p}{att}.{n}.weight": (inner, w) for n in "qkv"})
        shapes[f"{p}{att}.o.weight"] = (w, inner)
        shapes[f"{p}{norm}.layer_norm.weight"] = (w,)
      f = 2 if cross else 1
      for n in _mlp_names(cfg):
        shapes[f"{p}{f}.DenseReluDense.{n}.weight"] = (w, m) if n == "wo" else (m, w)
      shapes[f"{p}{f}.layer_norm.weight"] = (w,)
  return shapes


def canonical_names(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Names as in `tensor_shapes`: embedding copies checked and dropped, a tied lm_head
  dropped, the unused cross-attention bias table dropped."""
  out = {n: x for n, x in tensors.items() if n not in _IGNORED}
  shared = out.get("shared.weight")
  same = lambda x: (shared is not None and x.shape == shared.shape  # noqa: E731
                    and np.array_equal(x, shared))
  for name in _COPIES:
    x = out.pop(name, None)
    if x is not None and not same(x):
      raise DataError(f"{name} differs from shared.weight: T5 shares one token embedding")
  if "lm_head.weight" in out and same(out["lm_head.weight"]):
    del out["lm_head.weight"]  # Tied.
  return out


def abstract_params(cfg: ModelConfig):
  return encoder_decoder.abstract_params(cfg)


def params_from_hf(t: dict[str, np.ndarray], cfg: ModelConfig) -> dict:
  """lm EncoderDecoder params from checked tensors."""
  h, d, w = cfg.num_heads, cfg.dims_per_head, cfg.width
  scale = lambda name: {"scale": t[name]}  # noqa: E731
  kernel = lambda name: {"kernel": t[name].T}  # noqa: E731
  params = {"embedding": t["shared.weight"]}
  if not cfg.tie_embeddings:
    params["unembedding"] = t["lm_head.weight"].T
  for stack, layers, cross in _stacks(cfg):
    tree = {"relative_bias": {"embedding": t[
                f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]},
            "final_norm": scale(f"{stack}.final_layer_norm.weight")}
    for i in range(layers):
      p = f"{stack}.block.{i}.layer."

      def attention(prefix):
        out = {n: {"kernel": t[f"{prefix}.{c}.weight"].T.reshape(w, h, d)}
               for n, c in (("query", "q"), ("key", "k"), ("value", "v"))}
        out["out"] = {"kernel": t[prefix + ".o.weight"].T.reshape(h, d, w)}
        return out

      f = 2 if cross else 1
      ff = f"{p}{f}.DenseReluDense."
      if cfg.mlp in ("geglu", "swiglu"):
        mlp = {"gate": kernel(ff + "wi_0.weight"), "up": kernel(ff + "wi_1.weight")}
      else:
        mlp = {"up": kernel(ff + "wi.weight")}
      mlp["down"] = kernel(ff + "wo.weight")
      block = {"attention": attention(p + "0.SelfAttention"),
               "attention_norm": scale(p + "0.layer_norm.weight"),
               "mlp": mlp, "mlp_norm": scale(f"{p}{f}.layer_norm.weight")}
      if cross:
        block["cross_attention"] = attention(p + "1.EncDecAttention")
        block["cross_attention_norm"] = scale(p + "1.layer_norm.weight")
      tree[f"block_{i}"] = block
    params[stack] = tree
  return params


def params_to_hf(params: dict, cfg: ModelConfig) -> dict[str, np.ndarray]:
  """T5ForConditionalGeneration tensors from lm EncoderDecoder params. A tied model gets an
  `lm_head.weight` copy of shared.weight too, so transformers 4 (which reads an untied
  head when tie_word_embeddings is false) and 5 load the same model."""
  a = lambda x: np.asarray(x, np.float32)  # noqa: E731
  w = cfg.width
  out = {"shared.weight": a(params["embedding"]),
         "lm_head.weight": a(params["embedding"] if cfg.tie_embeddings
                             else params["unembedding"].T)}
  for stack, layers, cross in _stacks(cfg):
    s = params[stack]
    out[f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"] = a(
        s["relative_bias"]["embedding"])
    out[f"{stack}.final_layer_norm.weight"] = a(s["final_norm"]["scale"])
    for i in range(layers):
      b, p = s[f"block_{i}"], f"{stack}.block.{i}.layer."

      def attention(prefix, att):
        for n, c in (("query", "q"), ("key", "k"), ("value", "v")):
          out[f"{prefix}.{c}.weight"] = a(att[n]["kernel"]).reshape(w, -1).T
        out[prefix + ".o.weight"] = a(att["out"]["kernel"]).reshape(-1, w).T

      attention(p + "0.SelfAttention", b["attention"])
      out[p + "0.layer_norm.weight"] = a(b["attention_norm"]["scale"])
      if cross:
        attention(p + "1.EncDecAttention", b["cross_attention"])
        out[p + "1.layer_norm.weight"] = a(b["cross_attention_norm"]["scale"])
      f = 2 if cross else 1
      ff, mlp = f"{p}{f}.DenseReluDense.", b["mlp"]
      if cfg.mlp in ("geglu", "swiglu"):
        out[ff + "wi_0.weight"] = a(mlp["gate"]["kernel"]).T
        out[ff + "wi_1.weight"] = a(mlp["up"]["kernel"]).T
      else:
        out[ff + "wi.weight"] = a(mlp["up"]["kernel"]).T
      out[ff + "wo.weight"] = a(mlp["down"]["kernel"]).T
      out[f"{p}{f}.layer_norm.weight"] = a(b["mlp_norm"]["scale"])
  return out


# ---------------------------------------------------------------------------- tokenizer


def load_tokenizer(directory: str, hf: dict):
  """spiece.model through sentencepiece, followed by `extra_ids` sentinels (from
  tokenizer_config.json, default 100 as T5Tokenizer's, fewer if the model's vocabulary
  has no room for them); else tokenizer.json (T5TokenizerFast's); None if neither."""
  import json
  import os
  extra = 100
  path = os.path.join(directory, hf_tokenizer.TOKENIZER_CONFIG)
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      extra = int(json.load(f).get("extra_ids", extra))
  tok = hf_tokenizer.load_sentencepiece(directory, 0)
  if tok is None:
    return hf_tokenizer.load_tokenizer_json(directory)
  extra = max(0, min(extra, int(hf.get("vocab_size", 0)) - tok.vocab_size))
  return hf_tokenizer.SentencePieceTokenizer(tok.model_proto, extra)
