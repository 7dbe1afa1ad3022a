"""GPT-2 interop: lm against the reference implementation (transformers on PyTorch CPU).

Import: a small random GPT2LMHeadModel saved by transformers is loaded by lm.hf.load and
must give the same logits, final hidden states, per-token log-probs of a text and greedy
generations. Export: a random lm model saved by lm.hf.save is loaded by transformers with
no missing or unexpected weights and must give the same again. Plus the tokenizer against
PreTrainedTokenizerFast, and bad checkpoints.
"""

import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from tests import hf_checkpoints  # noqa: E402
import lm.hf  # noqa: E402
from lm import decoding, tokenizers as lm_tokenizers  # noqa: E402
from lm.errors import ConfigError, DataError  # noqa: E402
from lm.hf import safetensors_io  # noqa: E402
from lm.hf import tokenizer as hf_tokenizer  # noqa: E402
from lm.models import decoder  # noqa: E402
from lm.models.config import ModelConfig  # noqa: E402

TEXT = ("First Citizen: Before we proceed any further, hear me speak. All: Speak, speak. "
        "First Citizen: You are all resolved rather to die than to famish? Ünïcödé ✓ 東京\n")
EOT = "<|endoftext|>"
TOL = 1e-4


def _train_bpe(directory: str, vocab_size: int = 300) -> str:
  """A byte-level BPE tokenizer.json like GPT-2's, trained on TEXT; returns its path."""
  from tokenizers import decoders, models, pre_tokenizers, trainers
  tok = tokenizers.Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  tok.train_from_iterator([TEXT] * 3, trainers.BpeTrainer(
      vocab_size=vocab_size, special_tokens=[EOT],
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
  path = os.path.join(directory, "tokenizer.json")
  tok.save(path)
  return path


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
  """A directory saved by transformers: random GPT-2 weights plus a trained tokenizer."""
  directory = str(tmp_path_factory.mktemp("gpt2"))
  tok = tokenizers.Tokenizer.from_file(_train_bpe(directory))
  eot = tok.token_to_id(EOT)
  torch.manual_seed(0)
  config = transformers.GPT2Config(
      vocab_size=tok.get_vocab_size(), n_positions=64, n_embd=64, n_layer=2, n_head=4,
      bos_token_id=eot, eos_token_id=eot, pad_token_id=eot)
  model = transformers.GPT2LMHeadModel(config).eval()
  hf_checkpoints.perturb_torch(model, 0, 0.1)
  model.save_pretrained(directory, safe_serialization=True)
  return directory


def _torch_model(directory: str):
  model, info = transformers.GPT2LMHeadModel.from_pretrained(directory,
                                                             output_loading_info=True)
  return model.eval(), info


def _torch_forward(model, tokens):
  with torch.no_grad():
    out = model(torch.tensor(np.asarray(tokens)), output_hidden_states=True)
  return out.logits.numpy(), out.hidden_states[-1].numpy()


def _check_parity(model_cfg, params, tokenizer, torch_model):
  # Full float32 matmuls on every backend (GPUs may otherwise use TF32, ~1e-3 off).
  with jax.default_matmul_precision("highest"):
    _check_parity_f32(model_cfg, params, tokenizer, torch_model)


def _check_parity_f32(model_cfg, params, tokenizer, torch_model):
  """Logits, final hidden states, per-token log-probs of TEXT and greedy generations."""
  eot = tokenizer.special_ids[EOT]
  text_ids = ([eot] + tokenizer.encode(TEXT * 4))[:model_cfg.max_len]  # TEXT, then more of it.
  random_ids = np.random.RandomState(1).randint(0, model_cfg.vocab_size, model_cfg.max_len)
  tokens = np.stack([text_ids, random_ids])  # [2, max_len]
  forward = jax.jit(lambda p, t: decoder.Decoder(model_cfg).apply({"params": p}, t))
  logits, aux = forward(params, jnp.asarray(tokens))
  ref_logits, ref_hidden = _torch_forward(torch_model, tokens)
  np.testing.assert_allclose(logits, ref_logits, atol=TOL, rtol=0)
  np.testing.assert_allclose(aux["hidden"], ref_hidden, atol=TOL, rtol=0)

  # log p(token t | tokens < t) of the text, every token after <|endoftext|>.
  pick = lambda lp: np.take_along_axis(lp[0, :-1], tokens[0, 1:, None], -1)[:, 0]  # noqa: E731
  ours = pick(np.asarray(jax.nn.log_softmax(logits)))
  np.testing.assert_allclose(ours, pick(torch.log_softmax(torch.tensor(ref_logits), -1).numpy()),
                             atol=TOL, rtol=0)
  assert ours.min() < -1.0  # Not a degenerate distribution.

  # Two prompts of different lengths in one left-padded lm batch; transformers one at a time.
  prompts = [text_ids[:5], text_ids[:9]]
  new = 20
  generated = decoding.generate(decoder.decoding_model(model_cfg, params), prompts,
                                max_new_tokens=new, stop_tokens=[eot]).lists()
  for prompt, got in zip(prompts, generated):
    with torch.no_grad():
      out = torch_model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=new,
                                 eos_token_id=eot, pad_token_id=eot)
    assert got == out[0, len(prompt):].tolist()
  assert len(set(generated[0] + generated[1])) > 3  # Greedy did not collapse onto one token.


# ---------------------------------------------------------------------------- import


def test_import_matches_transformers(hf_dir):
  model_cfg, params, tokenizer = lm.hf.load(hf_dir)
  assert (model_cfg.position, model_cfg.norm, model_cfg.use_bias) == ("learned", "layernorm",
                                                                      True)
  _check_parity(model_cfg, params, tokenizer, _torch_model(hf_dir)[0])


def test_import_gpt2model_layout_with_buffers(hf_dir, tmp_path):
  # The original `gpt2` upload: no 'transformer.' prefix, causal-mask buffers, and a tied
  # lm_head copy; all load to the same params.
  tensors = safetensors_io.read_weights(hf_dir)
  old = {k.removeprefix("transformer."): v for k, v in tensors.items()}
  old["h.0.attn.bias"] = np.tril(np.ones((1, 1, 64, 64), np.float32))
  old["h.0.attn.masked_bias"] = np.array(-1e4, np.float32)
  old["lm_head.weight"] = old["wte.weight"]
  hf_checkpoints.copy_with(hf_dir, tmp_path, old)
  got, want = lm.hf.load(str(tmp_path))[1], lm.hf.load(hf_dir)[1]
  jax.tree.map(np.testing.assert_array_equal, got, want)


def test_import_pytorch_bin_with_weights_only(hf_dir, tmp_path):
  model, _ = _torch_model(hf_dir)
  hf_checkpoints.copy_with(hf_dir, tmp_path, None)
  torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
  got, want = lm.hf.load(str(tmp_path))[1], lm.hf.load(hf_dir)[1]
  jax.tree.map(np.testing.assert_array_equal, got, want)


def test_import_bfloat16_weights(hf_dir, tmp_path):
  # numpy has no bfloat16, so safetensors.numpy cannot read these; lm reads them by hand.
  from safetensors.torch import save_file
  model, _ = _torch_model(hf_dir)
  hf_checkpoints.copy_with(hf_dir, tmp_path, None)
  save_file({k: v.to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()},
            str(tmp_path / "model.safetensors"))
  got = lm.hf.load(str(tmp_path))[1]
  want = jax.tree.map(lambda x: np.asarray(jnp.asarray(x, jnp.bfloat16), np.float32),
                      lm.hf.load(hf_dir)[1])
  jax.tree.map(np.testing.assert_array_equal, got, want)


class _Payload:
  """Not a tensor: torch.load(weights_only=True) must refuse to unpickle it."""


def test_refuses_pickle_with_code(hf_dir, tmp_path):
  hf_checkpoints.copy_with(hf_dir, tmp_path, None)
  torch.save({"wte.weight": torch.zeros(2), "evil": _Payload()}, tmp_path / "pytorch_model.bin")
  with pytest.raises(DataError, match="weights_only=True"):
    lm.hf.load(str(tmp_path))


# ---------------------------------------------------------------------------- export


def _compatible_config(vocab_size: int) -> ModelConfig:
  return ModelConfig(vocab_size=vocab_size, max_len=32, num_layers=2, num_heads=2, width=32,
                     mlp_width=48, use_bias=True, norm_eps=1e-5)


def test_export_loads_in_transformers(hf_dir, tmp_path):
  tokenizer = lm.hf.load(hf_dir)[2]
  model_cfg = _compatible_config(tokenizer.vocab_size)
  # Random values in every param, biases and norm scales included (numpy: an eager
  # init_params takes seconds on a busy CPU).
  rng = np.random.RandomState(0)
  params = jax.tree_util.tree_map_with_path(
      lambda path, x: (float(path[-1].key == "scale") + rng.normal(0.0, 0.1, x.shape)
                       ).astype(np.float32),
      nn.meta.unbox(decoder.abstract_params(model_cfg)))
  out = str(tmp_path / "export")
  lm.hf.save(out, model_cfg, params, tokenizer)
  torch_model, info = _torch_model(out)
  assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
  assert torch_model.config.n_inner == 48
  _check_parity(model_cfg, params, tokenizer, torch_model)
  # And back: the same params and tokenizer.
  cfg2, params2, tok2 = lm.hf.load(out)
  assert dataclasses_equal(cfg2, model_cfg)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, np.asarray(b)), params2, params)
  assert tok2.encode(TEXT) == tokenizer.encode(TEXT)
  fast = transformers.PreTrainedTokenizerFast.from_pretrained(out)
  assert fast(TEXT)["input_ids"] == tokenizer.encode(TEXT)


