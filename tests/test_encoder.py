"""Encoder-only family: bidirectional, padding-invariant, heads, config and smoke stages."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import encoder_shakespeare
from lm import families, train
from lm.data import labelled
from lm.errors import ConfigError, DataError
from lm.models import encoder
from lm.models.config import ModelConfig

CFG = ModelConfig(vocab_size=30, max_len=16, num_layers=2, num_heads=2, width=32,
                  family="encoder", num_labels=3)


def _params(cfg, head="mlm"):
  return encoder.init_params(cfg, jax.random.key(0), head)


@pytest.mark.parametrize("position", ["learned", "rope", "relative"])
def test_output_at_t_depends_on_later_tokens(position):
  cfg = ModelConfig(**{**CFG.__dict__, "position": position})
  params = _params(cfg)
  tokens = jnp.arange(10)[None] % 30
  later = tokens.at[0, 7].set(29)
  a, b = encoder.encode(cfg, params, tokens), encoder.encode(cfg, params, later)
  assert a.shape == (1, 10, 32)
  assert np.abs(a[0, 2] - b[0, 2]).max() > 1e-4  # Position 2 sees position 7.


@pytest.mark.parametrize("norm_position", ["pre", "post"])
def test_padding_does_not_change_real_outputs(norm_position):
  cfg = ModelConfig(**{**CFG.__dict__, "norm_position": norm_position, "embed_norm": True,
                       "type_vocab_size": 2, "use_bias": True, "mlp": "gelu_exact"})
  params = _params(cfg)
  tokens = jnp.array([[5, 6, 7, 8, 9]])
  alone = encoder.encode(cfg, params, tokens)
  padded = jnp.array([[5, 6, 7, 8, 9, 3, 1, 4], [5, 6, 7, 8, 9, 0, 0, 0]])
  mask = jnp.arange(8)[None] < 5
  out = encoder.encode(cfg, params, padded, jnp.broadcast_to(mask, (2, 8)))
  np.testing.assert_allclose(out[:, :5], jnp.broadcast_to(alone, (2, 5, 32)), atol=1e-5)


def test_heads_shapes_and_mean_pooling_ignores_padding():
  cfg = ModelConfig(**{**CFG.__dict__, "pooling": "mean", "pooler": True, "use_bias": True,
                       "mlm_transform": True})
  tokens = jnp.array([[4, 5, 6, 0, 0]])
  mask = jnp.array([[True, True, True, False, False]])
  for head, shape in (("mlm", (1, 5, 30)), ("sequence", (1, 1, 3)), ("token", (1, 5, 3))):
    params = _params(cfg, head)
    logits, aux = encoder.EncoderModel(cfg, head).apply({"params": params}, tokens,
                                                        padding_mask=mask)
    assert logits.shape == shape
  params = _params(cfg, "sequence")
  other = jnp.array([[4, 5, 6, 9, 9]])
  again, _ = encoder.EncoderModel(cfg, "sequence").apply({"params": params}, other,
                                                         padding_mask=mask)
  seq, _ = encoder.EncoderModel(cfg, "sequence").apply({"params": params}, tokens,
                                                       padding_mask=mask)
  np.testing.assert_allclose(seq, again, atol=1e-6)
  hidden = aux["hidden"]
  np.testing.assert_allclose(encoder.pool(hidden, mask, "mean"), hidden[:, :3].mean(1),
                             atol=1e-6)


class _Chars:
  special_ids = {}

  def encode(self, text):
    return [ord(c) % 20 for c in text]


def test_labelled_data_errors_name_the_problem(tmp_path):
  path = tmp_path / "t.csv"
  path.write_text("text,label\nhello there,a\ngood day,b\n")
  train_ex = labelled.load(str(path))
  labels = labelled.label_set(train_ex)
  assert labels == ("a", "b")
  rows, counts = labelled.encode(train_ex, _Chars(), labels, context=16, cls_id=20, pad_id=21)
  assert rows["targets"][:, 0].tolist() == [0, 1] and counts["truncated"] == 0
  assert rows["inputs"][0, 0] == 20 and rows["padding_mask"][0].sum() == 12
  with pytest.raises(DataError, match=r"t.csv:2: label 'c' is not in the label set"):
    labelled.encode([(f"{path}:2", "x", "c")], _Chars(), labels, context=16, cls_id=20,
                    pad_id=21)
  with pytest.raises(DataError, match="empty text"):
    labelled.encode([("f:3", "  ", "a")], _Chars(), labels, context=16, cls_id=20, pad_id=21)
  with pytest.raises(DataError, match="exceed data.context=4"):
    labelled.encode(train_ex, _Chars(), labels, context=4, cls_id=20, pad_id=21)
  rows, counts = labelled.encode(train_ex, _Chars(), labels, context=4, cls_id=20, pad_id=21,
                                 truncation="truncate")
  assert counts["truncated"] == 2
  jsonl = tmp_path / "t.jsonl"
  jsonl.write_text('{"text": "hi", "label": "a"}\n{"text": "yo"}\n')
  with pytest.raises(DataError, match="t.jsonl:2: expected an object with 'text' and 'label'"):
    labelled.load(str(jsonl))


@pytest.mark.parametrize("variant", ["mlm", "classify", "smoke", "classify_smoke"])
def test_variants_validate(variant):
  c = encoder_shakespeare.get_config(variant)
  train.validate(c)
  cfg = ModelConfig(vocab_size=68, num_labels=2, **c.model.to_dict())
  assert families.param_count(cfg, c.stage) > 0
  assert families.flops_per_token(cfg) > 0


@pytest.mark.parametrize("field,value", [("scan_layers", True), ("remat", "full")])
def test_scan_and_remat_are_refused_outside_the_decoder(field, value):
  # The encoder families loop over their blocks in Python: the flags would do nothing.
  c = encoder_shakespeare.get_config("mlm")
  setattr(c.model, field, value)
  with pytest.raises(ConfigError, match="implemented for the decoder only; family 'encoder'"):
    train.validate(c)
  with pytest.raises(ConfigError, match="family 'encoder_decoder' needs model.scan_layers"):
    ModelConfig(vocab_size=8, max_len=8, num_layers=1, num_heads=2, width=8,
                family="encoder_decoder", **{field: value})
  ModelConfig(vocab_size=8, max_len=8, num_layers=1, num_heads=2, width=8, **{field: value})


def test_flops_count_bidirectional_attention():
  cfg = CFG
  weights = families._matmul_params(
      jax.eval_shape(lambda: encoder.init_params(cfg, jax.random.key(0)))["encoder"])
  assert weights == 2 * (4 * 32 * 32 + 2 * 32 * 128)  # q, k, v, out; up, down.
  per_key = 2 * 2 * 2 * 16
  assert families.flops_per_token(cfg, 16) == 3 * (2 * (weights + 32 * 30)
                                                   + 2 * per_key * 16)


@pytest.mark.slow
def test_mlm_then_classify_smoke_through_the_train_loop(tmp_path, corpus_file):
  c = encoder_shakespeare.get_config("smoke")
  c.data.source, c.data.text_file = "text", corpus_file
  ev = train.train_and_evaluate(c, str(tmp_path / "mlm"))
  assert np.isfinite(ev["loss"]) and ev["tokens"] > 0  # Masked positions only.
  data = tmp_path / "cls.jsonl"
  words = ["I love the moon", "the night fears", "my lord calls", "thy face sees"]
  data.write_text("".join(f'{{"text": "{words[i % 4]}", "label": "{"ab"[i % 2]}"}}\n'
                          for i in range(40)))
  c = encoder_shakespeare.get_config("classify_smoke")
  c.data.source, c.data.text_file = "text", corpus_file
  held_out = tmp_path / "held_out.csv"
  held_out.write_text("text,label\n" + "".join(f"{words[i % 4]},{'ab'[i % 2]}\n"
                                                for i in range(10)))
  c.task.builtin, c.task.train_file, c.task.eval_file = None, str(data), str(held_out)
  c.init_from = str(tmp_path / "mlm")
  ev = train.train_and_evaluate(c, str(tmp_path / "cls"))
  assert ev["majority_baseline"] == 0.5 and 0.0 <= ev["accuracy"] <= 1.0
  assert ev["labels"] == ["a", "b"]
