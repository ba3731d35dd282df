"""The engine shared by `prepare_omg` and `prepare_affwild`: items, workers, resume, shards, manifest.

- Each input (an OMG utterance, an Aff-Wild video) is one `Item`. A worker streams it
  through the face pipeline (`omg_cnnrnn.faces.iter_faces`) and writes its serialized
  SequenceExample to `<output_dir>/.items/<split>/<key>.pb` and its manifest row to
  `<key>.json`, each atomically (unique temp file, fsync, rename), the row last.
- Resume: a rerun skips an item whose row says it was prepared, whose record is on disk
  with the checksum the row names, and whose fingerprint matches: the item's labels,
  times and paths, the source file's size and modification time, the face settings and
  the record format. Change any of them and the item is prepared again; errors are always
  retried (the input may have been fixed).
- Memory does not grow with a video's length: crops are JPEG-encoded as they are produced
  and spooled to disk, the record is written from the spool in pieces (the same bytes as
  `features.serialize`), and shards are assembled by copying records in pieces with
  their TFRecord framing (the same bytes as `tf.io.TFRecordWriter`); `bench_memory.py`.
- Shards are assembled from the item records after processing, in input order, so an
  interrupted-then-resumed run writes byte-identical shards to an uninterrupted one (the
  face pipeline is deterministic for a given input and setting).
- A single job writes each split as `<split>-NNNNN-of-MMMMM.tfrecord`, contiguous runs of
  the input order (reading the shards in name order gives the CSV order back);
  `--output_shards=0` picks about 128 MiB a shard. A cluster job array
  (`--shard_index=i --num_shards=n`, every job given the same inputs) has job i prepare
  items i, i + n, i + 2n, ... and write `<split>-0000i-of-0000n.tfrecord`.
- A split of a directory holds one input list (one CSV): preparing a changed list into
  it replaces the split, and the item files of inputs no longer listed are deleted.
- Bad inputs are reported by name with the reason, on stderr and in the manifest, while
  the rest are processed; `--strict` turns any of them (warnings included, e.g. masked
  out-of-range Aff-Wild labels) into a non-zero exit once everything else is written.
- manifest.json lists every input of every split prepared into the directory (status
  ok / skipped-existing / error, or pending: another job's item not prepared yet), with
  reason, frame count, faces found and shard, plus per-split statistics. Each run and
  each job rewrites it under a lock from all item rows on disk (also while items finish,
  every `MANIFEST_EVERY_S`), so after the last job of an array it is complete. Readers
  take a split's shards from it (`records.complete_shards`: the manifest's list, one
  complete `-i-of-N` set), so a mixed or partial set is refused, not read twice or half.
- A run holds `.prepare.lock` on the folder from start to end: exclusively for a single
  job (a second run on the folder is refused, naming it), which first sweeps the `.*.tmp`
  files killed runs left; shared by the jobs of an array, which assemble shards and write
  the manifest in turn under the manifest lock. Each job registers its input lists under
  `.jobs/` while it runs: a job whose list for a split differs from a running job's (two
  arrays over other CSVs on one folder) is refused, naming the split and the other job.
  The locks are flock(2): they hold between machines on local disks and NFS with locking;
  on an NFS mount with `nolock` or `local_lock` a warning says only one run may use the
  folder at a time.
- A worker process that dies (out of memory, a crashing decoder) fails the items it and
  its pool held; each is retried once alone in a fresh worker, and one that kills its
  worker again is reported with that reason.
- Names with control characters (a NUL byte, an escape) fail their own row, printed escaped.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import hashlib
import json
import math
import multiprocessing
import os
import re
import struct
import sys
import tempfile
import time
import traceback
import unicodedata
from typing import Callable

import numpy as np
from absl import flags

from omg_cnnrnn import faces, hardware
from omg_cnnrnn.data import features, labels, records

ITEMS_DIR = ".items"
MANIFEST = records.MANIFEST
# While items are processed, manifest.json is rewritten at most this often (seconds).
MANIFEST_EVERY_S = 30.0
# Part of every item's fingerprint: bump it when the record layout changes, so resumed
# runs redo items written by an older version instead of mixing formats.
RECORD_VERSION = 2
PREPARED = ("ok", "skipped-existing")
SHARD_TARGET_BYTES = 128 * 2**20


@dataclasses.dataclass
class Item:
  """One input to prepare: an OMG utterance or an Aff-Wild video."""

  key: str  # unique within the split; the stem of its files under .items/<split>/
  video: str
  utterance: str
  source: str  # the video file
  dataset: str  # "omg", "affwild", "affwild2"
  split: str
  row: int  # 1-based position in the input (CSV data row, annotation file), for reports
  order: int  # position among all items: job-array slice and shard order
  start: float | None = None  # seconds; None: the whole file
  end: float | None = None
  valence: float = 0.0
  arousal: float = 0.0
  emotion: int = -1
  frame_labels: labels.FrameLabels | None = None  # per-frame labels (Aff-Wild)
  initial_target: str | None = None  # the face a track starts on (Aff-Wild2 _left/_right)
  warnings: tuple[str, ...] = ()  # known before processing (e.g. masked out-of-range labels)


@dataclasses.dataclass(frozen=True)
class Settings:
  """How items are processed; all of it goes into the fingerprints."""

  face: faces.FaceConfig = faces.FaceConfig()
  jpeg_quality: int = 95
  # Aff-Wild: annotation lines vs decoded frames may differ by max(2, this x frames)
  # (a warning; labels are aligned from the first frame); more is an error.
  frame_mismatch_tolerance: float = 0.02


def name_problem(item: Item) -> str | None:
  """Why an item's names cannot be prepared, or None.

  A control character (a NUL byte, an escape) or an unpaired surrogate in the video, the
  utterance or the file path: the OS refuses such paths (a NUL made `os.stat` abort the
  whole run), and printed they could rewrite the terminal. Reported per row instead.
  """
  for what, text in (("video", item.video), ("utterance", item.utterance), ("source", item.source)):
    bad = [c for c in str(text) if unicodedata.category(c) in ("Cc", "Cs")]
    if bad:
      return f"{what} {str(text)!r} holds control characters {sorted(set(bad))!r}: not a usable file name"
  return None


def shown(name) -> str:
  """A name as printed in reports: as it is, or escaped (repr) if it holds unprintable characters."""
  text = str(name)
  return text if text.isprintable() else repr(text)


def safe_key(*parts: str) -> str:
  """A file-system-safe stem for (video, utterance), unique by its hash suffix."""
  text = "__".join(parts)
  stem = re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:120]
  return f"{stem}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


# ---------------------------------------------------------------------------------- flags
def define_flags():
  """Flags shared by both commands; detector defaults are FaceConfig's own."""
  d = faces.FaceConfig()
  flags.DEFINE_string("output_dir", None, "Where the shards and manifest.json go.")
  flags.DEFINE_integer("num_workers", 1, "Worker processes over videos (each builds its own detector once).")
  flags.DEFINE_integer("shard_index", 0, "This job's index in a cluster job array.")
  flags.DEFINE_integer("num_shards", 1, "Jobs in the array (1: a single job writing --output_shards shards).")
  flags.DEFINE_integer("output_shards", 0, "Shards a single job writes per split (0: about 128 MiB each).")
  flags.DEFINE_bool("strict", False, "Exit non-zero on any bad input (after preparing everything else).")
  flags.DEFINE_bool("progress", True, "Show progress bars.")
  flags.DEFINE_integer("jpeg_quality", 95, "JPEG quality of the stored face crops.")
  flags.DEFINE_integer("crop_size", d.crop_size, "Face crop side in pixels (paper: 96).")
  flags.DEFINE_float("margin", d.margin, "Crop margin: fraction of the box's larger side added on each side.")
  flags.DEFINE_integer("max_hold_frames", d.max_hold_frames, "Frames the last box is held after a miss.")
  flags.DEFINE_integer("detect_every", d.detect_every, "Run the detector every k frames, optical flow between.")
  flags.DEFINE_float("detection_scale", d.detection_scale, "Downscale of the frame for whole-frame detection.")
  flags.DEFINE_integer("min_face_size", d.min_face_size, "Smallest face accepted, source pixels.")
  flags.DEFINE_float("min_confidence", d.min_confidence, "Smallest detector confidence accepted.")
  flags.DEFINE_bool("roi_detection", d.roi_detection, "While tracking, detect in a window around the face.")
  flags.DEFINE_enum("initial_target", d.initial_target, list(faces.INITIAL_TARGETS),
                    "Which face a track starts on.")