def dataclasses_equal(a: ModelConfig, b: ModelConfig) -> bool:
  # Import sets fields export leaves implicit (dtype, dropout); compare what the model computes.
  fields = ("vocab_size", "max_len", "num_layers", "num_heads", "width", "hidden_width",
            "dims_per_head", "position", "norm", "norm_eps", "mlp", "tie_embeddings", "use_bias")
  return all(getattr(a, f) == getattr(b, f) for f in fields)


@pytest.mark.parametrize("change, named", [
    (dict(position="rope"), "model.position='rope'"),
    (dict(norm="rmsnorm"), "model.norm='rmsnorm'"),
    (dict(mlp="swiglu"), "model.mlp='swiglu'"),
    (dict(use_bias=False), "model.use_bias=False"),
    (dict(tie_embeddings=False), "model.tie_embeddings=False"),
    (dict(num_kv_heads=1), "model.num_kv_heads=1"),
])
def test_export_refuses_what_gpt2_cannot_express(tmp_path, change, named):
  import dataclasses
  model_cfg = dataclasses.replace(_compatible_config(50), **change)
  with pytest.raises(ConfigError, match=named):  # Before it looks at the params.
    lm.hf.save(str(tmp_path / "x"), model_cfg, params=None)
  assert not os.path.exists(tmp_path / "x")


