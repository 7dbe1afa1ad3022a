"""The classify stage on a prepared TFDS dataset, read without TensorFlow (array_record)."""

import json
import os
import shutil
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from configs import encoder_shakespeare
from lm import families, train
from lm.data import tfds_labelled
from lm.errors import ConfigError, DataError

NAMES = ["neg", "pos", "meh"]  # 'meh' never occurs: the label set is still the dataset's.
TRAIN = [(f"good {w} day é" if i % 2 else f"bad {w} night", i % 2)
         for i, w in enumerate(["one", "two", "three", "four"] * 6)]
TEST = [("a good day", 1), ("a bad night", 0), ("good", 1), ("bad", 0)]


class TinyLabelledText(tfds.core.GeneratorBasedBuilder):
  """A text-classification dataset built in the test, written as array_record."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        "text": tfds.features.Text(), "label": tfds.features.ClassLabel(names=NAMES)}))

  def _split_generators(self, dl_manager):
    return {"train": self._generate_examples(TRAIN), "test": self._generate_examples(TEST),
            "unsupervised": self._generate_examples([("no label here", -1)])}

  def _generate_examples(self, pairs):
    for i, (text, label) in enumerate(pairs):
      yield str(i), {"text": text, "label": label}


NAME = TinyLabelledText.name


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("tfds"))
  # The default format, tfrecord, needs TensorFlow to write. Like a stock builder, the class
  # leaves the format to whoever prepares it; readers take it from dataset_info.json.
  TinyLabelledText(data_dir=path, file_format="array_record").download_and_prepare()
  return path


def _config(data_dir, **task):
  c = encoder_shakespeare.get_config("classify_smoke")
  c.data.data_dir = data_dir
  c.task.tfds_name = NAME
  for key, value in task.items():
    setattr(c.task, key, value)
  return c


def test_reads_exact_texts_and_label_names(data_dir):
  files = os.listdir(os.path.join(data_dir, NAME, "1.0.0"))
  assert any(".array_record-" in f for f in files), files
  c = _config(data_dir)
  train.validate(c)
  got_train, got_eval = families._classify_examples(c)
  # TFDS shuffles examples when it writes them, so compare as multisets.
  assert sorted((x, y) for _, x, y in got_train) == sorted((x, NAMES[y]) for x, y in TRAIN)
  assert sorted((x, y) for _, x, y in got_eval) == sorted((x, NAMES[y]) for x, y in TEST)
  assert all(w.startswith(f"tfds:{NAME}/train:") for w, _, _ in got_train)
  assert families.labels(c) == tuple(NAMES)
  assert "tensorflow" not in sys.modules


def test_eval_fraction_split_and_configured_labels(data_dir):
  c = _config(data_dir, tfds_eval_split=None, eval_fraction=0.25, labels=("neg", "pos"))
  got_train, got_eval = families._classify_examples(c)
  assert (len(got_train), len(got_eval)) == (18, 6)
  assert {x for _, x, _ in got_train} | {x for _, x, _ in got_eval} == {x for x, _ in TRAIN}
  assert families.labels(c) == ("neg", "pos")
  c = _config(data_dir, tfds_train_split="train[:50%]")
  assert len(families._classify_examples(c)[0]) == 12


def test_errors_say_what_is_wrong(data_dir, tmp_path):
  with pytest.raises(DataError, match=f"{NAME}' is not prepared in .*tfds build {NAME} "
                                      "--file_format=array_record"):
    tfds_labelled.load(NAME, "train", data_dir=str(tmp_path / "empty"), text_feature="text",
                       label_feature="label")
  with pytest.raises(DataError, match="'no_such_dataset_xyz': not a registered builder and "
                                      "not prepared"):
    tfds_labelled.load("no_such_dataset_xyz", "train", data_dir=str(tmp_path),
                       text_feature="text", label_feature="label")
  kw = dict(data_dir=data_dir, text_feature="text")
  with pytest.raises(DataError, match=f"tfds:{NAME}/unsupervised:0: label -1 is outside"):
    tfds_labelled.load(NAME, "unsupervised", label_feature="label", **kw)
  with pytest.raises(DataError, match="feature 'text' is a Text, expected a ClassLabel"):
    tfds_labelled.load(NAME, "train", label_feature="text", **kw)
  with pytest.raises(DataError, match="split 'validation'"):
    tfds_labelled.load(NAME, "validation", label_feature="label", **kw)
  with pytest.raises(ConfigError, match="set one of them"):
    train.validate(_config(data_dir, train_file="x.csv"))
  with pytest.raises(ConfigError, match="task.text_feature=''"):
    train.validate(_config(data_dir, text_feature=""))
  # Over-long texts go through the same check as CSV/JSONL rows, naming the example.
  c = _config(data_dir)
  c.data.context = 4
  with pytest.raises(DataError, match=f"tfds:{NAME}/train:\\d+: .* exceed data.context=4"):
    train.train_and_evaluate(c, str(tmp_path / "run"))


def test_tfrecord_prepared_dataset_says_how_to_rebuild(data_dir, tmp_path):
  # Writing tfrecord needs TensorFlow, so relabel a prepared copy's metadata instead.
  copy = str(tmp_path / "copy")
  shutil.copytree(data_dir, copy)
  info_path = os.path.join(copy, NAME, "1.0.0", "dataset_info.json")
  with open(info_path) as f:
    info = json.load(f)
  info["fileFormat"] = "tfrecord"
  with open(info_path, "w") as f:
    json.dump(info, f)
  with pytest.raises(DataError, match="stored as tfrecord, which cannot be read without "
                                      f"TensorFlow; .*tfds build {NAME} --file_format"):
    tfds_labelled.load(NAME, "train", data_dir=copy, text_feature="text",
                       label_feature="label")


@pytest.mark.slow
def test_classify_smoke_trains_on_the_tfds_dataset(data_dir, tmp_path):
  c = _config(data_dir)
  ev = train.train_and_evaluate(c, str(tmp_path / "run"))
  assert ev["labels"] == NAMES and ev["majority_baseline"] == 0.5
  assert np.isfinite(ev["loss"]) and 0.0 <= ev["accuracy"] <= 1.0
  assert "tensorflow" not in sys.modules
