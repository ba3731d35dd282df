"""Prepared TFRecords on disk: shard naming, atomic writes, and `read_prepared`.

A prepared directory holds

    <split>-NNNNN-of-MMMMM.tfrecord   serialized `tf.train.SequenceExample`s (keys in `features`)
    manifest.json                     every input with its status, per-split statistics
    .items/                           per-utterance records the shards are assembled from
                                      (what makes data preparation resumable)

Readers take a split's shards with `complete_shards`: one complete `-i-of-N` set, equal to
the manifest's list where there is one; anything else is refused, naming the split. The
shards are found as `<dir>/<split>-*.tfrecord`, so a split name is a plain word
(letters, digits, underscore: no `-`, which would make one split's glob match another's).
Every file is written to a unique temporary name beside its target, flushed to disk and
renamed over it: a reader, a concurrent job or a crash never sees half a file.
"""

from __future__ import annotations

import glob
import json
import os
import re
import contextlib
import functools
import tempfile
from typing import Iterator

import tensorflow as tf

from omg_cnnrnn.data import features

MANIFEST = "manifest.json"  # Written by data prep; lists each split's shards.
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


@functools.lru_cache(maxsize=1)
def _file_mode() -> int:
  """0o666 less the umask: mkstemp makes owner-only files; prepared data is shared like any other output.

  Read on the first write, not at import (reading the umask sets it for a moment: no
  process-wide effect at import).
  """
  mask = os.umask(0)
  os.umask(mask)
  return 0o666 & ~mask


def temporary_beside(path: str, tag: str = "") -> str:
  """A fresh `.<name><tag>.<random>.tmp` beside `path` (creates the folder; the mode of any output)."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}{tag}.", suffix=".tmp", dir=directory)
  os.close(fd)
  os.chmod(tmp, _file_mode())
  return tmp


def _commit(tmp: str, path: str) -> None:
  # fsync before the rename: otherwise a crash can leave the new name on an empty file.
  fd = os.open(tmp, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)
  os.replace(tmp, path)


@contextlib.contextmanager
def atomic_output(path: str) -> Iterator[str]:
  """Yields a temporary path beside `path`; on success it becomes `path` (fsync, rename).

  The one way this project writes a file it must not leave half-written: the temp file has a
  unique name (two writers of one path never share one), the folder is created, and on any
  error (or a kill, until the rename) `path` keeps its old content and the temp file is removed.
  For writers that want a path (`DataFrame.to_csv`, `savefig(format=...)`); `write_atomic`
  for bytes or text already in memory.
  """
  tmp = temporary_beside(path)
  try:
    yield tmp
    _commit(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_atomic(path: str, data: bytes | str) -> None:
  """Writes `data` (bytes, or text as UTF-8) to `path` atomically (`atomic_output`)."""
  with atomic_output(path) as tmp, open(tmp, "wb") as f:
    f.write(data.encode() if isinstance(data, str) else data)


def write_records(path: str, serialized) -> None:
  """Writes one TFRecord file atomically.

  Args:
    path: the target file.
    serialized: iterable of record bytes, written in order.
  """
  tmp = temporary_beside(path)
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


class IncompleteShardsError(ValueError):
  """A split's shards are not one complete set; names the split, the folder and what is wrong."""


def _manifest_shards(data_dir: str, split: str) -> list[str] | None:
  """The shard names data prep's manifest lists for `split` (None: no manifest, or none for it)."""
  path = os.path.join(data_dir, MANIFEST)
  try:
    with open(path) as f:
      manifest = json.load(f)
  except FileNotFoundError:
    return None
  except (OSError, ValueError) as e:
    raise IncompleteShardsError(f"{path}: unreadable manifest ({e}); cannot tell which shards of {split!r} "
                                "belong together") from None
  stats = manifest.get("splits", {}).get(split) if isinstance(manifest, dict) else None
  shards = stats.get("shards") if isinstance(stats, dict) else None
  return list(shards) if isinstance(shards, list) and shards else None


def complete_shards(data_dir: str, split: str) -> list[str]:
  """The shards of `split`, checked to be one complete set; sorted paths.

  `<split>-i-of-N` for every i < N and one N only; where data prep's `manifest.json` lists the
  split's shards, exactly those. Reading a mixed or partial set would read utterances twice
  or not at all (two runs with different shard counts, a job array still running, a run
  killed while assembling).

  Raises:
    FileNotFoundError: no shards of `split` (lists the splits present).
    IncompleteShardsError: a file named like the split's shards but not `-i-of-N`, shards of
      several counts, missing indices, or files that differ from the manifest's list.
  """
  check_split(split)
  named = sorted(os.path.basename(p) for p in glob.glob(os.path.join(glob.escape(data_dir), f"{split}-*.tfrecord")))
  if not named:
    present = sorted({SHARD_PATTERN.fullmatch(os.path.basename(f))["split"] for f in prepared_files(data_dir)})
    raise FileNotFoundError(f"no shards match {os.path.join(data_dir, split + '-*.tfrecord')}; splits present in "
                            f"{data_dir}: {present or 'none'}")
  where = f"split {split!r} in {data_dir}"
  odd = [n for n in named if not (SHARD_PATTERN.fullmatch(n) and SHARD_PATTERN.fullmatch(n)["split"] == split)]
  if odd:
    raise IncompleteShardsError(f"{where}: {odd[:5]} are not shard names <split>-NNNNN-of-MMMMM.tfrecord")
  counts = {}
  for n in named:
    m = SHARD_PATTERN.fullmatch(n)
    counts.setdefault(int(m["count"]), []).append(int(m["index"]))
  if len(counts) > 1:
    raise IncompleteShardsError(f"{where}: a mixed set, shards of {len(counts)} counts "
                                f"({', '.join(f'{len(v)} of -of-{c:05d}' for c, v in sorted(counts.items()))}); "
                                "prepare the split again into this folder, or into a new one")
  (count, indices), = counts.items()
  missing = sorted(set(range(count)) - set(indices))
  if missing:
    raise IncompleteShardsError(f"{where}: an incomplete set, {len(missing)} of {count} shards missing "
                                f"({[shard_name(split, i, count) for i in missing[:5]]}); a job array still "
                                "running, or a run that did not finish")
  listed = _manifest_shards(data_dir, split)
  if listed is not None and sorted(listed) != named:
    raise IncompleteShardsError(f"{where}: the shards on disk {named[:5]} differ from those "
                                f"{os.path.join(data_dir, MANIFEST)} lists {sorted(listed)[:5]}; a run still "
                                "writing, or one that did not finish")
  return [os.path.join(data_dir, n) for n in named]


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
    IncompleteShardsError: a split's shards are not one complete set (`complete_shards`).
  """
  if split is not None:
    check_split(split)
    files = complete_shards(data_dir, split) if prepared_files(data_dir, split) else []
  else:
    files = [f for s in sorted({SHARD_PATTERN.fullmatch(os.path.basename(p))["split"]
                                for p in prepared_files(data_dir)}) for f in complete_shards(data_dir, s)]
  if not files:
    present = sorted({SHARD_PATTERN.fullmatch(os.path.basename(f))["split"] for f in prepared_files(data_dir)})
    raise FileNotFoundError(f"no prepared shards in {data_dir}" + (f" for split {split!r}" if split else "") +
                            f"; splits present: {present or 'none'}")
  # A plain function returning a generator, so a missing directory fails at the call.
  return (features.decode_numpy(record.numpy()) for record in tf.data.TFRecordDataset(files))
