"""BERT interop: lm's encoder against transformers' BertForMaskedLM / BertModel.

Import: small random BERT models saved by transformers (with the MLM head, and BertModel
with its pooler) load with lm.hf.load and must give the same final hidden states, MLM
logits and log-probs of the original tokens at masked positions, on a batch with padding
and token-type ids (real positions compared). Greedy generation does not apply: BERT is
not a generative model. Export: a random lm encoder saved by lm.hf.save loads in
BertForMaskedLM with no missing or unexpected weights and gives the same again. Plus the
WordPiece tokenizer against BertTokenizerFast, and bad checkpoints.
"""

import os

import flax.linen as nn
import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from tests import hf_checkpoints  # noqa: E402
import lm.hf  # noqa: E402
from lm.errors import ConfigError, DataError  # noqa: E402
from lm.hf import safetensors_io  # noqa: E402
from lm.models import encoder  # noqa: E402
from lm.models.config import ModelConfig  # noqa: E402

TEXT = ("First Citizen: Before we proceed any further, hear me speak. All: Speak, speak. "
        "First Citizen: You are all resolved rather to die than to famish? Ünïcödé ✓ 東京")
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TOL = 1e-4
MAX_DIFF = {}  # Measured max abs differences, printed by the last test (pytest -s).


def _wordpiece(directory) -> tokenizers.Tokenizer:
  """A BERT WordPiece tokenizer.json (lowercasing normalizer, BERT pre-tokenizer,
  [CLS] x [SEP] template) trained on TEXT."""
  tok = tokenizers.BertWordPieceTokenizer(lowercase=True)
  tok.train_from_iterator([TEXT] * 5, vocab_size=150, special_tokens=SPECIALS,
                          show_progress=False)
  tok.save(os.path.join(directory, "tokenizer.json"))
  return tokenizers.Tokenizer.from_file(os.path.join(directory, "tokenizer.json"))


def _save_hf(directory, cls, seed, **kw):
  tok = _wordpiece(directory)
  torch.manual_seed(seed)
  config = transformers.BertConfig(
      vocab_size=tok.get_vocab_size() + 6, hidden_size=32, num_hidden_layers=2,
      num_attention_heads=4, intermediate_size=48, max_position_embeddings=40,
      pad_token_id=tok.token_to_id("[PAD]"), **kw)
  model = cls(config).eval()
  hf_checkpoints.perturb_torch(model, seed, 0.2)
  model.save_pretrained(directory)
  return directory


@pytest.fixture(scope="module")
def mlm_dir(tmp_path_factory):
  return _save_hf(str(tmp_path_factory.mktemp("bert_mlm")), transformers.BertForMaskedLM, 0)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
  # BertModel with a pooler, the tanh-GELU variant and another LayerNorm eps.
  return _save_hf(str(tmp_path_factory.mktemp("bert_base")), transformers.BertModel, 1,
                  hidden_act="gelu_new", layer_norm_eps=1e-6, type_vocab_size=3)


