"""Labelled text from a prepared TFDS text-classification dataset, read without TensorFlow.

`tfds.data_source` reads array_record files with plain Python, so a dataset prepared in
that format (`tfds build NAME --file_format=array_record`, on a machine with internet and,
for most stock builders, TensorFlow) can be fine-tuned on here. Nothing is downloaded or
prepared: preparing stock datasets needs TensorFlow, and a missing or tfrecord-only dataset
is a DataError saying how to prepare it.

Examples come out as `lm.data.labelled.load` makes them, [(where, text, label)], so the
same checks (empty text, unknown label, over-long text) apply; labels are the names of the
ClassLabel feature, so the label set is the dataset's, in its order.
"""

import tensorflow_datasets as tfds

from lm.errors import DataError


def _how_to_prepare(name: str, data_dir: str | None) -> str:
  where = f" --data_dir={data_dir}" if data_dir else ""
  return (f"prepare it as array_record on a machine with internet (and TensorFlow if its "
          f"builder needs it): `tfds build {name} --file_format=array_record{where}` (if built "
          f"elsewhere, copy its {name} folder into data.data_dir)")


def builder(name: str, data_dir: str | None):
  """The prepared TFDS builder of `name` in `data_dir` (None: $TFDS_DATA_DIR or
  ~/tensorflow_datasets)."""
  try:
    b = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    raise DataError(f"TFDS dataset {name!r}: not a registered builder and not prepared in "
                    f"{data_dir or 'the default TFDS data dir'}; "
                    f"{_how_to_prepare(name, data_dir)}") from None
  if not b.is_prepared():
    raise DataError(f"TFDS dataset {name!r} is not prepared in {b.data_dir}; "
                    f"{_how_to_prepare(name, data_dir)}")
  return b


def label_names(b, label_feature: str) -> tuple[str, ...]:
  """The names of the ClassLabel feature `label_feature`, in index order."""
  features = b.info.features
  if label_feature not in features:
    raise DataError(f"TFDS dataset {b.name!r} has no feature {label_feature!r} (features: "
                    f"{sorted(features.keys())}); set task.label_feature")
  feature = features[label_feature]
  if not isinstance(feature, tfds.features.ClassLabel):
    raise DataError(f"TFDS dataset {b.name!r}: feature {label_feature!r} is a "
                    f"{type(feature).__name__}, expected a ClassLabel")
  return tuple(feature.names)


def load(name: str, split: str, *, data_dir: str | None, text_feature: str,
         label_feature: str) -> tuple[list[tuple[str, str, str]], tuple[str, ...]]:
  """([(where 'tfds:name/split:index', text, label name)], label names) of one split.

  `split` takes TFDS split syntax ('train', 'test', 'train[:10%]').
  """
  b = builder(name, data_dir)
  names = label_names(b, label_feature)
  if text_feature not in b.info.features:
    raise DataError(f"TFDS dataset {name!r} has no feature {text_feature!r} (features: "
                    f"{sorted(b.info.features.keys())}); set task.text_feature")
  try:
    source = b.as_data_source(split=split)
  except NotImplementedError:
    # as_data_source's own message for this case lists causes; ours says what to run.
    raise DataError(f"TFDS dataset {name!r} in {b.data_dir} is stored as "
                    f"{b.info.file_format.value}, which cannot be read without TensorFlow; "
                    f"{_how_to_prepare(name, data_dir)} (into another data_dir, or delete "
                    "the old files)") from None
  except ValueError as e:  # An unknown split or bad split syntax.
    raise DataError(f"TFDS dataset {name!r}: split {split!r}: {e} (splits: "
                    f"{sorted(b.info.splits.keys())})") from None
  out = []
  for i in range(len(source)):
    example, where = source[i], f"tfds:{name}/{split}:{i}"
    text, label = example[text_feature], int(example[label_feature])
    if isinstance(text, bytes):  # Without TensorFlow, Text features decode to bytes.
      try:
        text = text.decode("utf-8")
      except UnicodeDecodeError as e:
        raise DataError(f"{where}: text is not UTF-8 (byte offset {e.start})") from None
    if not 0 <= label < len(names):  # e.g. -1 marks imdb_reviews' 'unsupervised' split.
      raise DataError(f"{where}: label {label} is outside the {len(names)} class names "
                      f"{list(names)}")
    out.append((where, str(text), names[label]))
  if not out:
    raise DataError(f"TFDS dataset {name!r}: split {split!r} has no examples")
  return out, names