def settings_from_flags(**overrides) -> Settings:
  """Settings from the shared flags (call from a main())."""
  f = flags.FLAGS
  face = faces.FaceConfig(crop_size=f.crop_size, margin=f.margin, max_hold_frames=f.max_hold_frames,
                          detect_every=f.detect_every, detection_scale=f.detection_scale,
                          min_face_size=f.min_face_size, min_confidence=f.min_confidence,
                          roi_detection=f.roi_detection, initial_target=f.initial_target)
  return Settings(face=face, jpeg_quality=f.jpeg_quality, **overrides)


def run_from_flags(items: list[Item], problems: list[dict], settings: Settings) -> dict:
  """`run` with the shared flags."""
  f = flags.FLAGS
  return run(items, f.output_dir, problems, settings, num_workers=f.num_workers, shard_index=f.shard_index,
             num_shards=f.num_shards, output_shards=f.output_shards, strict=f.strict, progress=f.progress)


# ------------------------------------------------------------------------------- items
def _item_paths(output_dir: str, item: Item) -> tuple[str, str]:
  base = os.path.join(output_dir, ITEMS_DIR, item.split, item.key)
  return base + ".pb", base + ".json"


def _write_json(path: str, value) -> None:
  records.write_atomic(path, json.dumps(value, indent=1, sort_keys=True, default=_jsonable).encode())


def _jsonable(value):
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, np.ndarray):
    return value.tolist()
  return str(value)


def _read_json(path: str):
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def fingerprint(item: Item, settings: Settings) -> str:
  """What an item's record depends on; a stored record is reused only if it matches."""
  try:
    st = os.stat(item.source)
    stat = [st.st_size, st.st_mtime_ns]
  except OSError:
    stat = None
  fields = {k: v for k, v in dataclasses.asdict(item).items() if k not in ("order", "row", "frame_labels", "warnings")}
  if item.frame_labels is not None:
    fields["frame_labels"] = hashlib.sha1(np.ascontiguousarray(item.frame_labels.values).tobytes() +
                                          np.ascontiguousarray(item.frame_labels.mask).tobytes()).hexdigest()
  text = json.dumps({"item": fields, "stat": stat, "settings": dataclasses.asdict(settings),
                     "version": RECORD_VERSION}, sort_keys=True, default=str)
  return hashlib.sha1(text.encode()).hexdigest()


def _base_row(item: Item) -> dict:
  return {"key": item.key, "video": item.video, "utterance": item.utterance, "split": item.split,
          "source": item.source, "dataset": item.dataset, "row": item.row, "order": item.order,
          "warnings": list(item.warnings)}


# ------------------------------------------------------------------------------- workers
_WORKER: dict = {}