def _batch(tokenizer, vocab_size):
  """Two rows: [CLS] text [SEP] and a shorter random row with padding; type ids 0/1."""
  ids = tokenizer.special_ids
  text = [ids["[CLS]"]] + tokenizer.encode(TEXT)[:20] + [ids["[SEP]"]]
  length = len(text)
  rng = np.random.RandomState(2)
  short = [ids["[CLS]"]] + list(rng.randint(5, vocab_size, 12)) + [ids["[SEP]"]]
  tokens = np.full((2, length), ids["[PAD]"], np.int64)
  tokens[0], tokens[1, :len(short)] = text, short
  valid = np.zeros((2, length), bool)
  valid[0], valid[1, :len(short)] = True, True
  types = np.zeros((2, length), np.int64)
  types[:, length // 2:] = 1
  types[~valid] = 0
  masked = tokens.copy()
  where = np.zeros((2, length), bool)
  where[0, [3, 7, 8, 15]] = where[1, [2, 5, 9]] = True
  masked[where] = ids["[MASK]"]
  return tokens, masked, valid, types, where


def _record(name, diff):
  MAX_DIFF[name] = max(MAX_DIFF.get(name, 0.0), float(diff))


def _check_mlm(model_cfg, params, tokenizer, torch_model, tag):
  with jax.default_matmul_precision("highest"):  # No TF32 on GPUs.
    tokens, masked, valid, types, where = _batch(tokenizer, model_cfg.vocab_size)
    logits, aux = jax.jit(lambda p, t, m, y: encoder.EncoderModel(model_cfg, "mlm").apply(
        {"params": p}, t, padding_mask=m, type_ids=y))(params, masked, valid, types)
  with torch.no_grad():
    out = torch_model(input_ids=torch.tensor(masked), attention_mask=torch.tensor(valid).long(),
                      token_type_ids=torch.tensor(types), output_hidden_states=True)
  diff = np.abs(np.asarray(aux["hidden"]) - out.hidden_states[-1].numpy())[valid].max()
  _record(f"{tag} hidden", diff)
  assert diff <= TOL
  diff = np.abs(np.asarray(logits) - out.logits.numpy())[valid].max()
  _record(f"{tag} MLM logits", diff)
  assert diff <= TOL
  # log p(original token) at the masked positions.
  pick = lambda lp: np.take_along_axis(lp, tokens[..., None], -1)[..., 0][where]  # noqa: E731
  ours = pick(np.asarray(jax.nn.log_softmax(logits)))
  ref = pick(torch.log_softmax(out.logits, -1).numpy())
  _record(f"{tag} masked log-probs", np.abs(ours - ref).max())
  np.testing.assert_allclose(ours, ref, atol=TOL, rtol=0)
  assert ours.min() < -1.0  # Not a degenerate distribution.


# ---------------------------------------------------------------------------- import


def test_import_masked_lm_matches_transformers(mlm_dir):
  model_cfg, params, tokenizer = lm.hf.load(mlm_dir)
  assert sorted(params) == ["encoder", "mlm_head"]  # EncoderModel(cfg, head='mlm').
  assert (model_cfg.family, model_cfg.mlp, model_cfg.norm_position, model_cfg.pooler) == (
      "encoder", "gelu_exact", "post", False)
  torch_model = transformers.BertForMaskedLM.from_pretrained(mlm_dir).eval()
  _check_mlm(model_cfg, params, tokenizer, torch_model, "import BertForMaskedLM")


def test_import_bert_model_with_pooler(base_dir):
  model_cfg, params, tokenizer = lm.hf.load(base_dir)
  assert sorted(params) == ["encoder", "pooler"] and model_cfg.pooler
  assert (model_cfg.mlp, model_cfg.norm_eps, model_cfg.type_vocab_size) == ("gelu", 1e-6, 3)
  torch_model = transformers.BertModel.from_pretrained(base_dir).eval()
  tokens, _, valid, types, _ = _batch(tokenizer, model_cfg.vocab_size)
  types[0, 2] = 2
  with jax.default_matmul_precision("highest"):
    hidden = np.asarray(encoder.encode(model_cfg, params, tokens, valid, types))
  with torch.no_grad():
    out = torch_model(input_ids=torch.tensor(tokens), attention_mask=torch.tensor(valid).long(),
                      token_type_ids=torch.tensor(types))
  diff = np.abs(hidden - out.last_hidden_state.numpy())[valid].max()
  _record("import BertModel hidden", diff)
  assert diff <= TOL
  # The pooler by its definition, tanh(dense(first token)), on lm's params.
  pooled = np.tanh(hidden[:, 0] @ params["pooler"]["kernel"] + params["pooler"]["bias"])
  np.testing.assert_allclose(pooled, out.pooler_output.numpy(), atol=TOL, rtol=0)


def test_import_pretraining_layout_drops_nsp_and_pooler(mlm_dir, tmp_path):
  # BertForPreTraining (e.g. the original bert-base upload): the masked LM plus a pooler
  # and next-sentence head, buffers, and the tied decoder weight/bias stored explicitly.
  tensors = safetensors_io.read_weights(mlm_dir)
  w = tensors["bert.embeddings.word_embeddings.weight"]
  extra = {"bert.pooler.dense.weight": np.ones((32, 32), np.float32),
           "bert.pooler.dense.bias": np.ones(32, np.float32),
           "cls.seq_relationship.weight": np.ones((2, 32), np.float32),
           "cls.seq_relationship.bias": np.ones(2, np.float32),
           "bert.embeddings.position_ids": np.arange(40)[None],
           "cls.predictions.decoder.weight": w,
           "cls.predictions.decoder.bias": tensors["cls.predictions.bias"]}
  hf_checkpoints.copy_with(mlm_dir, tmp_path, {**tensors, **extra})
  got, want = lm.hf.load(str(tmp_path))[1], lm.hf.load(mlm_dir)[1]
  jax.tree.map(np.testing.assert_array_equal, got, want)


def test_sample_and_perplexity_are_refused(mlm_dir, tmp_path):
  from lm import generation
  from lm.hf import evaluate
  with pytest.raises(ConfigError, match="encoder-only model .* does not generate"):
    generation.sample_run(None, ["x"], generation.Settings(), hf_checkpoint=mlm_dir)
  (tmp_path / "t.txt").write_text(TEXT)
  with pytest.raises(ConfigError, match="bert checkpoint .*defined for decoder checkpoints"):
    evaluate.evaluate_file(mlm_dir, str(tmp_path / "t.txt"))


# ---------------------------------------------------------------------------- export


def test_export_loads_in_transformers(mlm_dir, tmp_path):
  tokenizer = lm.hf.load(mlm_dir)[2]
  model_cfg = ModelConfig(
      vocab_size=tokenizer.vocab_size, max_len=32, num_layers=2, num_heads=2, width=32,
      mlp_width=40, family="encoder", norm_position="post", embed_norm=True,
      type_vocab_size=2, use_bias=True, mlp="gelu_exact", norm_eps=1e-12, mlm_transform=True)
  rng = np.random.RandomState(0)
  params = jax.tree_util.tree_map_with_path(
      lambda path, x: (float(path[-1].key == "scale") + rng.normal(0.0, 0.2, x.shape)
                       ).astype(np.float32),
      nn.meta.unbox(encoder.abstract_params(model_cfg, head="mlm")))
  out = str(tmp_path / "export")
  lm.hf.save(out, model_cfg, params, tokenizer)  # model_type from the family: bert.
  torch_model, info = transformers.BertForMaskedLM.from_pretrained(out,
                                                                   output_loading_info=True)
  assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
  _check_mlm(model_cfg, params, tokenizer, torch_model.eval(), "export")
  cfg2, params2, tok2 = lm.hf.load(out)
  assert (cfg2.hidden_width, cfg2.num_heads, cfg2.norm_eps) == (40, 2, 1e-12)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, np.asarray(b)), params2, params)
  assert tok2.encode(TEXT) == tokenizer.encode(TEXT)


