"""The engine shared by `prepare_omg` and `prepare_affwild`: work items, workers, resume, shards, manifest.

- Each input (an OMG utterance, an Aff-Wild video) is one `Item`. A worker process runs
  the face pipeline on it and writes its SequenceExample to
  `<output_dir>/.items/<split>/<key>.tfrecord` and its manifest row to `<key>.json`, each
  atomically (temp file, then rename). A rerun skips items whose row says "ok": an
  interrupted run resumes where it stopped.
- Shards are assembled from the item files in input order, so an interrupted-then-resumed
  run writes byte-identical shards to an uninterrupted one.
- `--shard_index/--num_shards` give each job of a cluster array a deterministic slice of
  the inputs (item i goes to job i mod num_shards); each job writes the shard
  `<split>-<shard_index>-of-<num_shards>.tfrecord`. A single job writes `--output_shards`
  shards.
- Bad inputs are reported by name with the reason, on stderr and in the manifest, while
  the rest are processed; `--strict` turns any of them into a failure (non-zero exit)
  once everything else is written.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import multiprocessing
import os
import re
import sys

import numpy as np
from absl import flags

ITEMS_DIR = ".items"


@dataclasses.dataclass
class Item:
  """One input to prepare."""

  key: str  # unique within the split; also the file name stem
  video: str
  utterance: str
  source: str  # video file
  dataset: str
  split: str
  start: float | None = None
  end: float | None = None
  valence: float = 0.0
  arousal: float = 0.0
  emotion: int = -1
  frame_labels: np.ndarray | None = None  # [n, 2] per-frame labels (Aff-Wild)
  frame_mask: np.ndarray | None = None  # [n] valid labels (Aff-Wild)
  order: int = 0  # position in the input list (shard order)


def safe_key(*parts: str) -> str:
  """A file-system-safe, unique stem for (video, utterance)."""
  text = "__".join(parts)
  stem = re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:120]
  return f"{stem}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def define_flags():
  """Flags shared by both commands."""
  flags.DEFINE_string("output_dir", None, "Where the shards and manifest.json go.")
  flags.DEFINE_integer("num_workers", 1, "Worker processes (each loads its own detector).")
  flags.DEFINE_integer("shard_index", 0, "This job's index in a cluster job array.")
  flags.DEFINE_integer("num_shards", 1, "Number of jobs in the array (1: a single job).")
  flags.DEFINE_integer("output_shards", 2, "Shards a single job writes per split.")
  flags.DEFINE_bool("strict", False, "Fail (non-zero exit) on any bad input, after processing the rest.")
  flags.DEFINE_bool("progress", True, "Show progress bars.")
  flags.DEFINE_integer("detect_every", 5, "Run the detector every k frames, optical flow in between.")
  flags.DEFINE_float("detection_scale", 0.5, "Downscale factor of frames given to the detector.")
  flags.DEFINE_float("margin", 0.1, "Crop margin, fraction of the box's larger side on each side.")
  flags.DEFINE_integer("max_hold_frames", 5, "Frames the last box is held after a miss.")
  flags.DEFINE_integer("crop_size", 96, "Face crop size (paper: 96).")


def face_config_from_flags():
  from omg_cnnrnn import faces

  f = flags.FLAGS
  return faces.FaceConfig(crop_size=f.crop_size, margin=f.margin, max_hold_frames=f.max_hold_frames,
                          detect_every=f.detect_every, detection_scale=f.detection_scale)


# ------------------------------------------------------------------------------------- workers
_TRACKER_CONFIG = None


def _init_worker(face_config):
  global _TRACKER_CONFIG
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  _TRACKER_CONFIG = face_config


_DETECTORS: dict = {}


def _process_detector(face_config):
  """One detector per process and setting: loading MTCNN costs seconds, not per item."""
  from omg_cnnrnn import faces

  if face_config not in _DETECTORS:
    _DETECTORS[face_config] = faces.default_detector(face_config)
  return _DETECTORS[face_config]


def _item_paths(output_dir: str, item: Item) -> tuple[str, str]:
  base = os.path.join(output_dir, ITEMS_DIR, item.split, item.key)
  return base + ".tfrecord", base + ".json"


def _write_json(path: str, value) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + ".tmp", "w") as f:
    json.dump(value, f, indent=1, sort_keys=True, default=float)
  os.replace(path + ".tmp", path)


def process_item(item: Item, output_dir: str, face_config=None, detector=None) -> dict:
  """Runs the face pipeline on one item and writes its record; returns its manifest row."""
  from omg_cnnrnn import faces
  from omg_cnnrnn.data import features, records

  face_config = face_config or _TRACKER_CONFIG or faces.FaceConfig()
  detector = detector or _process_detector(face_config)
  record_path, row_path = _item_paths(output_dir, item)
  row = {"key": item.key, "video": item.video, "utterance": item.utterance, "split": item.split,
         "source": item.source, "dataset": item.dataset, "order": item.order}
  try:
    track = faces.process_video(item.source, face_config, detector, start=item.start, end=item.end)
  except faces.VideoError as e:
    row.update(status="error", reason=e.reason)
    _write_json(row_path, row)
    return row
  n = len(track.face_found)
  row.update(num_frames=n, faces_found=int(track.face_found.sum()), detections=int(track.detected.sum()),
             fps=track.fps)
  if not track.face_found.any():
    row.update(status="error", reason=f"no face found in any of its {n} frames")
    _write_json(row_path, row)
    return row
  frame_valence = frame_arousal = label_mask = None
  valence, arousal = item.valence, item.arousal
  if item.frame_labels is not None:
    labels, mask = item.frame_labels, item.frame_mask
    m = len(labels)
    if m != n:
      row["note"] = (f"annotation has {m} frames, the video {n}: " +
                     ("extra annotation lines ignored" if m > n else "frames past the annotation masked"))
    lab = np.zeros((n, 2), np.float32)
    msk = np.zeros(n, bool)
    k = min(m, n)
    lab[:k], msk[:k] = labels[:k], mask[:k]
    frame_valence, frame_arousal, label_mask = lab[:, 0], lab[:, 1], msk
    valence = float(lab[msk, 0].mean()) if msk.any() else 0.0
    arousal = float(lab[msk, 1].mean()) if msk.any() else 0.0
    row["labelled_frames"] = int(msk.sum())
  example = features.encode_example(
      video=item.video, utterance=item.utterance, valence=valence, arousal=arousal, crops=track.crops,
      face_found=track.face_found, detected=track.detected, boxes=track.boxes, timestamps=track.timestamps,
      frame_valence=frame_valence, frame_arousal=frame_arousal, label_mask=label_mask, emotion=item.emotion,
      fps=track.fps, dataset=item.dataset, split=item.split, source=item.source, frame_size=track.frame_size)
  os.makedirs(os.path.dirname(record_path), exist_ok=True)
  records.write_records(record_path, [example.SerializeToString()])
  row.update(status="ok", valence=valence, arousal=arousal)
  _write_json(row_path, row)
  return row


def _done(output_dir: str, item: Item) -> dict | None:
  record_path, row_path = _item_paths(output_dir, item)
  if os.path.exists(row_path) and os.path.exists(record_path):
    with open(row_path) as f:
      row = json.load(f)
    if row.get("status") == "ok":
      return row
  return None


def run(items: list[Item], output_dir: str, problems: list[dict], face_config, num_workers: int = 1,
        shard_index: int = 0, num_shards: int = 1, output_shards: int = 2, strict: bool = False,
        progress: bool = True) -> dict:
  """Prepares `items` (this job's slice), assembles shards, writes the manifest.

  Args:
    items: every input, in input order (all jobs see the same list).
    output_dir: output directory.
    problems: input-level problems found before processing (bad label rows...), as manifest rows.
    face_config: faces.FaceConfig.
    num_workers: worker processes.
    shard_index, num_shards: this job's slice of a job array.
    output_shards: shards per split for a single job.
    strict: return a failure summary (the caller exits non-zero) if anything went wrong.
    progress: tqdm progress bar.

  Returns:
    The manifest.
  """
  from tqdm import tqdm

  if not 0 <= shard_index < num_shards:
    raise ValueError(f"--shard_index={shard_index} outside [0, {num_shards})")
  mine = [it for it in items if it.order % num_shards == shard_index]
  todo, rows = [], {}
  for it in mine:
    done = _done(output_dir, it)
    if done is not None:
      rows[it.key] = {**done, "status": "ok", "resumed": True}
    else:
      todo.append(it)
  for p in problems:
    print(f"[prepare] skipped {p['video']}/{p['utterance']}: {p['reason']}", file=sys.stderr)
  bar = tqdm(total=len(todo), desc=f"prepare {len(todo)} of {len(mine)} items", unit="item", disable=not progress)
  if num_workers <= 1 or len(todo) <= 1:
    _init_worker(face_config)
    for it in todo:
      rows[it.key] = _report(process_item(it, output_dir, face_config))
      bar.update()
  else:
    ctx = multiprocessing.get_context("spawn")  # TensorFlow is not fork-safe
    with concurrent.futures.ProcessPoolExecutor(num_workers, mp_context=ctx, initializer=_init_worker,
                                                initargs=(face_config,)) as pool:
      futures = {pool.submit(process_item, it, output_dir): it for it in todo}
      for fut in concurrent.futures.as_completed(futures):
        rows[futures[fut].key] = _report(fut.result())
        bar.update()
  bar.close()
  _assemble(mine, rows, output_dir, shard_index, num_shards, output_shards)
  manifest = write_manifest(output_dir, problems)
  failures = [r for r in rows.values() if r.get("status") != "ok"] + list(problems)
  manifest["failures_this_run"] = len(failures)
  if strict and failures:
    listed = "\n  ".join(f"{r.get('source') or r.get('video')}: {r['reason']}" for r in failures[:20])
    raise SystemExit(f"--strict: {len(failures)} bad inputs (everything else was written):\n  {listed}")
  return manifest


def _report(row: dict) -> dict:
  if row.get("status") != "ok":
    print(f"[prepare] {row['source']} ({row['video']}/{row['utterance']}): {row['reason']}", file=sys.stderr)
  return row


def _assemble(mine: list[Item], rows: dict, output_dir: str, shard_index: int, num_shards: int,
              output_shards: int) -> None:
  """Writes this job's shards from the item files, in input order (deterministic)."""
  from omg_cnnrnn.data import records

  by_split: dict[str, list[Item]] = {}
  for it in sorted(mine, key=lambda i: i.order):
    if rows.get(it.key, {}).get("status") == "ok":
      by_split.setdefault(it.split, []).append(it)
  for split, its in by_split.items():
    serialized = [records.read_records(_item_paths(output_dir, it)[0])[0] for it in its]
    if num_shards > 1:
      records.write_records(os.path.join(output_dir, records.shard_name(split, shard_index, num_shards)), serialized)
      continue
    count = max(1, min(output_shards, len(serialized)))
    for old in records.prepared_files(output_dir, split):
      if not old.endswith(f"-of-{count:05d}.tfrecord"):
        os.remove(old)  # a previous run with another shard count
    for s in range(count):
      records.write_records(os.path.join(output_dir, records.shard_name(split, s, count)), serialized[s::count])


def write_manifest(output_dir: str, problems: list[dict] = ()) -> dict:
  """manifest.json from every item row on disk (all splits, all jobs) plus input problems."""
  rows = []
  items_root = os.path.join(output_dir, ITEMS_DIR)
  splits = [d for d in sorted(os.listdir(items_root)) if os.path.isdir(os.path.join(items_root, d))] \
      if os.path.isdir(items_root) else []
  for split in splits:
    for name in sorted(os.listdir(os.path.join(items_root, split))):
      if name.endswith(".json"):
        with open(os.path.join(items_root, split, name)) as f:
          rows.append(json.load(f))
  problem_path = os.path.join(output_dir, ITEMS_DIR, "problems.json")
  known = []
  if os.path.exists(problem_path):
    with open(problem_path) as f:
      known = json.load(f)
  merged = {(p["split"], p["video"], p["utterance"], p["reason"]): p for p in known + list(problems)}
  problems = sorted(merged.values(), key=lambda p: (p["split"], p.get("row", 0)))
  _write_json(problem_path, problems)
  stats = {}
  for split in sorted({r["split"] for r in rows} | {p["split"] for p in problems}):
    ok = [r for r in rows if r["split"] == split and r.get("status") == "ok"]
    frames = sum(r["num_frames"] for r in ok)
    stats[split] = {
        "ok": len(ok), "errors": sum(1 for r in rows if r["split"] == split and r.get("status") != "ok"),
        "rejected_inputs": sum(1 for p in problems if p["split"] == split),
        "frames": frames, "face_found_ratio": (sum(r["faces_found"] for r in ok) / frames) if frames else 0.0,
        "videos": len({r["video"] for r in ok}),
        "valence_mean": float(np.mean([r["valence"] for r in ok])) if ok else None,
        "valence_std": float(np.std([r["valence"] for r in ok])) if ok else None,
        "arousal_mean": float(np.mean([r["arousal"] for r in ok])) if ok else None,
        "arousal_std": float(np.std([r["arousal"] for r in ok])) if ok else None,
    }
  manifest = {"splits": stats, "items": rows, "rejected_inputs": problems}
  _write_json(os.path.join(output_dir, "manifest.json"), manifest)
  return manifest