def test_export_refuses_existing_checkpoint(hf_dir):
  model_cfg, params, _ = lm.hf.load(hf_dir)
  with pytest.raises(ConfigError, match="already holds config.json"):
    lm.hf.save(hf_dir, model_cfg, params)


# ---------------------------------------------------------------------------- tokenizer


def test_tokenizer_matches_transformers_fast_tokenizer(hf_dir, tmp_path):
  tokenizer = lm.hf.load(hf_dir)[2]
  fast = transformers.PreTrainedTokenizerFast(tokenizer_file=os.path.join(hf_dir,
                                                                          "tokenizer.json"))
  texts = [TEXT, " leading space", "unseen wörds ☃ and <|endoftext|> inside", ""]
  for text in texts:
    ids = tokenizer.encode(text)
    assert ids == fast(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text.replace(EOT, "")  # decode drops special tokens
  assert tokenizer.vocab_size == len(fast)
  assert tokenizer.special_ids == {EOT: fast.convert_tokens_to_ids(EOT)}
  # Saved with a run and rebuilt, like lm's own tokenizers.
  lm_tokenizers.save(tokenizer, str(tmp_path / "tok.json"))
  assert lm_tokenizers.load(str(tmp_path / "tok.json")).encode(TEXT) == tokenizer.encode(TEXT)


def test_tokenizer_from_vocab_and_merges(hf_dir, tmp_path):
  # Older GPT-2 directories have vocab.json + merges.txt instead of tokenizer.json.
  tok = tokenizers.Tokenizer.from_file(os.path.join(hf_dir, "tokenizer.json"))
  tok.model.save(str(tmp_path))
  assert sorted(os.listdir(tmp_path)) == ["merges.txt", "vocab.json"]
  slow = transformers.GPT2Tokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
  built = hf_tokenizer.load_bpe(str(tmp_path))
  for text in (TEXT, "unseen wörds ☃"):
    assert built.encode(text) == slow.encode(text) == tok.encode(text).ids
  assert built.special_ids == {EOT: tok.token_to_id(EOT)}


# ---------------------------------------------------------------------------- bad input


def test_no_weights(hf_dir, tmp_path):
  hf_checkpoints.copy_with(hf_dir, tmp_path, None)
  with pytest.raises(DataError, match="no weights in .*model.safetensors"):
    lm.hf.load(str(tmp_path))


def test_no_config(tmp_path):
  with pytest.raises(DataError, match="no config.json"):
    lm.hf.load(str(tmp_path))


@pytest.mark.parametrize("changes, named", [
    (dict(scale_attn_by_inverse_layer_idx=True), "scale_attn_by_inverse_layer_idx=True"),
    (dict(activation_function="relu"), "activation_function='relu'"),
    (dict(tie_word_embeddings=False), "tie_word_embeddings=False"),
    (dict(add_cross_attention=True), "add_cross_attention=True"),
    (dict(attn_pdrop=0.0), "resid_pdrop/embd_pdrop/attn_pdrop"),
    (dict(model_type="llama"),
     "model_type='llama' is not supported; supported: \\['bert', 'gpt2', 't5'\\]"),
])
def test_unsupported_config(hf_dir, tmp_path, changes, named):
  hf_checkpoints.copy_with(hf_dir, tmp_path, safetensors_io.read_weights(hf_dir))
  hf_checkpoints.edit_config(tmp_path, **changes)
  with pytest.raises(ConfigError, match=named):
    lm.hf.load(str(tmp_path))


def test_shape_mismatch_names_the_tensor(hf_dir, tmp_path):
  tensors = safetensors_io.read_weights(hf_dir)
  tensors["transformer.h.1.mlp.c_fc.weight"] = np.zeros((64, 255), np.float32)
  hf_checkpoints.copy_with(hf_dir, tmp_path, tensors)
  with pytest.raises(DataError, match=r"'h.1.mlp.c_fc.weight' has shape \(64, 255\), the "
                                      r"config implies \(64, 256\)"):
    lm.hf.load(str(tmp_path))


def test_config_disagreeing_with_weights(hf_dir, tmp_path):
  hf_checkpoints.copy_with(hf_dir, tmp_path, safetensors_io.read_weights(hf_dir))
  hf_checkpoints.edit_config(tmp_path, n_inner=128)
  with pytest.raises(DataError, match=r"'h.0.mlp.c_fc.weight' has shape \(64, 256\)"):
    lm.hf.load(str(tmp_path))


def test_missing_and_unexpected_tensors(hf_dir, tmp_path):
  tensors = safetensors_io.read_weights(hf_dir)
  del tensors["transformer.h.0.ln_2.bias"]
  tensors["transformer.h.0.attn.q_attn.weight"] = np.zeros((64, 64), np.float32)
  hf_checkpoints.copy_with(hf_dir, tmp_path, tensors)
  with pytest.raises(DataError, match="missing tensors 'h.0.ln_2.bias'; unexpected tensors "
                                      "'h.0.attn.q_attn.weight'"):
    lm.hf.load(str(tmp_path))


def test_untied_head_refused(hf_dir, tmp_path):
  tensors = safetensors_io.read_weights(hf_dir)
  tensors["lm_head.weight"] = tensors["transformer.wte.weight"] + 1.0
  hf_checkpoints.copy_with(hf_dir, tmp_path, tensors)
  with pytest.raises(DataError, match="lm_head.weight differs from wte.weight"):
    lm.hf.load(str(tmp_path))


# ---------------------------------------------------------------------------- evaluation


def test_text_perplexity_and_bits_per_byte(hf_dir, tmp_path):
  from lm.hf import evaluate
  text = TEXT * 3  # Several windows of 64 tokens, the last one partial.
  path = tmp_path / "text.txt"
  path.write_text(text, encoding="utf-8")
  result = evaluate.evaluate_file(hf_dir, str(path), batch_size=2)
  # The protocol by hand on transformers: <|endoftext|> + text, disjoint 64-token windows.
  model, _ = _torch_model(hf_dir)
  fast = transformers.PreTrainedTokenizerFast(tokenizer_file=os.path.join(hf_dir,
                                                                          "tokenizer.json"))
  ids = torch.tensor([fast.convert_tokens_to_ids(EOT)] + fast(text)["input_ids"])
  nll, count = 0.0, 0
  for start in range(0, len(ids) - 1, 64):
    window = ids[start:start + 65]
    with torch.no_grad():
      logits = model(window[None, :-1]).logits[0]
    nll += torch.nn.functional.cross_entropy(logits, window[1:], reduction="sum").item()
    count += len(window) - 1
  assert result["tokens"] == count == len(ids) - 1 > 128
  np.testing.assert_allclose(result["perplexity"], np.exp(nll / count), rtol=1e-5)
  np.testing.assert_allclose(result["bits_per_byte"],
                             nll / np.log(2) / len(text.encode("utf-8")), rtol=1e-5)


@pytest.mark.slow
def test_entry_points(hf_dir, tmp_path):
  import subprocess
  import sys

  def run(entry, *args):
    return subprocess.run([sys.executable, "-m", f"experiments.{entry}", *args],
                          capture_output=True, text=True, timeout=300)

  (tmp_path / "text.txt").write_text(TEXT, encoding="utf-8")
  out = run("evaluate", f"--hf_checkpoint={hf_dir}", f"--text_file={tmp_path / 'text.txt'}",
            f"--output={tmp_path / 'eval.json'}")
  assert out.returncode == 0, out.stderr[-2000:]
  result = json.loads((tmp_path / "eval.json").read_text())
  assert f"perplexity {result['perplexity']:.3f}" in out.stdout
  assert "bits per byte" in out.stdout and result["bytes"] == len(TEXT.encode("utf-8"))
  for split, rows in (("dev", ["1+1?,2,3,4,5,A"]), ("test", ["2+2?,3,4,5,6,B"])):
    os.makedirs(tmp_path / "mmlu" / split)
    (tmp_path / "mmlu" / split / f"arith_{split}.csv").write_text("\n".join(rows) + "\n")
  out = run("evaluate", f"--hf_checkpoint={hf_dir}", "--task=mmlu", "--shots=1",
            f"--mmlu_dir={tmp_path / 'mmlu'}", f"--output={tmp_path / 'mmlu.json'}")
  assert out.returncode == 0, out.stderr[-2000:]
  assert json.loads((tmp_path / "mmlu.json").read_text())["micro"]["n"] == 1
  assert "chance is 25.0%" in out.stdout
  out = run("evaluate", f"--hf_checkpoint={tmp_path}", f"--text_file={tmp_path / 'text.txt'}")
  assert out.returncode == 2 and out.stderr.strip() == f"error: no config.json in {tmp_path}: " \
                                                       "not a Hugging Face checkpoint directory"


def test_sample_run(hf_dir, capsys):
  from lm import generation
  settings = generation.Settings(strategy="greedy", max_new_tokens=8, stop=(EOT,))
  result, = generation.sample_run(None, ["First"], settings, hf_checkpoint=hf_dir)
  model_cfg, params, tokenizer = lm.hf.load(hf_dir)
  want = decoding.generate(decoder.decoding_model(model_cfg, params), [tokenizer.encode("First")],
                           max_new_tokens=8, stop_tokens=[tokenizer.special_ids[EOT]]).lists()[0]
  assert result["text"] == tokenizer.decode(want) and result["tokens"] == len(want)
  assert capsys.readouterr().out.startswith("--- 'First'\nFirst" + result["text"])


def test_multiple_choice_loglikelihoods_match_transformers(hf_dir, tmp_path):
  """MMLU scoring of an imported checkpoint: each continuation's log-likelihood equals the
  sum transformers gives to its tokens after the context; then a 0-shot MMLU run end to end."""
  from lm import eval_run, multiple_choice
  loaded = eval_run.load_hf(hf_dir)
  requests = [("Question: what is 2 + 2?\nAnswer:", " A"), ("Speak, speak.", " All: four"),
              ("First Citizen:", " Before we proceed")]
  with jax.default_matmul_precision("highest"):
    ll = multiple_choice.model_loglikelihood(loaded.scorer, loaded.tokenizer,
                                             max_len=loaded.max_len, batch_size=2)(requests)
  model, _ = _torch_model(hf_dir)
  for (context, continuation), got in zip(requests, ll):
    ctx, cont = loaded.tokenizer.encode(context), loaded.tokenizer.encode(continuation)
    ids = torch.tensor([ctx + cont])
    with torch.no_grad():
      logp = torch.log_softmax(model(ids).logits[0], -1).numpy()
    want = sum(logp[len(ctx) - 1 + i, t] for i, t in enumerate(cont))
    np.testing.assert_allclose(got, want, atol=TOL)

  for split, rows in (("dev", ["1+1?,2,3,4,5,A"]), ("test", ["2+2?,3,4,5,6,B", "3+3?,6,7,8,9,A"])):
    os.makedirs(tmp_path / split)
    (tmp_path / split / f"arith_{split}.csv").write_text("\n".join(rows) + "\n")
  r = eval_run.mmlu(loaded, str(tmp_path), shots=0, batch_size=4)
  assert r["micro"]["n"] == 2 and r["chance"] == 0.25
  assert all(0.0 <= r["micro"][k] <= 1.0 for k in ("acc_letter", "acc", "acc_norm"))