@pytest.mark.parametrize("change, named", [
    (dict(norm_position="pre"), "model.norm_position='pre'"),
    (dict(position="rope"), "model.position='rope'"),
    (dict(mlp="swiglu"), "model.mlp='swiglu'"),
    (dict(use_bias=False), "model.use_bias=False"),
    (dict(embed_norm=False), "model.embed_norm=False"),
])
def test_export_refuses_what_bert_cannot_express(tmp_path, change, named):
  base = dict(vocab_size=50, max_len=32, num_layers=1, num_heads=2, width=32, family="encoder",
              norm_position="post", embed_norm=True, type_vocab_size=2, use_bias=True,
              mlp="gelu_exact", mlm_transform=True)
  with pytest.raises(ConfigError, match=named):
    lm.hf.save(str(tmp_path / "x"), ModelConfig(**{**base, **change}), params=None)
  assert not os.path.exists(tmp_path / "x")


def test_export_refuses_a_classifier_head(mlm_dir, tmp_path):
  model_cfg, params, _ = lm.hf.load(mlm_dir)
  params = {"encoder": params["encoder"], "classifier": {"kernel": np.zeros((32, 2))}}
  with pytest.raises(ConfigError, match="cannot export a classifier head"):
    lm.hf.save(str(tmp_path / "x"), model_cfg, params)
  assert not os.path.exists(tmp_path / "x")


