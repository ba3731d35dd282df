"""Many videos in one call: `omg-predict --videos=<folder, glob or list file>` (issue 15 item 1).

    omg-predict --model=<dir> --videos=clips/ --output_dir=out/ [--num_workers=2]
    omg-predict --model=<dir> --videos='clips/**/*.mp4' --output_dir=out/
    omg-predict --model=<dir> --videos=list.txt --output_dir=out/   # one path a line, '#' comments

The model is loaded once; one progress bar counts the frames of every video; each video
gets its own folder `<output_dir>/<name>/` with `omg-predict`'s outputs (`name`: the file
name without extension; where two videos share one, each gets `<name>-<6 hex of its path>`),
and `<output_dir>/index.csv` lists every video of the call:

    video, output_dir, frames, faces_found, valence_mean, valence_sd, arousal_mean,
    arousal_sd, seconds, status

(means and population sds of `valence_post` / `arousal_post` over the frames with a face:
the median-filtered, in-range values users read; `seconds` of processing; `status` is `ok`,
`done earlier` or `error: <reason>`). The index is rewritten (atomically) after every video.

Resuming: a video whose folder holds a `summary.json` naming that video (written last, so
it is complete) is done and is skipped; run the same command again after a kill and only
the rest is computed. A folder holding another video's results is never overwritten: that
video's row says so. A bad video (missing, not a video, truncated) gets `error: ...` naming
it in its row while the others go through; nothing already done is lost.

`num_workers` > 0 runs the face pipeline (decoding, detection, tracking, cropping) of up to
that many videos in threads ahead of the network, each at most `prefetch` frames ahead
(memory stays bounded; OpenCV and TensorFlow release the GIL in their work). The results are
identical to `num_workers=0` (tested).
"""

from __future__ import annotations

import concurrent.futures
import glob
import hashlib
import json
import os
import queue
import threading
import time
from typing import Iterable, Iterator

import pandas as pd

from omg_cnnrnn import faces, inference
from omg_cnnrnn.data import labels
from omg_cnnrnn.data import records as record_files

INDEX_COLUMNS = ("video", "output_dir", "frames", "faces_found", "valence_mean", "valence_sd", "arousal_mean",
                 "arousal_sd", "seconds", "status")


class VideosError(ValueError):
  """An unusable `--videos` value; names it and why."""


def list_videos(spec: str) -> list[str]:
  """The videos `spec` names, in a fixed order.

  Args:
    spec: a folder (its files with a video extension, `faces.VIDEO_EXTENSIONS`, sorted; not
      its subfolders), a glob pattern (`*`, `?`, `[`; `**` recurses; sorted), or a text file
      listing one video a line (relative paths from the list's folder; blank lines and `#`
      comments skipped; order kept; repeats dropped).

  Returns:
    Paths; those from a list file need not exist (each missing one fails its own row).

  Raises:
    VideosError: nothing at `spec`, an empty folder, a pattern without matches, an empty
      list, a single video (use --video); names `spec`.
  """
  spec = os.fspath(spec)
  if os.path.isdir(spec):
    videos = sorted(os.path.join(spec, n) for n in os.listdir(spec)
                    if n.lower().endswith(faces.VIDEO_EXTENSIONS) and os.path.isfile(os.path.join(spec, n)))
    if not videos:
      raise VideosError(f"--videos={spec}: the folder holds no video file ({', '.join(faces.VIDEO_EXTENSIONS)})")
    return videos
  if any(c in spec for c in "*?["):
    videos = sorted(p for p in glob.glob(spec, recursive=True) if os.path.isfile(p))
    if not videos:
      raise VideosError(f"--videos={spec}: the pattern matches no file")
    return videos
  if not os.path.exists(spec):
    raise VideosError(f"--videos={spec}: not found (give a folder, a glob pattern or a list file)")
  if spec.lower().endswith(faces.VIDEO_EXTENSIONS):
    raise VideosError(f"--videos={spec}: a video, not a folder, pattern or list file; use --video for one video")
  base = os.path.dirname(os.path.abspath(spec))
  try:
    with open(spec, encoding="utf-8") as f:
      lines = f.read().splitlines()
  except (OSError, UnicodeDecodeError) as e:
    raise VideosError(f"--videos={spec}: unreadable list file ({e})") from None
  videos, seen = [], set()
  for line in lines:
    line = line.strip()
    if not line or line.startswith("#"):
      continue
    path = line if os.path.isabs(line) else os.path.join(base, line)
    if os.path.abspath(path) not in seen:
      seen.add(os.path.abspath(path))
      videos.append(path)
  if not videos:
    raise VideosError(f"--videos={spec}: the list file names no video")
  return videos