def _init_worker(detector_factory, threads: int) -> None:
  """Per worker process: quiet TensorFlow, a share of the cores, the detector factory."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  _WORKER["factory"] = detector_factory
  if threads:
    # Several workers each using every core would oversubscribe the machine.
    import cv2
    import tensorflow as tf

    cv2.setNumThreads(threads)
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def _detector(face_config: faces.FaceConfig):
  """One detector per process and setting (loading MTCNN costs seconds, not per item)."""
  cache = _WORKER.setdefault("detectors", {})
  if face_config not in cache:
    factory = _WORKER.get("factory") or faces.default_detector
    cache[face_config] = factory(face_config)
  return cache[face_config]


def _align_labels(item: Item, n: int, tolerance: float) -> tuple[np.ndarray, np.ndarray, str]:
  """Per-frame labels [n, 2], mask [n] and a note for an annotation of another length."""
  fl = item.frame_labels
  m = len(fl)
  lab = np.zeros((n, 2), np.float32)
  mask = np.zeros(n, bool)
  k = min(m, n)
  lab[:k], mask[:k] = fl.values[:k], fl.mask[:k]
  note = ""
  if m != n:
    allowed = max(2, math.ceil(tolerance * n))
    what = f"annotation {'/'.join(fl.paths)} has {m} frames, the video {n}"
    if abs(m - n) > allowed:
      raise ValueError(f"{what}: more than {allowed} apart, probably not this video's annotation")
    note = what + (": extra annotation lines ignored" if m > n else ": frames past the annotation masked")
  return lab, mask, note


# Magic numbers of still-image formats: FFmpeg opens these as one-frame "videos".
_IMAGE_MAGIC = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG", b"GIF87a": "GIF", b"GIF89a": "GIF",
                b"BM": "BMP", b"II*\x00": "TIFF", b"MM\x00*": "TIFF"}


def still_image_format(path: str) -> str | None:
  """The image format if `path` is a still image (whatever its name says), else None."""
  try:
    with open(path, "rb") as f:
      head = f.read(16)
  except OSError:
    return None
  if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
    return "WebP"
  return next((name for magic, name in _IMAGE_MAGIC.items() if head.startswith(magic)), None)


def process_item(item: Item, output_dir: str, settings: Settings, detector=None, fp: str | None = None) -> dict:
  """Runs the face pipeline on one item and writes its record; returns its manifest row.

  Args:
    item: the input.
    output_dir: the prepared directory.
    settings: face, JPEG and alignment settings.
    detector: a `faces.Detector` (None: this process's default detector).
    fp: the item's fingerprint (computed if None).

  Returns:
    The row (also written to `.items/<split>/<key>.json`): status "ok" or "error" with a
    reason, frame and face counts, labels, the record's size and checksum.
  """
  t0 = time.perf_counter()
  record_path, row_path = _item_paths(output_dir, item)
  row = {**_base_row(item), "fingerprint": fp or fingerprint(item, settings)}
  config = settings.face
  if item.initial_target and item.initial_target != config.initial_target:
    config = dataclasses.replace(config, initial_target=item.initial_target)

  def fail(reason):
    row.update(status="error", reason=reason, seconds=time.perf_counter() - t0)
    _write_json(row_path, row)
    return row

  image = still_image_format(item.source)
  if image:
    return fail(f"not a video: a {image} still image")
  # Crops are JPEG-encoded as they come and spooled to disk; only the per-frame scalars
  # stay in memory, so a worker's memory does not grow with the video's length.
  spool = records.temporary_beside(record_path, ".jpegs")
  try:
    try:
      info = faces.probe_video(item.source)
      frames = _spool_faces(item, config, detector or _detector(config), spool, settings.jpeg_quality)
    except faces.VideoError as e:
      return fail(e.reason)
    except Exception as e:  # noqa: BLE001 -- one odd file must not stop the other thousands
      traceback.print_exc(file=sys.stderr)
      return fail(f"unexpected {type(e).__name__} while reading or tracking: {e}")
    n = len(frames.face_found)
    row.update(num_frames=n, faces_found=int(frames.face_found.sum()), detections=int(frames.detected.sum()),
               fps=info["fps"], frame_size=[info["width"], info["height"]])
    if not frames.face_found.any():
      return fail(f"no face found in any of its {n} frames")
    frame_valence = frame_arousal = label_mask = None
    valence, arousal = item.valence, item.arousal
    if item.frame_labels is not None:
      try:
        lab, label_mask, note = _align_labels(item, n, settings.frame_mismatch_tolerance)
      except ValueError as e:
        return fail(str(e))
      if note:
        row["warnings"].append(note)
      frame_valence, frame_arousal = lab[:, 0], lab[:, 1]
      valence = float(lab[label_mask, 0].mean()) if label_mask.any() else 0.0
      arousal = float(lab[label_mask, 1].mean()) if label_mask.any() else 0.0
      row["labelled_frames"] = int(label_mask.sum())
    # Everything but the crops, which are copied from the spool as the record is written.
    parts = record_parts(
        n, video=item.video, utterance=item.utterance, valence=valence, arousal=arousal,
        face_found=frames.face_found, detected=frames.detected, boxes=frames.boxes, timestamps=frames.timestamps,
        frame_valence=frame_valence, frame_arousal=frame_arousal, label_mask=label_mask, emotion=item.emotion,
        fps=info["fps"], dataset=item.dataset, split=item.split, source=item.source,
        frame_size=(info["width"], info["height"]))
    size, sha1, crc = write_record_streaming(record_path, parts, frames.jpeg_sizes, spool)
  finally:
    if os.path.exists(spool):
      os.remove(spool)
  row.update(status="ok", reason="", valence=valence, arousal=arousal, bytes=size, sha1=sha1, crc32c=crc,
             seconds=time.perf_counter() - t0)
  _write_json(row_path, row)
  return row


@dataclasses.dataclass
class SpooledFrames:
  """The per-frame results of one item, its crops' JPEG bytes left in the spool file."""

  face_found: np.ndarray  # bool [T]
  detected: np.ndarray  # bool [T]
  boxes: np.ndarray  # float32 [T, 4]
  timestamps: np.ndarray  # float64 [T]
  jpeg_sizes: np.ndarray  # int64 [T]: the spool holds the JPEGs back to back


def _spool_faces(item: Item, config: faces.FaceConfig, detector, spool: str, jpeg_quality: int) -> SpooledFrames:
  """Runs the face pipeline over an item, appending each crop's JPEG bytes to `spool`."""
  found, detected, boxes, times, sizes = [], [], [], [], []
  with open(spool, "wb") as f:
    for face in faces.iter_faces(item.source, config, detector, start=item.start, end=item.end):
      jpeg = features.encode_jpeg(face.crop, jpeg_quality)
      f.write(jpeg)
      sizes.append(len(jpeg))
      found.append(face.face_found)
      detected.append(face.detected)
      boxes.append(face.box)
      times.append(face.timestamp)
  if not sizes:
    raise faces.VideoError(item.source, "no frames")
  return SpooledFrames(np.array(found, bool), np.array(detected, bool), np.array(boxes, np.float32),
                       np.array(times, np.float64), np.array(sizes, np.int64))


# ------------------------------------------------------------------ streamed records
# A record is written as `features.serialize` would write it, but with the crops read from
# the spool file in pieces: the bytes are the same (a test checks), the memory is not.
_SPOOL_READ_BYTES = 1 << 20


def _varint(value: int) -> bytes:
  out = bytearray()
  while True:
    low, value = value & 0x7F, value >> 7
    if value:
      out.append(low | 0x80)
    else:
      out.append(low)
      return bytes(out)


def _length_delimited(field: int, length: int) -> bytes:
  """A protobuf tag of wire type 2 (bytes / message) and its length."""
  return _varint(field << 3 | 2) + _varint(length)


def _frame_prefix(size: int) -> bytes:
  """What precedes one JPEG in the `frames` FeatureList: Feature { bytes_list { value } }."""
  value = _length_delimited(1, size)  # BytesList.value
  bytes_list = _length_delimited(1, len(value) + size)  # Feature.bytes_list
  feature = _length_delimited(1, len(bytes_list) + len(value) + size)  # FeatureList.feature
  return feature + bytes_list + value


# The per-frame arguments of `features.encode_example` besides the crops.
_PER_FRAME = ("face_found", "detected", "boxes", "timestamps", "frame_valence", "frame_arousal", "label_mask")
_SLICE_FRAMES = 1024


def record_parts(num_frames: int, **fields) -> tuple[bytes, dict]:
  """A record's serialized context and per-frame lists, built a slice of frames at a time.

  A whole video's lists as protobuf objects take ~8 KB a frame (200 MB for 15 minutes);
  a FeatureList's serialization is the concatenation of its features', so slices of 1024
  frames are built with `features.encode_example` and serialized one after the other.

  Args:
    num_frames: T.
    **fields: `features.encode_example`'s arguments but the crops; per-frame ones of length T.

  Returns:
    (the serialized context, key -> serialized FeatureList body for every per-frame list
    but `frames`).
  """
  bodies: dict = {}
  context = None
  for start in range(0, num_frames, _SLICE_FRAMES):
    stop = min(start + _SLICE_FRAMES, num_frames)
    part = {k: (v[start:stop] if k in _PER_FRAME and v is not None else v) for k, v in fields.items()}
    example = features.encode_example(jpegs=[b""] * (stop - start), **part)
    if context is None:
      # The context does not depend on the frames but for their count.
      example.context.feature[features.NUM_FRAMES].int64_list.value[:] = [num_frames]
      context = example.context.SerializeToString(deterministic=True)
    for key, value in example.feature_lists.feature_list.items():
      if key != features.FRAMES:
        bodies.setdefault(key, bytearray()).extend(value.SerializeToString(deterministic=True))
  return context, {k: bytes(v) for k, v in bodies.items()}


def _entry_head(key: bytes, body_size: int) -> bytes:
  """A FeatureLists map entry up to its FeatureList's body: {key, value: FeatureList}."""
  inner = _length_delimited(1, len(key)) + key + _length_delimited(2, body_size)
  return _length_delimited(1, len(inner) + body_size) + inner


def serialized_chunks(context: bytes, bodies: dict, jpeg_sizes, jpegs):
  """A record's bytes, `features.serialize` of its SequenceExample, from its parts.

  Args:
    context: the serialized context (`record_parts`).
    bodies: key -> serialized FeatureList body of the per-frame lists but `frames`.
    jpeg_sizes: the length of each crop's JPEG, in order.
    jpegs: the JPEGs' bytes back to back, as an iterable of pieces of any size.

  Yields:
    Pieces of the serialized record.
  """
  key = features.FRAMES.encode()
  frames_body = sum(len(_frame_prefix(int(n))) + int(n) for n in jpeg_sizes)
  # FeatureLists is a map: deterministic serialization writes its entries sorted by key.
  sizes = {k.encode(): len(v) for k, v in bodies.items()}
  sizes[key] = frames_body
  total = sum(len(_entry_head(k, n)) + n for k, n in sizes.items())
  yield _length_delimited(1, len(context)) + context + _length_delimited(2, total)
  for name in sorted(sizes):
    yield _entry_head(name, sizes[name])
    if name != key:
      yield bodies[name.decode()]
      continue
    pieces = iter(jpegs)
    buffer, at = memoryview(b""), 0
    for n in jpeg_sizes:
      n = int(n)
      yield _frame_prefix(n)
      while n:
        if at == len(buffer):
          buffer, at = memoryview(next(pieces, b"")), 0
          if not len(buffer):
            raise ValueError("the spooled JPEGs end before their sizes say")
        take = min(n, len(buffer) - at)
        yield bytes(buffer[at:at + take])
        at, n = at + take, n - take


# TFRecord framing, written here piece by piece so that assembling a shard never holds a
# whole record (a 15-minute video's is ~150 MB): per record, its length (uint64 LE), the
# masked CRC-32C of the length, the data, the masked CRC-32C of the data. A test checks the
# bytes against tf.io.TFRecordWriter's.
_CRC_POLY = 0x82F63B78  # CRC-32C (Castagnoli), reflected
_CRC_BLOCK = 4096  # bytes per vectorised block


def _crc_step(register: np.ndarray, table: np.ndarray) -> np.ndarray:
  """The CRC register after one zero byte, for an array of registers."""
  return (register >> np.uint32(8)) ^ table[register & np.uint32(0xFF)]


@functools.lru_cache(maxsize=1)
def _crc_tables():
  """The CRC-32C byte table [256], its K = _CRC_BLOCK distance tables [K, 256] and K-byte shift tables [4, 256].

  CRC registers combine linearly (XOR), which is what lets a block's CRC be one gather
  and one XOR-reduction: by_distance[d][b] is what byte b contributes when d bytes follow
  it in the block, and shift[k][v] moves register byte k (value v) past a whole block.
  """
  table = np.arange(256, dtype=np.uint32)
  for _ in range(8):
    table = np.where(table & 1, (table >> np.uint32(1)) ^ np.uint32(_CRC_POLY), table >> np.uint32(1)).astype(np.uint32)
  # by_distance[d][b]: the register (from zero) after byte b and then d zero bytes.
  by_distance = np.empty((_CRC_BLOCK, 256), np.uint32)
  by_distance[0] = table
  for d in range(1, _CRC_BLOCK):
    by_distance[d] = _crc_step(by_distance[d - 1], table)
  # shift[k][v]: the register (v << 8k) after _CRC_BLOCK zero bytes (linear in the register).
  shift = (np.arange(256, dtype=np.uint32)[None, :] << (8 * np.arange(4, dtype=np.uint32))[:, None]).astype(np.uint32)
  for _ in range(_CRC_BLOCK):
    shift = _crc_step(shift, table)
  return table, by_distance, shift


class Crc32c:
  """Streaming CRC-32C (as TFRecord uses), vectorised over 4 KiB blocks with NumPy."""

  def __init__(self):
    self.register = 0xFFFFFFFF
    self._tail = b""

  def update(self, data: bytes) -> None:
    table, by_distance, shift = _crc_tables()
    data = self._tail + bytes(data)
    full = len(data) // _CRC_BLOCK * _CRC_BLOCK
    self._tail = data[full:]
    if not full:
      return
    blocks = np.frombuffer(data, np.uint8, full).reshape(-1, _CRC_BLOCK)
    distance = np.arange(_CRC_BLOCK - 1, -1, -1)
    reg = self.register
    for start in range(0, len(blocks), 256):  # 1 MiB at a time: a 4 MiB temporary
      part = np.bitwise_xor.reduce(by_distance[distance, blocks[start:start + 256]], axis=1)
      for value in part.tolist():
        reg = int(shift[0, reg & 0xFF] ^ shift[1, reg >> 8 & 0xFF] ^ shift[2, reg >> 16 & 0xFF]
                  ^ shift[3, reg >> 24]) ^ value
    self.register = reg

  def value(self) -> int:
    """The CRC-32C of everything given so far."""
    table = _crc_tables()[0]
    reg = self.register
    for byte in self._tail:
      reg = (reg >> 8) ^ int(table[(reg ^ byte) & 0xFF])
    return reg ^ 0xFFFFFFFF


def _masked(crc: int) -> bytes:
  return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def _crc_of(data: bytes) -> int:
  crc = Crc32c()
  crc.update(data)
  return crc.value()


def _file_crc(path: str) -> int:
  crc = Crc32c()
  with open(path, "rb") as f:
    for piece in iter(lambda: f.read(_SPOOL_READ_BYTES), b""):
      crc.update(piece)
  return crc.value()


def write_tfrecord_file(path: str, sources) -> None:
  """Writes a TFRecord file atomically whose records are the contents of files.

  Args:
    path: the shard.
    sources: (file, its CRC-32C or None: computed here) per record, in order. The files
      are copied in 1 MiB pieces, never read whole; the result is byte for byte what
      `tf.io.TFRecordWriter` writes for the same records.
  """
  with records.atomic_output(path) as tmp, open(tmp, "wb") as out:
    for source, crc in sources:
      size = os.path.getsize(source)
      crc = _file_crc(source) if crc is None else int(crc)
      header = struct.pack("<Q", size)
      out.write(header + _masked(_crc_of(header)))
      copied = 0
      with open(source, "rb") as f:
        for piece in iter(lambda: f.read(_SPOOL_READ_BYTES), b""):
          out.write(piece)
          copied += len(piece)
      if copied != size:
        raise OSError(f"{source}: changed while it was copied into {path}")
      out.write(_masked(crc))


def write_record_streaming(path: str, parts: tuple[bytes, dict], jpeg_sizes, spool: str) -> tuple[int, str, int]:
  """Writes a record (`record_parts`) with the crops from `spool` to `path` atomically (temp, fsync, rename).

  Returns:
    (bytes written, their sha1, their CRC-32C: what the shard's TFRecord framing needs).
  """
  digest, crc, size = hashlib.sha1(), Crc32c(), 0
  buffer = bytearray()

  def flush(out):
    nonlocal size
    out.write(buffer)
    digest.update(buffer)
    crc.update(buffer)
    size += len(buffer)
    buffer.clear()

  with records.atomic_output(path) as tmp, open(spool, "rb") as src, open(tmp, "wb") as out:
    for chunk in serialized_chunks(*parts, jpeg_sizes, iter(lambda: src.read(_SPOOL_READ_BYTES), b"")):
      buffer += chunk
      if len(buffer) >= _SPOOL_READ_BYTES:
        flush(out)
    flush(out)
  return size, digest.hexdigest(), crc.value()


def _finished(output_dir: str, item: Item, fp: str) -> dict | None:
  """The item's row if its record is on disk, intact and made from the same inputs."""
  record_path, row_path = _item_paths(output_dir, item)
  row = _read_json(row_path)
  if not row or row.get("status") not in PREPARED or row.get("fingerprint") != fp:
    return None
  digest = hashlib.sha1()
  try:
    with open(record_path, "rb") as f:
      for piece in iter(lambda: f.read(_SPOOL_READ_BYTES), b""):
        digest.update(piece)
  except OSError:
    return None
  return row if digest.hexdigest() == row.get("sha1") else None


def _say(message: str) -> None:
  from tqdm import tqdm

  tqdm.write(message, file=sys.stderr)  # between progress-bar redraws, not through them


def _report(row: dict) -> dict:
  where = f"{row['source']} ({row['video']}/{row['utterance']})"
  if row.get("status") not in PREPARED:
    _say(f"[prepare] ERROR {where}: {row['reason']}")
  for w in row.get("warnings", []):
    _say(f"[prepare] WARNING {where}: {w}")
  return row


# ---------------------------------------------------------------------------------- run
def run(items: list[Item], output_dir: str, problems: list[dict], settings: Settings = Settings(),
        num_workers: int = 1, shard_index: int = 0, num_shards: int = 1, output_shards: int = 0,
        strict: bool = False, progress: bool = True, detector=None,
        detector_factory: Callable | None = None) -> dict:
  """Prepares this job's slice of `items`, assembles its shards, rewrites the manifest.

  The steps, in order: `plan` (which items this job does and which are already done),
  `execute` (process the rest), `assemble` (this job's shards), `write_manifest`, then
  the summary line (and `strict`'s exit).

  The whole run holds a lock on `output_dir` (`.prepare.lock`): exclusive for a single job,
  which then first sweeps temporary files that killed runs left; shared among the jobs of
  an array (`num_shards > 1`), whose shard assembly and manifest writes take the manifest
  lock in turn. A folder another run holds is refused (RuntimeError naming it), not shared.

  Args:
    items: every input, in input order (every job of an array sees the same list).
    output_dir: the prepared directory.
    problems: inputs rejected before processing (bad label rows, annotations without a
      video...), as manifest rows with `split`, `video`, `utterance`, `row`, `source`,
      `reason`, and `status` "error" (default) or "ignored" (listed, not a failure).
    settings: processing settings.
    num_workers: worker processes (1: in this process).
    shard_index: this job's index in a job array.
    num_shards: jobs in the array.
    output_shards: shards per split for a single job (0: about 128 MiB each).
    strict: raise SystemExit naming every bad input, after everything else is written.
    progress: tqdm progress bar.
    detector: a `faces.Detector` to use in this process (tests; needs num_workers=1).
    detector_factory: picklable `FaceConfig -> Detector` for every worker (default MTCNN).

  Returns:
    The manifest (also written to `<output_dir>/manifest.json`).

  Raises:
    ValueError: bad shard arguments or split names.
    RuntimeError: another run holds the folder.
    SystemExit: with `strict`, when any input was bad.
  """
  if not 0 <= shard_index < num_shards:
    raise ValueError(f"--shard_index={shard_index} outside [0, --num_shards={num_shards})")
  os.makedirs(output_dir, exist_ok=True)
  local = node_local_locks(output_dir)
  if local:
    _say(f"[prepare] WARNING {local}")
  with _run_lock(output_dir, exclusive=num_shards == 1):
    if num_shards == 1:
      swept = sweep_temporaries(output_dir)
      if swept:
        _say(f"[prepare] removed {len(swept)} temporary files of interrupted runs ({swept[:3]}...)")
    with _registered_inputs(output_dir, items, shard_index, num_shards):
      job = plan(items, output_dir, problems, settings, shard_index, num_shards)
      frames, seconds = execute(job, output_dir, settings, num_workers, progress, detector, detector_factory)
      assemble(job, output_dir, shard_index, num_shards, output_shards)
      last_run = _last_run(job, frames, seconds, shard_index, num_shards, num_workers, settings)
      manifest = write_manifest(output_dir, job.items, job.problems, job.fingerprints, last_run)
      _conclude(job, frames, seconds, shard_index, num_shards, strict)
      return manifest


@dataclasses.dataclass
class Job:
  """What one job of a run does, as `plan` found it; `execute` adds the rows it makes.

  Attributes:
    items: every usable input of the run (all jobs), in input order.
    problems: inputs rejected before processing, those with an unusable name included.
    fingerprints: key -> fingerprint of every usable input (`fingerprint`).
    mine: this job's slice of `items` (`order % num_shards == shard_index`).
    todo: the items of `mine` to process (not prepared yet, or prepared from other inputs).
    rows: key -> manifest row of this job's items: the finished ones ("skipped-existing")
      from the start, the processed ones as they finish.
  """

  items: list[Item]
  problems: list[dict]
  fingerprints: dict
  mine: list[Item]
  todo: list[Item]
  rows: dict


def plan(items: list[Item], output_dir: str, problems: list[dict], settings: Settings, shard_index: int,
         num_shards: int) -> Job:
  """Checks the inputs and decides which of this job's items are done and which to process.

  Also prints every rejected input (`problems`, and names that cannot be used, which fail
  their own row, never the run).

  Args:
    items: every input, in input order.
    output_dir: the prepared directory.
    problems: inputs rejected before processing (see `run`).
    settings: processing settings (part of each item's fingerprint).
    shard_index: this job's index in a job array.
    num_shards: jobs in the array.

  Returns:
    The `Job`.

  Raises:
    ValueError: an unknown split name, or two items with the same key.
  """
  for split in {it.split for it in items} | {p["split"] for p in problems}:
    records.check_split(split)
  keys = [it.key for it in items]
  if len(set(keys)) != len(keys):
    raise ValueError("two items share a key: their files and fingerprints would collide")
  # Unusable names fail their own row, never the run.
  problems = list(problems)
  usable = []
  for it in items:
    reason = name_problem(it)
    if reason is None:
      usable.append(it)
    else:
      problems.append({"split": it.split, "video": it.video, "utterance": it.utterance, "row": it.row,
                       "source": it.source, "dataset": it.dataset, "reason": reason})
  items = usable
  os.makedirs(output_dir, exist_ok=True)
  fingerprints = {it.key: fingerprint(it, settings) for it in items}
  mine = [it for it in items if it.order % num_shards == shard_index]
  todo, rows = [], {}
  for it in mine:
    done = _finished(output_dir, it, fingerprints[it.key])
    if done is not None:
      rows[it.key] = {**done, "status": "skipped-existing"}
    else:
      todo.append(it)
  for p in problems:
    level = "ERROR" if p.get("status", "error") == "error" else "NOTE"
    where = f" row {p['row']}" if p.get("row", 0) > 0 else ""
    _say(f"[prepare] {level} {shown(p['source'])}{where} ({shown(p['video'])}/{shown(p['utterance'])}): "
         f"{p['reason']}")
  return Job(items=items, problems=problems, fingerprints=fingerprints, mine=mine, todo=todo, rows=rows)


def execute(job: Job, output_dir: str, settings: Settings, num_workers: int = 1, progress: bool = True,
            detector=None, detector_factory: Callable | None = None) -> tuple[int, float]:
  """Processes `job.todo` (in this process or a pool of workers), adding each row to `job.rows`.

  Shows a progress bar, prints each item's errors and warnings as it finishes, and rewrites
  the manifest every `MANIFEST_EVERY_S` so a long run's progress is visible (and survives a
  kill) before it ends.

  Args:
    job: what `plan` found.
    output_dir: the prepared directory.
    settings: processing settings.
    num_workers: worker processes (1, or a single pending item: in this process).
    progress: tqdm progress bar.
    detector: a `faces.Detector` to use in this process (needs num_workers=1).
    detector_factory: picklable `FaceConfig -> Detector` for every worker (default MTCNN).

  Returns:
    (frames prepared, seconds taken).

  Raises:
    ValueError: a detector instance with num_workers > 1.
  """
  from tqdm import tqdm

  t0 = time.perf_counter()
  frames = 0
  bar = tqdm(total=len(job.todo), desc=f"prepare {len(job.todo)} of {len(job.mine)}", unit="item",
             disable=not progress, file=sys.stderr)

  last_manifest = time.perf_counter()

  def finish(row):
    nonlocal frames, last_manifest
    job.rows[row["key"]] = _report(row)
    frames += row.get("num_frames", 0) if row.get("status") == "ok" else 0
    bar.update()
    bar.set_postfix_str(f"{frames / max(time.perf_counter() - t0, 1e-9):.0f} frames/s")
    if time.perf_counter() - last_manifest >= MANIFEST_EVERY_S:
      # A long run's progress is visible (and survives a kill) before it ends.
      write_manifest(output_dir, job.items, job.problems, job.fingerprints)
      last_manifest = time.perf_counter()

  if num_workers <= 1 or len(job.todo) <= 1:
    if detector is None:
      _init_worker(detector_factory, 0)
    for it in job.todo:
      finish(process_item(it, output_dir, settings, detector, job.fingerprints[it.key]))
  else:
    if detector is not None:
      raise ValueError("a detector instance works in this process only: use detector_factory with num_workers > 1")
    _execute_in_pool(job, output_dir, settings, num_workers, detector_factory, finish)
  bar.close()
  return frames, time.perf_counter() - t0


def _execute_in_pool(job: Job, output_dir: str, settings: Settings, num_workers: int,
                     detector_factory: Callable | None, finish: Callable[[dict], None]) -> None:
  """`execute` with `num_workers` spawned worker processes; items whose worker died are retried alone."""
  threads = max(1, hardware.usable_cores() // num_workers)
  ctx = multiprocessing.get_context("spawn")  # TensorFlow is not fork-safe
  pool = concurrent.futures.ProcessPoolExecutor(num_workers, mp_context=ctx, initializer=_init_worker,
                                                initargs=(detector_factory, threads))
  lost = []  # Items whose worker died (one dying process fails every item still queued).
  try:
    futures = {pool.submit(process_item, it, output_dir, settings, None, job.fingerprints[it.key]): it
               for it in job.todo}
    for fut in concurrent.futures.as_completed(futures):
      it = futures[fut]
      try:
        finish(fut.result())
      except concurrent.futures.process.BrokenProcessPool:
        lost.append(it)
  finally:
    # On an interrupt, drop the queue instead of finishing it.
    pool.shutdown(wait=True, cancel_futures=True)
  if lost:
    _retry_alone(lost, job, output_dir, settings, ctx, detector_factory, threads, finish)


def _retry_alone(lost: list[Item], job: Job, output_dir: str, settings: Settings, ctx, detector_factory,
                 threads: int, finish: Callable[[dict], None]) -> None:
  """Retries the items of a dead worker once, each alone in a fresh worker.

  So an item that kills its worker again is the one reported (out of memory, a decoder
  crash), with a row on disk saying so, and the others are prepared.
  """
  _say(f"[prepare] a worker process died: retrying {len(lost)} items one at a time")
  pool = None
  try:
    for it in sorted(lost, key=lambda it: it.order):
      if pool is None:
        pool = concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx, initializer=_init_worker,
                                                      initargs=(detector_factory, threads))
      try:
        finish(pool.submit(process_item, it, output_dir, settings, None, job.fingerprints[it.key]).result())
      except concurrent.futures.process.BrokenProcessPool as e:
        row = {**_base_row(it), "fingerprint": job.fingerprints[it.key], "status": "error",
               "reason": f"the worker process died while preparing it, also when retried alone ({e})"}
        _write_json(_item_paths(output_dir, it)[1], row)  # The manifest is built from the rows on disk.
        finish(row)
        pool.shutdown(wait=True)
        pool = None
  finally:
    if pool is not None:
      pool.shutdown(wait=True, cancel_futures=True)


def assemble(job: Job, output_dir: str, shard_index: int, num_shards: int, output_shards: int) -> dict:
  """Writes this job's shards, deletes the files of inputs no longer listed, records each row's shard.

  Runs under the manifest lock, so the jobs of an array assemble in turn. The splits are
  those of the usable items and of the inputs rejected with an error.

  Args:
    job: the job, after `execute`.
    output_dir: the prepared directory.
    shard_index: this job's index in a job array.
    num_shards: jobs in the array.
    output_shards: shards per split for a single job (0: about 128 MiB each).

  Returns:
    key -> shard name of this job's prepared items.
  """
  splits = {it.split for it in job.items} | {p["split"] for p in job.problems if p.get("status", "error") == "error"}
  with _locked(output_dir):  # Jobs of an array assemble in turn.
    shards = _write_shards(job.mine, splits, job.rows, output_dir, shard_index, num_shards, output_shards)
    _remove_orphans(output_dir, splits, {it.key for it in job.items})
    by_key = {it.key: it for it in job.mine}
    for key, row in job.rows.items():
      if row.get("status") in PREPARED:
        row["shard"] = shards[key]
        _write_json(_item_paths(output_dir, by_key[key])[1], row)
  return shards


def _counts(rows: dict) -> tuple[int, int]:
  """(items processed by this run, of which prepared "ok") among a job's rows (the rest were already done)."""
  processed = [r for r in rows.values() if r["status"] != "skipped-existing"]
  return len(processed), sum(r["status"] == "ok" for r in processed)


def _last_run(job: Job, frames: int, seconds: float, shard_index: int, num_shards: int, num_workers: int,
              settings: Settings) -> dict:
  """The manifest's `last_run`: this job's counts, throughput and settings."""
  processed, ok = _counts(job.rows)
  return {"job": f"{shard_index} of {num_shards}", "processed": processed, "ok": ok,
          "skipped_existing": len(job.rows) - processed, "frames": frames, "seconds": round(seconds, 3),
          "frames_per_second": round(frames / seconds, 2) if seconds > 0 else None, "num_workers": num_workers,
          "settings": dataclasses.asdict(settings)}


def _conclude(job: Job, frames: int, seconds: float, shard_index: int, num_shards: int, strict: bool) -> None:
  """Prints the job's summary line; with `strict`, SystemExit naming the bad inputs (warnings included)."""
  rows = job.rows
  processed, ok = _counts(rows)
  failures = ([(p["source"], p["video"], p["utterance"], f"row {p['row']}: {p['reason']}") for p in job.problems
               if p.get("status", "error") == "error"] +
              [(r["source"], r["video"], r["utterance"], r["reason"]) for r in rows.values()
               if r["status"] not in PREPARED] +
              [(r["source"], r["video"], r["utterance"], w) for r in rows.values() for w in r.get("warnings", [])])
  summary = (f"[prepare] job {shard_index} of {num_shards}: {ok} prepared, {processed - ok} failed, "
             f"{len(rows) - processed} already done; {frames} frames in {seconds:.1f} s "
             f"({frames / max(seconds, 1e-9):.1f} frames/s); {len(failures)} bad inputs in all")
  _say(summary)
  if strict and failures:
    listed = "\n  ".join(f"{src} ({v}/{u}): {why}" for src, v, u, why in failures[:50])
    more = f"\n  ... and {len(failures) - 50} more (see {MANIFEST})" if len(failures) > 50 else ""
    raise SystemExit(f"--strict: {len(failures)} bad inputs (everything else was written):\n  {listed}{more}")


def _remove_orphans(output_dir: str, splits: set, keys: set) -> None:
  """Deletes item files of these splits whose input is gone (e.g. a row removed from the CSV).

  One input list per split and directory: every job of an array has the same list, so
  none deletes another's items; temporary files of running writers are left alone.
  """
  for split in splits:
    folder = os.path.join(output_dir, ITEMS_DIR, split)
    if not os.path.isdir(folder):
      continue
    for name in os.listdir(folder):
      stem, ext = os.path.splitext(name)
      if ext in (".pb", ".json") and not name.startswith(".") and stem not in keys:
        os.remove(os.path.join(folder, name))


def _shard_count(requested: int, items: list[Item], rows: dict) -> int:
  if requested > 0:
    return min(requested, len(items))
  total = sum(rows[it.key].get("bytes", 0) for it in items)
  return max(1, min(len(items), math.ceil(total / SHARD_TARGET_BYTES)))


def _write_shards(mine: list[Item], splits: set, rows: dict, output_dir: str, shard_index: int, num_shards: int,
                  output_shards: int) -> dict:
  """Writes this job's shards of `splits` from the item records, in input order.

  A split without prepared items gets no shard (and loses its old ones). Returns
  key -> shard name.
  """
  where = {}

  def payload(its):
    # Rows of runs before the CRC was kept have none: it is computed while copying.
    return [(_item_paths(output_dir, it)[0], rows[it.key].get("crc32c")) for it in its]

  for split in sorted(splits):
    its = sorted((it for it in mine if it.split == split and rows[it.key]["status"] in PREPARED),
                 key=lambda it: it.order)
    if num_shards > 1:
      names = [records.shard_name(split, shard_index, num_shards)] if its else []
      chunks = [its]
      keep_count, drop = num_shards, [records.shard_name(split, shard_index, num_shards)]
    else:
      count = _shard_count(output_shards, its, rows) if its else 0
      bounds = np.linspace(0, len(its), count + 1).round().astype(int)
      chunks = [its[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
      names = [records.shard_name(split, s, count) for s in range(count)]
      keep_count, drop = count, []
    # Shards of an earlier run with another count would be globbed beside these.
    for path in records.prepared_files(output_dir, split):
      name = os.path.basename(path)
      if int(records.SHARD_PATTERN.fullmatch(name)["count"]) != keep_count or (not its and name in drop):
        os.remove(path)
    for name, chunk in zip(names, chunks):
      write_tfrecord_file(os.path.join(output_dir, name), payload(chunk))
      where.update({it.key: name for it in chunk})
  return where


# ------------------------------------------------------------------------------ manifest
_HELD: dict = {}  # output_dir -> depth: `_locked` is re-entrant within this process.


@contextlib.contextmanager
def _locked(output_dir: str):
  """An exclusive lock on the manifest and shards (jobs of an array finish at the same time)."""
  try:
    import fcntl
  except ImportError:  # not POSIX: the atomic rename still keeps the file whole
    yield
    return
  key = os.path.abspath(output_dir)
  if _HELD.get(key):
    _HELD[key] += 1
    try:
      yield
    finally:
      _HELD[key] -= 1
    return
  with open(os.path.join(output_dir, ".manifest.lock"), "w") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    _HELD[key] = 1
    try:
      yield
    finally:
      _HELD[key] = 0
      fcntl.flock(f, fcntl.LOCK_UN)


RUN_LOCK = ".prepare.lock"


@contextlib.contextmanager
def _run_lock(output_dir: str, exclusive: bool):
  """The whole run's lock on `output_dir`; RuntimeError naming the folder if another run holds it."""
  try:
    import fcntl
  except ImportError:
    yield
    return
  path = os.path.join(output_dir, RUN_LOCK)
  with open(path, "a+") as f:
    try:
      fcntl.flock(f, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
      f.seek(0)
      holder = f.read().strip() or "unknown"
      raise RuntimeError(f"{output_dir}: another data-prep run is using this folder ({path}; {holder}); "
                         "wait for it, or prepare into another --output_dir") from None
    try:
      if exclusive:
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {os.uname().nodename if hasattr(os, 'uname') else '?'}\n")
        f.flush()
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


JOBS_DIR = ".jobs"  # one registration per running job: its input lists, flock-held while it runs


def input_lists(items: list[Item]) -> dict:
  """split -> {"fingerprint": sha1 of its input keys in input order, "inputs": their count}."""
  keys: dict = {}
  for it in sorted(items, key=lambda it: it.order):
    keys.setdefault(it.split, []).append(it.key)
  return {split: {"fingerprint": hashlib.sha1("\n".join(k).encode()).hexdigest(), "inputs": len(k)}
          for split, k in keys.items()}


@contextlib.contextmanager
def _registered_inputs(output_dir: str, items: list[Item], shard_index: int, num_shards: int):
  """Registers this job's input lists for as long as it runs; refuses a list that clashes.

  A split of a folder holds one input list: a job deletes the item files of inputs its list
  lacks and writes its shards over those of the same name. Two jobs running at once with
  different lists for a split (two job arrays over other CSVs, or an array whose jobs were
  given different inputs) would delete each other's items and mix their shards, so the
  later one is refused, naming the split and the other job. One after the other, the later
  list replaces the earlier (as for a single job). Registrations are files under `.jobs/`
  flock-held by their job; one no job holds (a killed job's) is removed.

  Raises:
    RuntimeError: a running job prepares a split of this folder from another input list.
  """
  try:
    import fcntl
  except ImportError:
    yield
    return
  mine = input_lists(items)
  folder = os.path.join(output_dir, JOBS_DIR)
  os.makedirs(folder, exist_ok=True)
  me = {"lists": mine, "job": f"{shard_index} of {num_shards}", "pid": os.getpid(),
        "host": os.uname().nodename if hasattr(os, "uname") else "?"}
  with _locked(output_dir):  # Jobs check and register one at a time.
    for name in sorted(os.listdir(folder)):
      path = os.path.join(folder, name)
      if not name.endswith(".json"):
        continue
      with open(path) as other:
        try:
          fcntl.flock(other, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:  # its job is running
          try:
            theirs = json.load(other)
          except ValueError:
            continue
          clash = sorted(split for split, lst in mine.items()
                         if split in theirs.get("lists", {}) and theirs["lists"][split]["fingerprint"] != lst["fingerprint"])
          if clash:
            split = clash[0]
            raise RuntimeError(
                f"{output_dir}: split {split!r} is being prepared from another input list by a running job "
                f"(job {theirs.get('job')}, pid {theirs.get('pid')} on {theirs.get('host')}: "
                f"{theirs['lists'][split]['inputs']} inputs; this job has {mine[split]['inputs']}, a different list). "
                "Every job of an array must be given the same inputs; prepare another list into another "
                "--output_dir, or after that run has finished") from None
          continue
        os.remove(path)  # no job holds it: left by a killed job
    fd, path = tempfile.mkstemp(prefix=f"{me['host']}-{os.getpid()}-", suffix=".json", dir=folder)
    handle = os.fdopen(fd, "w")
    fcntl.flock(handle, fcntl.LOCK_EX)
    json.dump(me, handle, sort_keys=True)
    handle.flush()
  try:
    yield
  finally:
    os.remove(path)
    handle.close()


# Mount options under which flock(2) locks only this machine's processes: Linux NFS clients
# then keep locks local ("nolock"; "local_lock=flock|all").
_LOCAL_LOCK_OPTIONS = ("nolock", "local_lock=flock", "local_lock=all")


def node_local_locks(output_dir: str, mounts: str = "/proc/mounts") -> str | None:
  """Why the folder's locks would not reach other machines, or None where they do (or it is unknown).

  Data prep's locks are flock(2). On a local disk, and on a Linux NFS client with NFS
  locking (NFSv4, or NFSv3 with lockd), they hold between machines; on an NFS mount with
  `nolock` or `local_lock=flock|all` each machine sees only its own, so two runs on two
  machines could use one folder at once.
  """
  try:
    with open(mounts) as f:
      table = [line.split() for line in f]
  except OSError:
    return None
  path = os.path.realpath(output_dir)
  best = None
  for fields in table:
    if len(fields) < 4:
      continue
    point = fields[1].replace("\\040", " ")
    if (path == point or path.startswith(point.rstrip("/") + "/")) and (best is None or len(point) > len(best[1])):
      best = (fields[2], point, fields[3].split(","))
  if best is None or not best[0].startswith("nfs"):
    return None
  local = [o for o in best[2] if o in _LOCAL_LOCK_OPTIONS]
  if not local:
    return None
  return (f"{output_dir} is on an NFS mount ({best[1]}, {','.join(local)}) whose locks only this machine sees: "
          "run one single job, or one job array, on this folder at a time")


def sweep_temporaries(output_dir: str) -> list[str]:
  """Deletes the temporary files (`.<name>.<random>.tmp`) that killed runs left; returns their paths.

  Only safe while holding the run lock exclusively: a running writer's temp looks the same.
  """
  folders = [output_dir] + [os.path.join(output_dir, ITEMS_DIR, d)
                            for d in (sorted(os.listdir(os.path.join(output_dir, ITEMS_DIR)))
                                      if os.path.isdir(os.path.join(output_dir, ITEMS_DIR)) else [])]
  swept = []
  for folder in folders:
    if not os.path.isdir(folder):
      continue
    for name in sorted(os.listdir(folder)):
      path = os.path.join(folder, name)
      if name.startswith(".") and name.endswith(".tmp") and os.path.isfile(path):
        os.remove(path)
        swept.append(path)
  return swept


def _stats(entries: list[dict]) -> dict:
  ok = [e for e in entries if e["status"] in PREPARED]
  frames = sum(e["num_frames"] for e in ok)
  found = sum(e["faces_found"] for e in ok)

  def moments(key):
    values = np.array([e[key] for e in ok], np.float64)
    return (round(float(values.mean()), 6), round(float(values.std()), 6)) if len(values) else (None, None)

  (vm, vs), (am, as_) = moments("valence"), moments("arousal")
  return {
      "inputs": len(entries), "prepared": len(ok),
      "skipped_existing": sum(e["status"] == "skipped-existing" for e in entries),
      "errors": sum(e["status"] == "error" for e in entries),
      "pending": sum(e["status"] == "pending" for e in entries),
      "ignored": sum(e["status"] == "ignored" for e in entries),
      "warnings": sum(len(e.get("warnings", [])) for e in entries),
      "videos": len({e["video"] for e in ok}), "frames": frames, "faces_found": found,
      "face_found_ratio": round(found / frames, 6) if frames else None,
      "detected_ratio": round(sum(e["detections"] for e in ok) / frames, 6) if frames else None,
      "bytes": sum(e.get("bytes", 0) for e in ok),
      "shards": sorted({e["shard"] for e in ok if e.get("shard")}),
      "valence_mean": vm, "valence_std": vs, "arousal_mean": am, "arousal_std": as_,
  }


def write_manifest(output_dir: str, items: list[Item], problems: list[dict], fingerprints: dict,
                   last_run: dict | None = None) -> dict:
  """Rewrites manifest.json: these inputs' splits from the rows on disk, other splits kept.

  Args:
    output_dir: the prepared directory.
    items: every input of this run (all jobs).
    problems: inputs rejected before processing.
    fingerprints: key -> fingerprint; a row made from other inputs counts as pending.
    last_run: summary of this run (throughput, settings).

  Returns:
    The manifest: `splits` (per-split statistics), `items` (one entry per input: status,
    reason, counts, shard), `last_run`.
  """
  with _locked(output_dir):
    entries = []
    for it in items:
      row = _read_json(_item_paths(output_dir, it)[1])
      if row is None or row.get("fingerprint") != fingerprints[it.key]:
        row = {**_base_row(it), "status": "pending", "reason": "not prepared yet (another job's, or interrupted)"}
      row = {k: v for k, v in row.items() if k not in ("fingerprint", "sha1", "crc32c")}
      row["order"] = it.order  # the current input order, whichever run wrote the row
      entries.append(row)
    entries += [{"status": "error", **p, "stage": "input"} for p in problems]
    splits = {e["split"] for e in entries}
    old = _read_json(os.path.join(output_dir, MANIFEST)) or {}
    kept = [e for e in old.get("items", []) if e.get("split") not in splits]
    entries = sorted(kept + entries, key=lambda e: (e["split"], e.get("row", 0), e.get("order", 0)))
    stats = {s: _stats([e for e in entries if e["split"] == s]) for s in sorted({e["split"] for e in entries})}
    manifest = {"record_version": RECORD_VERSION, "splits": stats, "items": entries,
                "last_run": last_run or old.get("last_run")}
    _write_json(os.path.join(output_dir, MANIFEST), manifest)
  return manifest