# ---------------------------------------------------------------------------- tokenizer


def test_wordpiece_matches_bert_tokenizer_fast(mlm_dir):
  tokenizer = lm.hf.load(mlm_dir)[2]
  fast = transformers.BertTokenizerFast(tokenizer_file=os.path.join(mlm_dir, "tokenizer.json"))
  cls, sep = tokenizer.special_ids["[CLS]"], tokenizer.special_ids["[SEP]"]
  for text in (TEXT, "UNSEEN words, Zebra!", ""):
    ids = tokenizer.encode(text)  # No [CLS]/[SEP]: the caller adds what it needs.
    assert ids == fast(text, add_special_tokens=False)["input_ids"]
    assert [cls] + ids + [sep] == fast(text)["input_ids"]
    assert tokenizer.decode(ids) == fast.decode(ids, skip_special_tokens=True)
  assert tokenizer.special_ids == {t: fast.convert_tokens_to_ids(t) for t in SPECIALS}
  assert tokenizer.vocab_size == len(fast)


# ---------------------------------------------------------------------------- bad input


def test_no_weights(mlm_dir, tmp_path):
  hf_checkpoints.copy_with(mlm_dir, tmp_path, None)
  with pytest.raises(DataError, match="no weights in"):
    lm.hf.load(str(tmp_path))


@pytest.mark.parametrize("changes, named", [
    (dict(position_embedding_type="relative_key"), "position_embedding_type='relative_key'"),
    (dict(hidden_act="silu"), "hidden_act='silu'"),
    (dict(is_decoder=True), "is_decoder=True"),
    (dict(add_cross_attention=True), "add_cross_attention=True"),
    (dict(attention_probs_dropout_prob=0.0), "hidden_dropout_prob/attention_probs_dropout_prob"),
])
def test_unsupported_config(mlm_dir, tmp_path, changes, named):
  hf_checkpoints.copy_with(mlm_dir, tmp_path, safetensors_io.read_weights(mlm_dir))
  hf_checkpoints.edit_config(tmp_path, **changes)
  with pytest.raises(ConfigError, match=named):
    lm.hf.load(str(tmp_path))


def test_shape_mismatch_names_the_tensor(mlm_dir, tmp_path):
  tensors = safetensors_io.read_weights(mlm_dir)
  tensors["bert.encoder.layer.1.intermediate.dense.weight"] = np.zeros((47, 32), np.float32)
  hf_checkpoints.copy_with(mlm_dir, tmp_path, tensors)
  with pytest.raises(DataError, match=r"'encoder.layer.1.intermediate.dense.weight' has shape "
                                      r"\(47, 32\), the config implies \(48, 32\)"):
    lm.hf.load(str(tmp_path))


def test_missing_tensor_is_named(mlm_dir, tmp_path):
  tensors = safetensors_io.read_weights(mlm_dir)
  del tensors["cls.predictions.transform.LayerNorm.bias"]
  hf_checkpoints.copy_with(mlm_dir, tmp_path, tensors)
  with pytest.raises(DataError, match="missing tensors 'cls.predictions.transform.LayerNorm.bias'"):
    lm.hf.load(str(tmp_path))


def test_untied_decoder_is_refused(mlm_dir, tmp_path):
  tensors = safetensors_io.read_weights(mlm_dir)
  tensors["cls.predictions.decoder.weight"] = tensors["bert.embeddings.word_embeddings.weight"] + 1
  hf_checkpoints.copy_with(mlm_dir, tmp_path, tensors)
  with pytest.raises(DataError, match="cls.predictions.decoder.weight differs"):
    lm.hf.load(str(tmp_path))


def test_report_max_diffs():
  # Runs last in this file: prints what the parity tests measured (see README).
  for name, diff in sorted(MAX_DIFF.items()):
    print(f"{name}: max abs diff {diff:.2e}")
