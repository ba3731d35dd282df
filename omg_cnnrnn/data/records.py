"""Prepared TFRecords on disk: shard naming, atomic writes, and `read_prepared`.

A prepared directory holds `<split>-NNNNN-of-MMMMM.tfrecord` shards of serialized
`tf.train.SequenceExample`s (keys in `features`), a `manifest.json`, and a hidden
`.items/` folder of per-utterance records from which the shards are assembled
(what makes data preparation resumable).
"""

from __future__ import annotations

import glob
import os
from typing import Iterator

import tensorflow as tf

from omg_cnnrnn.data import features


def shard_name(split: str, index: int, count: int) -> str:
  return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


def write_records(path: str, serialized: list[bytes]) -> None:
  """Writes one TFRecord file atomically (temp file, then rename)."""
  tmp = path + ".tmp"
  with tf.io.TFRecordWriter(tmp) as writer:
    for record in serialized:
      writer.write(record)
  os.replace(tmp, path)


def read_records(path: str) -> list[bytes]:
  return [r.numpy() for r in tf.data.TFRecordDataset(path)]


def prepared_files(data_dir: str, split: str | None = None) -> list[str]:
  pattern = f"{split}-*.tfrecord" if split else "*.tfrecord"
  return sorted(glob.glob(os.path.join(data_dir, pattern)))


def read_prepared(data_dir: str, split: str | None = None) -> Iterator[dict]:
  """Iterates over prepared utterances as NumPy dicts.

  Each has at least `video`, `utterance`, `valence`, `arousal`, `frames` (uint8
  [T, 96, 96, 3]), `face_found` (bool [T]), `boxes` (float [T, 4], x0, y0, x1, y1 in
  source-video pixels, NaN where no face), plus the other keys of `features`.
  """
  files = prepared_files(data_dir, split)
  if not files:
    raise FileNotFoundError(f"no prepared shards in {data_dir}" + (f" for split {split!r}" if split else ""))
  for path in files:
    for record in tf.data.TFRecordDataset(path):
      yield features.decode_numpy(record.numpy())
