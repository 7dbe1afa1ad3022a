"""T5 interop: lm's EncoderDecoder against transformers' T5ForConditionalGeneration.

Import: small random T5 v1.0 (relu MLP, tied embedding with the d_model**-0.5 rescale,
d_kv != d_model / heads, fewer decoder than encoder layers) and v1.1 (gated-gelu, untied
lm_head) models saved by transformers load with lm.hf.load and must give the same encoder
hidden states, decoder logits under teacher forcing, per-token log-probs of a target and
greedy generations (two sources of different lengths, padded). Export: random lm models
saved by lm.hf.save load in transformers with no missing or unexpected weights and give the
same again. Plus sentencepiece tokenizers and bad checkpoints.
"""

import io
import json
import os

import flax.linen as nn
import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
spm = pytest.importorskip("sentencepiece")

from tests import hf_checkpoints  # noqa: E402
import lm.hf  # noqa: E402
from lm import decoding  # noqa: E402
from lm.errors import ConfigError, DataError  # noqa: E402
from lm.hf import safetensors_io, t5  # noqa: E402
from lm.models import encoder_decoder  # noqa: E402
from lm.models.config import ModelConfig  # noqa: E402

TEXT = ("First Citizen: Before we proceed any further, hear me speak. All: Speak, speak. "
        "First Citizen: You are all resolved rather to die than to famish?")
TOL = 1e-4
VOCAB = 128
PAD, EOS = 0, 1
MAX_DIFF = {}  # Measured max abs differences, printed at the end (pytest -s).


def _spiece(directory) -> None:
  """A tiny sentencepiece model trained on TEXT, with T5's ids (pad 0, eos 1, unk 2)."""
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(TEXT.split(".") * 20), model_writer=model, vocab_size=60,
      hard_vocab_limit=False, pad_id=0, eos_id=1, unk_id=2, bos_id=-1, minloglevel=2)
  with open(os.path.join(directory, "spiece.model"), "wb") as f:
    f.write(model.getvalue())


def _save_hf(directory, *, seed, untied=False, **config):
  torch.manual_seed(seed)
  cfg = transformers.T5Config(vocab_size=VOCAB, d_model=32, num_heads=4, pad_token_id=PAD,
                              eos_token_id=EOS, decoder_start_token_id=PAD, **config)
  model = transformers.T5ForConditionalGeneration(cfg).eval()
  with torch.no_grad():  # Default T5 init has unit-variance embeddings: keep logits modest.
    for p in model.parameters():
      p.mul_(0.5)
  hf_checkpoints.perturb_torch(model, seed, 0.3)
  model.save_pretrained(directory)
  if untied:  # transformers 5 ties lm_head on creation; a different one in the file unties.
    path = os.path.join(directory, "model.safetensors")
    tensors = safetensors_io.read_weights(directory)
    tensors["lm_head.weight"] = np.random.RandomState(seed).normal(
        0, 0.3, tensors["shared.weight"].shape).astype(np.float32)
    from safetensors.numpy import save_file
    save_file(tensors, path, metadata={"format": "pt"})
  _spiece(directory)
  return directory


@pytest.fixture(scope="module")
def v10_dir(tmp_path_factory):
  return _save_hf(str(tmp_path_factory.mktemp("t5v10")), seed=3, d_kv=16, d_ff=48,
                  num_layers=3, num_decoder_layers=2, feed_forward_proj="relu",
                  relative_attention_num_buckets=8, relative_attention_max_distance=12)


@pytest.fixture(scope="module")
def v11_dir(tmp_path_factory):
  return _save_hf(str(tmp_path_factory.mktemp("t5v11")), seed=1, untied=True, d_kv=8,
                  d_ff=40, num_layers=2, feed_forward_proj="gated-gelu",
                  tie_word_embeddings=False, relative_attention_num_buckets=16,
                  relative_attention_max_distance=20)


def _torch_model(directory):
  model, info = transformers.T5ForConditionalGeneration.from_pretrained(
      directory, output_loading_info=True)
  return model.eval(), info


def _inputs():
  """Two sources of different lengths (right-padded) and two targets."""
  rng = np.random.RandomState(3)
  source = rng.randint(3, VOCAB, (2, 11))
  source_mask = np.ones((2, 11), bool)
  source_mask[1, 7:] = False
  source[1, 7:] = PAD
  source[0, -1] = source[1, 6] = EOS
  target = rng.randint(3, VOCAB, (2, 9))
  target[:, -1] = EOS
  return source, source_mask, target


