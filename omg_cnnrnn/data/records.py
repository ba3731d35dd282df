"""Prepared TFRecords on disk: shard naming, atomic writes, and `read_prepared`.

A prepared directory holds

    <split>-NNNNN-of-MMMMM.tfrecord   serialized `tf.train.SequenceExample`s (keys in `features`)
    manifest.json                     every input with its status, per-split statistics
    .items/                           per-utterance records the shards are assembled from
                                      (what makes data preparation resumable)

The training pipeline globs `<dir>/<split>-*.tfrecord`, so a split name is a plain word
(letters, digits, underscore: no `-`, which would make one split's glob match another's).
Every file is written to a unique temporary name beside its target, flushed to disk and
renamed over it: a reader, a concurrent job or a crash never sees half a file.
"""

from __future__ import annotations

import glob
import os
import re
import tempfile
from typing import Iterator

import tensorflow as tf

from omg_cnnrnn.data import features

SPLIT_PATTERN = re.compile(r"[A-Za-z0-9_]+")
SHARD_PATTERN = re.compile(r"(?P<split>[A-Za-z0-9_]+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.tfrecord")


def check_split(split: str) -> str:
  """Returns `split` if it is a valid split name, else raises ValueError saying why."""
  if not SPLIT_PATTERN.fullmatch(split or ""):
    raise ValueError(f"split name {split!r}: use letters, digits and '_' only (shards are globbed as <split>-*)")
  return split


def shard_name(split: str, index: int, count: int) -> str:
  """`<split>-<index>-of-<count>.tfrecord`, zero-padded to 5 digits."""
  if not 0 <= index < count:
    raise ValueError(f"shard index {index} outside [0, {count})")
  return f"{check_split(split)}-{index:05d}-of-{count:05d}.tfrecord"


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


# mkstemp makes owner-only files; prepared data is shared like any other output.
_FILE_MODE = 0o666 & ~_umask()


def _temporary(path: str) -> str:
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
  os.close(fd)
  os.chmod(tmp, _FILE_MODE)
  return tmp


def _commit(tmp: str, path: str) -> None:
  # fsync before the rename: otherwise a crash can leave the new name on an empty file.
  fd = os.open(tmp, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)
  os.replace(tmp, path)


def write_atomic(path: str, data: bytes) -> None:
  """Writes `data` to `path` atomically (unique temp file, fsync, rename)."""
  tmp = _temporary(path)
  try:
    with open(tmp, "wb") as f:
      f.write(data)
    _commit(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_records(path: str, serialized) -> None:
  """Writes one TFRecord file atomically.

  Args:
    path: the target file.
    serialized: iterable of record bytes, written in order.
  """
  tmp = _temporary(path)
  try:
    with tf.io.TFRecordWriter(tmp) as writer:
      for record in serialized:
        writer.write(record)
    _commit(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def read_records(path: str) -> list[bytes]:
  """Every record of one TFRecord file, as bytes."""
  return [r.numpy() for r in tf.data.TFRecordDataset(path)]


def prepared_files(data_dir: str, split: str | None = None) -> list[str]:
  """The shards of `split` (None: of every split) under `data_dir`, sorted by name."""
  names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(glob.escape(data_dir), "*.tfrecord")))
  out = []
  for name in names:
    m = SHARD_PATTERN.fullmatch(name)
    if m and (split is None or m["split"] == split):
      out.append(os.path.join(data_dir, name))
  return out


def read_prepared(data_dir: str, split: str | None = None) -> Iterator[dict]:
  """Iterates over prepared utterances (Aff-Wild: videos) as NumPy dicts.

  Args:
    data_dir: a directory written by `data_prep.prepare_omg` / `prepare_affwild`.
    split: only this split's shards (None: every split, in shard-name order).

  Yields:
    dicts with at least `video`, `utterance` (str), `valence`, `arousal` (float),
    `frames` (uint8 [T, 96, 96, 3]), `face_found` (bool [T]), `boxes` (float32 [T, 4],
    x0, y0, x1, y1 in source-video pixels, NaN where no face), plus every other key of
    `features` (`label_mask`, `frame_valence`, `frame_arousal`, `timestamp`, `fps`,
    `num_frames`, `emotion`, `source`, `split`, `dataset`, ...).

  Raises:
    FileNotFoundError: no shards (of that split), raised at the call; the message lists
      the splits present.
  """
  if split is not None:
    check_split(split)
  files = prepared_files(data_dir, split)
  if not files:
    present = sorted({SHARD_PATTERN.fullmatch(os.path.basename(f))["split"] for f in prepared_files(data_dir)})
    raise FileNotFoundError(f"no prepared shards in {data_dir}" + (f" for split {split!r}" if split else "") +
                            f"; splits present: {present or 'none'}")
  # A plain function returning a generator, so a missing directory fails at the call.
  return (features.decode_numpy(record.numpy()) for record in tf.data.TFRecordDataset(files))