def output_names(videos: list[str]) -> list[str]:
  """One folder name per video: the stem, made unique by a hash of the path where stems repeat."""
  stems = [os.path.splitext(os.path.basename(v))[0] or "video" for v in videos]
  counts = pd.Series(stems).value_counts()
  return [s if counts[s] == 1 else f"{s}-{hashlib.sha1(os.path.abspath(v).encode()).hexdigest()[:6]}"
          for s, v in zip(stems, videos)]


def _done(folder: str, video: str, faces_mode: str = "one") -> tuple[dict | None, str | None]:
  """(summary of a finished earlier run of `video`, None), or (None, why the folder is not ours)."""
  path = os.path.join(folder, "summary.json")
  if not os.path.exists(path):
    return None, None
  try:
    with open(path) as f:
      summary = json.load(f)
  except (OSError, ValueError):
    return None, None  # Unreadable: not a finished run; it is redone.
  if summary.get("video") != os.path.abspath(video):
    return None, f"{folder} holds the results of another video ({summary.get('video')}); not overwritten"
  if not os.path.exists(os.path.join(folder, "frames.csv")):
    return None, None
  if summary.get("faces", "one") != faces_mode:
    return None, (f"{folder} holds --faces={summary.get('faces', 'one')} results of this video; not overwritten "
                  "(give another --output_dir)")
  return summary, None


def _row(video: str, folder: str, summary: dict | None, status: str) -> dict:
  row = {"video": video, "output_dir": folder, "status": status}
  if summary:
    stats = summary.get("post_stats", {})
    row.update(frames=summary.get("frames"), faces_found=summary.get("faces_found"), seconds=summary.get("seconds"))
    for dim in ("valence", "arousal"):
      row[f"{dim}_mean"] = stats.get(dim, {}).get("mean")
      row[f"{dim}_sd"] = stats.get(dim, {}).get("sd")
  return row


def write_index(rows: list[dict], path: str) -> None:
  table = pd.DataFrame(rows, columns=INDEX_COLUMNS)
  with record_files.atomic_output(path) as tmp:
    table.to_csv(tmp, index=False, float_format="%.6g")


_END = object()


class _Prefetcher:
  """The face pipelines of the videos, run in `workers` threads ahead of the consumer."""

  def __init__(self, videos: list[str], workers: int, face_config, detector, prefetch: int):
    self.face_config, self.detector = face_config, detector
    self.queues = {v: queue.Queue(maxsize=prefetch) for v in videos}
    self.cancelled = {v: threading.Event() for v in videos}
    self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="faces")
    # Submitted in order: the video the consumer waits for is always running or done.
    for v in videos:
      self.pool.submit(self._work, v)

  def _put(self, video: str, item) -> bool:
    while not self.cancelled[video].is_set():
      try:
        self.queues[video].put(item, timeout=0.1)
        return True
      except queue.Full:
        continue
    return False

  def _work(self, video: str) -> None:
    try:
      for item in inference.face_frames(video, self.face_config, self.detector):
        if not self._put(video, item):
          return
      self._put(video, _END)
    except BaseException as e:  # noqa: BLE001 - handed to the consumer, which raises it.
      self._put(video, e)

  def frames(self, video: str) -> Iterator:
    while True:
      item = self.queues[video].get()
      if item is _END:
        return
      if isinstance(item, BaseException):
        raise item
      yield item

  def release(self, video: str) -> None:
    """The consumer is done with `video` (or gave up): its worker stops."""
    self.cancelled[video].set()

  def close(self) -> None:
    for event in self.cancelled.values():
      event.set()
    self.pool.shutdown(wait=True, cancel_futures=True)