def _record(name, diff):
  MAX_DIFF[name] = max(MAX_DIFF.get(name, 0.0), float(diff))


def _check_parity(model_cfg, params, torch_model, tag):
  with jax.default_matmul_precision("highest"):  # No TF32 on GPUs.
    _check_parity_f32(model_cfg, params, torch_model, tag)


def _check_parity_f32(model_cfg, params, torch_model, tag):
  source, source_mask, target = _inputs()
  decoder_inputs = np.concatenate([np.full((2, 1), PAD), target[:, :-1]], 1)  # Shift right.
  logits, aux = jax.jit(lambda p, s, m, d: encoder_decoder.EncoderDecoder(model_cfg).apply(
      {"params": p}, s, decoder_inputs=d, padding_mask=m))(params, source, source_mask,
                                                           decoder_inputs)
  with torch.no_grad():
    out = torch_model(input_ids=torch.tensor(source), attention_mask=torch.tensor(source_mask),
                      decoder_input_ids=torch.tensor(decoder_inputs))
  ref_memory, ref_logits = out.encoder_last_hidden_state.numpy(), out.logits.numpy()
  memory = np.asarray(aux["memory"])
  diff = np.abs(memory - ref_memory)[source_mask].max()  # Real source positions only.
  _record(f"{tag} encoder hidden", diff)
  assert diff <= TOL
  diff = np.abs(np.asarray(logits) - ref_logits).max()
  _record(f"{tag} decoder logits", diff)
  assert diff <= TOL
  # Per-token log-probs of the target, teacher-forced.
  pick = lambda lp: np.take_along_axis(lp, target[..., None], -1)[..., 0]  # noqa: E731
  ours = pick(np.asarray(jax.nn.log_softmax(logits)))
  ref = pick(torch.log_softmax(out.logits, -1).numpy())
  _record(f"{tag} target log-probs", np.abs(ours - ref).max())
  np.testing.assert_allclose(ours, ref, atol=TOL, rtol=0)
  assert ours.min() < -1.0  # Not a degenerate distribution.

  # Greedy: lm decodes both sources in one batch from the start token; transformers one by one.
  new = 12
  m = encoder_decoder.decoding_model(model_cfg, params, source, source_mask)
  got = decoding.generate(m, [[PAD], [PAD]], max_new_tokens=new, stop_tokens=[EOS],
                          pad_id=PAD).lists()
  for row in range(2):
    n = int(source_mask[row].sum())
    with torch.no_grad():
      want = torch_model.generate(input_ids=torch.tensor(source[row:row + 1, :n]),
                                  attention_mask=torch.ones((1, n), dtype=torch.long),
                                  do_sample=False, max_new_tokens=new, eos_token_id=EOS,
                                  pad_token_id=PAD, decoder_start_token_id=PAD)
    assert got[row] == want[0, 1:].tolist()  # transformers' output starts with the start token.
  assert len(set(got[0] + got[1])) > 3  # Greedy did not collapse onto one token.


# ---------------------------------------------------------------------------- import


@pytest.mark.slow
def test_import_t5_v10_matches_transformers(v10_dir):
  model_cfg, params, tokenizer = lm.hf.load(v10_dir)
  assert (model_cfg.mlp, model_cfg.tie_embeddings, model_cfg.scale_tied_logits,
          model_cfg.head_dim, model_cfg.num_layers, model_cfg.encoder_layers) == (
              "relu", True, True, 16, 2, 3)
  assert t5.start_token(json.load(open(os.path.join(v10_dir, "config.json")))) == PAD
  _check_parity(model_cfg, params, _torch_model(v10_dir)[0], "import v1.0")
  # The tokenizer: spiece.model against transformers' T5Tokenizer.
  t5_tok = transformers.T5Tokenizer.from_pretrained(v10_dir, extra_ids=100)
  assert tokenizer.encode(TEXT) == t5_tok(TEXT, add_special_tokens=False)["input_ids"]
  assert tokenizer.vocab_size <= model_cfg.vocab_size
  assert tokenizer.special_ids["</s>"] == EOS and tokenizer.special_ids["<pad>"] == PAD


