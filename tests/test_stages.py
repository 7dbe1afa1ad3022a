"""The sft, dpo and reward stages on the shared train loop: init_from, resume, DPO at init."""

import json
import math

import numpy as np
import pytest

from configs import demo_align, pipeline
from lm import metrics, tokenizers, train
from lm.data import instruct
from lm.errors import ConfigError


def _write(path, rows):
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  return str(path)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
  """A 10-step byte-level pretraining run and small instruction / preference files."""
  root = tmp_path_factory.mktemp("stages")
  rng = np.random.default_rng(0)
  words = ["".join(rng.choice(list("abcdef"), 4)) for _ in range(60)]
  (root / "corpus.txt").write_text(" ".join(words * 20))
  c = pipeline.get_config("pretrain_smoke")
  c.data.text_file = str(root / "corpus.txt")
  c.data.special_tokens = ("<bos>", "<eos>", "<pad>", "<|user|>", "<|assistant|>")
  c.train.steps = 10
  train.train_and_evaluate(c, str(root / "pretrain"))
  files = {
      "sft": _write(root / "sft.jsonl", [{"instruction": f"rev:{w}", "output": w[::-1]}
                                         for w in words]),
      "pref": _write(root / "pref.jsonl", [{"prompt": f"rev:{w}", "chosen": w[::-1] + ".",
                                            "rejected": w[::-1] + "!"} for w in words]),
  }
  return root, files


def _config(variant, pretrained, train_file):
  root, _ = pretrained
  c = pipeline.get_config(variant)
  c.init_from = str(root / "pretrain")
  c.align.train_file = train_file
  c.align.eval_fraction = 0.2
  c.train.steps, c.train.log_every, c.train.eval_every, c.train.checkpoint_every = 6, 1, 3, 3
  return c


def test_sft_trains_from_init_from(pretrained, tmp_path):
  c = _config("sft_smoke", pretrained, pretrained[1]["sft"])
  c.align.template.user = "<|user|>{content}\n"
  c.align.template.assistant = "<|assistant|>{content}<eos>"
  results = train.train_and_evaluate(c, str(tmp_path / "sft"))
  tokenizer = tokenizers.load(str(tmp_path / "sft" / "tokenizer.json"))
  # The template's markers are the pretrained vocabulary's special tokens, one id each.
  assert instruct.encode_text(tokenizer, "<|user|>ab<|assistant|>") == [259, 97, 98, 260]
  assert results["stage"] == "sft" and np.isfinite(results["loss"])
  assert results["data_counts"]["train"]["examples"] == 48
  assert results["data_counts"]["eval"]["examples"] == 12


def test_dpo_starts_at_log_two_and_resumes_exactly(pretrained, tmp_path):
  c = _config("dpo_smoke", pretrained, pretrained[1]["pref"])
  c.optim.lr = 1e-3  # Big enough that the steps change the loss.
  whole = train.train_and_evaluate(c, str(tmp_path / "whole"))
  records = metrics.read(str(tmp_path / "whole"))
  first = records[0]
  assert first["split"] == "train" and first["step"] == 1
  np.testing.assert_allclose(first["loss"], math.log(2), rtol=1e-5)
  assert first["margin"] == 0.0
  assert whole["kl_per_token"] > 0 and whole["pairs"] == 12
  assert train.train_and_evaluate(c, str(tmp_path / "split"), stop_at=4) == {}
  resumed = train.train_and_evaluate(c, str(tmp_path / "split"))
  for key in ("loss", "margin", "accuracy", "kl_per_token"):
    assert resumed[key] == whole[key], key
  assert metrics.read(str(tmp_path / "split")) == records


def test_reward_model_reports_pairwise_accuracy(pretrained, tmp_path):
  c = _config("reward_smoke", pretrained, pretrained[1]["pref"])
  results = train.train_and_evaluate(c, str(tmp_path / "rm"))
  assert 0.0 <= results["accuracy"] <= 1.0 and results["pairs"] == 12


def test_init_from_with_another_model_is_refused(pretrained, tmp_path):
  c = _config("sft_smoke", pretrained, pretrained[1]["sft"])
  c.model.width = 48
  with pytest.raises(ConfigError, match="model.width: 32 -> 48"):
    train.train_and_evaluate(c, str(tmp_path / "x"))


def test_pretrain_with_init_from_is_refused(pretrained, tmp_path):
  c = pipeline.get_config("pretrain_smoke")
  c.init_from = str(pretrained[0] / "pretrain")
  with pytest.raises(ConfigError, match="init_from is for the stages"):
    train.train_and_evaluate(c, str(tmp_path / "x"))


@pytest.mark.parametrize("module,variant",
                         [(pipeline, v) for v in pipeline.VARIANTS]
                         + [(demo_align, v) for v in demo_align.VARIANTS])
def test_variant_builds_and_validates(module, variant):
  c = module.get_config(variant)
  if c.stage != "pretrain" and c.align.train_file is None:
    c.align.train_file = "filled-in-by-lm.demo_align.jsonl"
  if c.data.text_file is None:
    c.data.text_file = "filled-in-by-lm.demo_align.txt"
  train.validate(c)
  assert c.stage == variant.removesuffix("_smoke")