def predict_videos(predictor: inference.Predictor, videos: Iterable[str], output_dir: str, *,
                   face_config: faces.FaceConfig = faces.FaceConfig(), detector: faces.Detector | None = None,
                   chunk_frames: int = 80, num_workers: int = 0, prefetch: int = 256, progress: bool = True,
                   utterances: str | None = None, annotated_video: bool = False, faces_mode: str = "one") -> pd.DataFrame:
  """Runs `inference.predict_video` over many videos with one loaded model; writes `index.csv`.

  Args:
    predictor: from `inference.load_predictor` (loaded once for all).
    videos: paths (`list_videos`).
    output_dir: one folder per video inside, and `index.csv`.
    face_config, detector, chunk_frames, utterances, annotated_video: as `inference.predict_video`.
    num_workers: threads running the face pipeline of upcoming videos (0: in line).
    prefetch: frames a worker may run ahead of the network.
    progress: one tqdm bar over the frames of all videos.
    faces_mode: "one" (`inference.predict_video`) or "all" (`inference.predict_all_faces`: every
      person a track; the index's statistics are over every track's rows).

  Returns:
    The index (also at `<output_dir>/index.csv`), one row per video in input order.
  """
  if faces_mode not in ("one", "all"):
    raise ValueError(f"faces_mode must be 'one' or 'all', got {faces_mode!r}")
  if faces_mode == "all" and (num_workers or utterances or annotated_video):
    raise ValueError("faces_mode='all' runs its own tracker in line: no num_workers, utterances or annotated_video")
  if num_workers < 0:
    raise ValueError(f"num_workers must be >= 0, got {num_workers}")
  if prefetch < 1:
    raise ValueError(f"prefetch must be >= 1, got {prefetch}")
  videos = list(videos)
  os.makedirs(output_dir, exist_ok=True)
  index_path = os.path.join(output_dir, "index.csv")
  folders = [os.path.join(output_dir, n) for n in output_names(videos)]
  rows: list[dict | None] = [None] * len(videos)
  todo, total = [], 0
  for i, (video, folder) in enumerate(zip(videos, folders)):
    summary, conflict = _done(folder, video, faces_mode)
    if summary is not None:
      rows[i] = _row(video, folder, summary, "done earlier")
      continue
    if conflict:
      rows[i] = _row(video, folder, None, f"error: {conflict}")
      continue
    try:
      total += inference.source_info(video)["num_frames"]  # Cheap checks first: a bad file fails here.
    except faces.VideoError as e:
      rows[i] = _row(video, folder, None, f"error: {e}")
      continue
    todo.append(i)

  def snapshot():
    write_index([r if r is not None else _row(v, f, None, "pending") for r, v, f in zip(rows, videos, folders)],
                index_path)

  snapshot()
  bar = None
  if progress and todo:
    from tqdm import tqdm

    bar = tqdm(total=total or None, unit="frame", desc=f"{len(todo)} videos")
  prefetcher = _Prefetcher([videos[i] for i in todo], num_workers, face_config, detector, prefetch) if (
      num_workers and todo) else None
  try:
    for i in todo:
      video, folder = videos[i], folders[i]
      began = time.perf_counter()
      try:
        stream = prefetcher.frames(video) if prefetcher else None
        if faces_mode == "all":
          summary = inference.predict_all_faces(predictor, video, folder, chunk_frames=chunk_frames,
                                              face_config=face_config, detector=detector, progress=bar or False)
        else:
          summary = inference.predict_video(predictor, video, folder, utterances=utterances,
                                          annotated_video=annotated_video, chunk_frames=chunk_frames,
                                          face_config=face_config, detector=detector, progress=bar or False,
                                          face_stream=stream)
        rows[i] = _row(video, folder, summary, "ok")
      except (faces.VideoError, labels.UtterancesError, OSError, ValueError) as e:
        rows[i] = _row(video, folder, None, f"error: {e}")
        rows[i]["seconds"] = time.perf_counter() - began
      finally:
        if prefetcher:
          prefetcher.release(video)
      snapshot()
  finally:
    if prefetcher:
      prefetcher.close()
    if bar is not None:
      bar.close()
  return pd.read_csv(index_path)