@pytest.mark.slow
def test_import_t5_v11_matches_transformers(v11_dir):
  model_cfg, params, _ = lm.hf.load(v11_dir)
  assert (model_cfg.mlp, model_cfg.tie_embeddings, model_cfg.head_dim) == ("geglu", False, None)
  torch_model = _torch_model(v11_dir)[0]
  assert torch_model.lm_head.weight is not torch_model.shared.weight  # Really untied.
  _check_parity(model_cfg, params, torch_model, "import v1.1")


def test_sample_entry_point_decodes_like_generate(v10_dir, tmp_path, capsys):
  # experiments/sample.py --hf_checkpoint: the prompt is the source (plus T5's </s>), the
  # decoder starts from decoder_start_token_id, as transformers' generate does.
  from lm import generation
  prompt = "First Citizen: speak"
  out = generation.sample_run(None, [prompt], generation.Settings(strategy="greedy",
                                                                 max_new_tokens=8),
                              hf_checkpoint=v10_dir)
  tokenizer = lm.hf.load(v10_dir)[2]
  torch_model = _torch_model(v10_dir)[0]
  source = torch.tensor([tokenizer.encode(prompt) + [EOS]])
  with torch.no_grad():
    want = torch_model.generate(input_ids=source, do_sample=False, max_new_tokens=8,
                                eos_token_id=EOS, pad_token_id=PAD, decoder_start_token_id=PAD)
  assert out[0]["text"] == tokenizer.decode(want[0, 1:].tolist())
  assert out[0]["tokens"] == len(want[0]) - 1
  # Perplexity of a text is for decoders: refused with a message.
  from lm.hf import evaluate
  (tmp_path / "t.txt").write_text(TEXT)
  with pytest.raises(ConfigError, match="t5 checkpoint .*defined for decoder checkpoints"):
    evaluate.evaluate_file(v10_dir, str(tmp_path / "t.txt"))


# ---------------------------------------------------------------------------- export


def _random_params(model_cfg, seed):
  # numpy: an eager init_params takes seconds on a busy CPU.
  rng = np.random.RandomState(seed)
  return jax.tree_util.tree_map_with_path(
      lambda path, x: (float(path[-1].key == "scale") + rng.normal(0.0, 0.15, x.shape)
                       ).astype(np.float32),
      nn.meta.unbox(encoder_decoder.abstract_params(model_cfg)))


@pytest.mark.slow
@pytest.mark.parametrize("options", [
    dict(mlp="relu", tie_embeddings=True, scale_tied_logits=True, head_dim=16),
    # Fewer decoder than encoder layers (transformers 5's generate sizes its cache by the
    # encoder's num_layers, so the other way round fails there).
    dict(mlp="geglu", tie_embeddings=False, num_layers=1, num_encoder_layers=2),
    dict(mlp="swiglu", tie_embeddings=True, scale_tied_logits=False),
])
def test_export_loads_in_transformers(v10_dir, tmp_path, options):
  tokenizer = lm.hf.load(v10_dir)[2]
  model_cfg = ModelConfig(**{
      **dict(vocab_size=VOCAB, max_len=32, num_layers=2, num_heads=4, width=32, mlp_width=48,
             family="encoder_decoder", position="relative", relative_buckets=8,
             relative_max_distance=16, norm="rmsnorm", norm_eps=1e-6, scale_attention=False),
      **options})
  params = _random_params(model_cfg, 0)
  out = str(tmp_path / "export")
  lm.hf.save(out, model_cfg, params, tokenizer)  # model_type from the family: t5.
  torch_model, info = _torch_model(out)
  assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
  assert torch_model.config.scale_decoder_outputs == bool(
      model_cfg.tie_embeddings and model_cfg.scale_tied_logits)
  _check_parity(model_cfg, params, torch_model, f"export {model_cfg.mlp}")
  cfg2, params2, tok2 = lm.hf.load(out)
  for f in ("mlp", "tie_embeddings", "dims_per_head", "num_layers", "encoder_layers",
            "relative_buckets", "relative_max_distance", "hidden_width"):
    assert getattr(cfg2, f) == getattr(model_cfg, f), f
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, np.asarray(b)), params2, params)
  assert tok2.encode(TEXT) == tokenizer.encode(TEXT) and tok2.vocab_size == tokenizer.vocab_size
  auto = transformers.AutoTokenizer.from_pretrained(out)
  assert auto(TEXT, add_special_tokens=False)["input_ids"] == tokenizer.encode(TEXT)
  assert len(auto) == tokenizer.vocab_size


@pytest.mark.parametrize("change, named", [
    (dict(norm="layernorm"), "model.norm='layernorm'"),
    (dict(position="learned"), "model.position='learned'"),
    (dict(mlp="gelu"), "model.mlp='gelu'"),
    (dict(num_kv_heads=2), "model.num_kv_heads=2"),
    (dict(scale_attention=True), "model.scale_attention=True"),
])
def test_export_refuses_what_t5_cannot_express(tmp_path, change, named):
  base = dict(vocab_size=VOCAB, max_len=32, num_layers=1, num_heads=4, width=32,
              family="encoder_decoder", position="relative", norm="rmsnorm",
              scale_attention=False, mlp="relu")
  model_cfg = ModelConfig(**{**base, **change})
  with pytest.raises(ConfigError, match=named):
    lm.hf.save(str(tmp_path / "x"), model_cfg, params=None)
  assert not os.path.exists(tmp_path / "x")


# ---------------------------------------------------------------------------- bad input


def _copy_t5(src, dst, tensors):
  hf_checkpoints.copy_with(src, dst, tensors, files=("config.json", "spiece.model"))


def test_no_weights(v10_dir, tmp_path):
  _copy_t5(v10_dir, tmp_path, None)
  with pytest.raises(DataError, match="no weights in"):
    lm.hf.load(str(tmp_path))


@pytest.mark.parametrize("changes, named", [
    (dict(feed_forward_proj="gated-relu"), "feed_forward_proj='gated-relu'"),
    (dict(is_encoder_decoder=False), "is_encoder_decoder=False"),
])
def test_unsupported_config(v10_dir, tmp_path, changes, named):
  _copy_t5(v10_dir, tmp_path, safetensors_io.read_weights(v10_dir))
  hf_checkpoints.edit_config(tmp_path, **changes)
  with pytest.raises(ConfigError, match=named):
    lm.hf.load(str(tmp_path))


def test_untied_head_with_scaled_outputs_is_refused(v11_dir, tmp_path):
  _copy_t5(v11_dir, tmp_path, safetensors_io.read_weights(v11_dir))
  hf_checkpoints.edit_config(tmp_path, scale_decoder_outputs=True)
  with pytest.raises(ConfigError, match="lm_head.weight different from shared.weight"):
    lm.hf.load(str(tmp_path))


def test_shape_mismatch_names_the_tensor(v10_dir, tmp_path):
  tensors = safetensors_io.read_weights(v10_dir)
  tensors["encoder.block.1.layer.1.DenseReluDense.wi.weight"] = np.zeros((47, 32), np.float32)
  _copy_t5(v10_dir, tmp_path, tensors)
  with pytest.raises(DataError, match=r"'encoder.block.1.layer.1.DenseReluDense.wi.weight' has "
                                      r"shape \(47, 32\), the config implies \(48, 32\)"):
    lm.hf.load(str(tmp_path))


def test_missing_relative_bias_is_named(v10_dir, tmp_path):
  tensors = safetensors_io.read_weights(v10_dir)
  del tensors["decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
  _copy_t5(v10_dir, tmp_path, tensors)
  with pytest.raises(DataError, match="missing tensors 'decoder.block.0.layer.0.SelfAttention"
                                      ".relative_attention_bias.weight'"):
    lm.hf.load(str(tmp_path))


def test_embedding_copy_must_match_shared(v10_dir, tmp_path):
  tensors = safetensors_io.read_weights(v10_dir)
  tensors["encoder.embed_tokens.weight"] = tensors["shared.weight"] + 1
  _copy_t5(v10_dir, tmp_path, tensors)
  with pytest.raises(DataError, match="encoder.embed_tokens.weight differs from shared.weight"):
    lm.hf.load(str(tmp_path))


def test_report_max_diffs():
  # Runs last in this file: prints what the parity tests measured (see README).
  for name, diff in sorted(MAX_DIFF.items()):
    print(f"{name}: max abs diff {diff:.2e}")
