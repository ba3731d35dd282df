"""Live sources: a camera, a stream, or a file played at its real frame rate (issue 15 item 3).

    omg-predict --model=<dir> --video=0 --output_dir=out/                  # camera 0
    omg-predict --model=<dir> --video=rtsp://host/stream --output_dir=out/ [--max_seconds=60]
    omg-predict --model=<dir> --video=clip.mp4 --live --output_dir=out/    # a file, as if live

A reader thread takes frames from the source as they arrive (a file with `--live` is released
at its frame rate: frame i at i / fps after the start) and keeps only the newest one. The
processing loop takes the newest frame, tracks the face (`faces.FaceTracker`) and runs the
network on it alone with the GRU state carried (`Predictor.step` on one frame). When the
loop falls behind, frames that arrive while it is busy replace each other in the slot: all
but the newest are dropped, and counted. Frames dropped never reach the tracker or the
network (the state simply goes on from the last processed face). Each processed frame's row
is appended to `frames.csv` (flushed) and, unless `quiet`, printed as it is computed.

`time` is the file's (index / fps) for a file played live, and the arrival time since the
start for a camera or stream. Live rows differ from a file's in one more way: the `_post` columns are the raw values clipped to
the label ranges, without the median filter (it would need later frames). `summary.json`
reports frames arrived, processed and dropped, and the latency from a frame's arrival to its
row being written (p50, p90, p99, max, in ms). Ctrl-C (or `max_frames` / `max_seconds`, or the
source ending) stops the run; what was computed is kept.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time

import cv2
import numpy as np
import pandas as pd

from omg_cnnrnn import faces, inference, metrics
from omg_cnnrnn.data import records as record_files


def is_live_source(text: str) -> bool:
  """A camera index ("0") or a URL ("rtsp://...", "http://..."): OpenCV opens it, not a file."""
  text = str(text).strip()
  return text.isdigit() or "://" in text


def open_capture(text: str) -> cv2.VideoCapture:
  """The capture of a camera index, URL or file; `faces.VideoError` naming it if it does not open."""
  text = str(text).strip()
  capture = cv2.VideoCapture(int(text)) if text.isdigit() else cv2.VideoCapture(text)
  if not capture.isOpened():
    capture.release()
    what = "camera" if text.isdigit() else "stream" if "://" in text else "video"
    raise faces.VideoError(text, f"OpenCV cannot open this {what}")
  return capture


class LatestFrame:
  """Reads a capture in a thread, keeping only the newest frame; counts the frames dropped.

  Args:
    capture: an opened capture (released by `close`).
    pace_fps: release frame i at start + i / pace_fps (a file played at its real rate);
      None: as fast as the capture delivers (cameras and streams pace themselves).
  """

  def __init__(self, capture, pace_fps: float | None = None):
    self.capture, self.pace_fps = capture, pace_fps
    self.arrived = self.dropped = 0
    self.ended = False
    self.error: BaseException | None = None
    self._slot = None
    self._condition = threading.Condition()
    self._stop = threading.Event()
    self.started = time.perf_counter()
    self._thread = threading.Thread(target=self._read, name="live-reader", daemon=True)
    self._thread.start()

  def _read(self) -> None:
    try:
      index = 0
      while not self._stop.is_set():
        if self.pace_fps:
          wait = self.started + index / self.pace_fps - time.perf_counter()
          if wait > 0:
            time.sleep(wait)
        ok, frame = self.capture.read()
        if not ok or frame is None:
          break
        arrival = time.perf_counter()
        with self._condition:
          if self._slot is not None:
            self.dropped += 1  # the loop has not taken the previous frame: it is replaced
          self._slot = (index, arrival, frame)
          self.arrived += 1
          self._condition.notify()
        index += 1
    except BaseException as e:  # noqa: BLE001 - reported by get()
      self.error = e
    finally:
      with self._condition:
        self.ended = True
        self._condition.notify()

  def get(self, timeout: float | None = None):
    """`(source index, arrival perf_counter, BGR frame)` of the newest frame; None at the end."""
    with self._condition:
      while self._slot is None and not self.ended:
        if not self._condition.wait(timeout):
          return None
      item, self._slot = self._slot, None
    if item is None and self.error is not None:
      raise self.error
    return item

  def close(self) -> None:
    self._stop.set()
    self._thread.join(timeout=5)
    self.capture.release()


def latency_summary(latencies_ms: list[float]) -> dict:
  """p50, p90, p99, max and mean of per-frame latencies (ms); None without any."""
  if not latencies_ms:
    return {k: None for k in ("p50", "p90", "p99", "max", "mean")}
  x = np.asarray(latencies_ms, np.float64)
  return {"p50": float(np.percentile(x, 50)), "p90": float(np.percentile(x, 90)),
          "p99": float(np.percentile(x, 99)), "max": float(x.max()), "mean": float(x.mean())}


def run_live(predictor: inference.Predictor, source, output_dir: str, *,
             face_config: faces.FaceConfig = faces.FaceConfig(), detector: faces.Detector | None = None,
             play_file: bool = False, max_frames: int | None = None, max_seconds: float | None = None,
             quiet: bool = False, printer=print) -> dict:
  """Runs the model on a live source as frames arrive; writes frames.csv and summary.json.

  Args:
    predictor: from `inference.load_predictor`.
    source: a camera index or URL (`is_live_source`), a video file, or an opened capture
      (released at the end).
    output_dir: created if needed; `frames.csv` is appended row by row.
    face_config, detector: the face pipeline's settings.
    play_file: release a file's frames at its frame rate (a rehearsal of a live source).
    max_frames: stop after this many processed frames; max_seconds: after this long.
    quiet: do not print rows.
    printer: where rows are printed (a function of one string).

  Returns:
    The summary (also `summary.json`).

  Raises:
    faces.VideoError: the source does not open (names it).
  """
  if max_frames is not None and max_frames < 1:
    raise ValueError(f"max_frames must be >= 1, got {max_frames}")
  name = inference.capture_name(source) if inference.is_capture(source) else str(source)
  capture = source if inference.is_capture(source) else open_capture(source)
  fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
  fps = fps if np.isfinite(fps) and 0 < fps < 1000 else None
  pace = fps if play_file else None
  if play_file and pace is None:
    raise faces.VideoError(name, "no frame rate to play the file at (--live needs one)")
  os.makedirs(output_dir, exist_ok=True)
  frames_csv = os.path.join(output_dir, "frames.csv")
  tracker = faces.FaceTracker(face_config, detector)
  state = predictor.initial_state()
  latencies: list[float] = []
  processed = found_count = 0
  reader = LatestFrame(capture, pace)
  try:
    with open(frames_csv, "w", newline="") as f:
      f.write(",".join(inference.FRAME_COLUMNS) + "\n")
      f.flush()
      while max_frames is None or processed < max_frames:
        if max_seconds is not None and time.perf_counter() - reader.started > max_seconds:
          break
        item = reader.get(timeout=1.0)
        if item is None:
          if reader.ended:
            break
          continue
        index, arrival, frame = item
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        found, box, crop = tracker.update(rgb)
        values = np.full(2, np.nan)
        if found:
          out, state = predictor.step(inference.resize_crop(crop, predictor.image_size)[np.newaxis], state)
          values = out[0].astype(np.float64)
          found_count += 1
        # A file played live keeps its own clock; a camera's or stream's frame is timed by its arrival.
        t = index / fps if play_file else arrival - reader.started
        row = inference.FrameResult(index, t, found, np.asarray(box, np.float32), values,
                                  inference.clip_values(values, predictor.ranges))
        pd.DataFrame([row.row()], columns=inference.FRAME_COLUMNS).to_csv(f, header=False, index=False,
                                                                         float_format="%.8g")
        f.flush()
        latencies.append((time.perf_counter() - arrival) * 1000.0)
        processed += 1
        if not quiet:
          printer(f"frame {index} t={t:.2f}s " + (f"valence {values[0]:+.3f} arousal {values[1]:+.3f}" if found
                                                  else "no face"))
  except KeyboardInterrupt:
    pass  # Ctrl-C ends a live run; what was computed is kept.
  finally:
    reader.close()
  elapsed = time.perf_counter() - reader.started
  # A frame in the slot when the run stopped was neither processed nor dropped.
  summary = {
      "source": name, "live": True, "played_at_fps": pace, "source_fps": fps,
      "frames_arrived": reader.arrived, "frames_processed": processed, "frames_dropped": reader.dropped,
      "faces_found": found_count, "seconds": elapsed,
      "processed_per_second": processed / elapsed if elapsed > 0 else None,
      "latency_ms": latency_summary(latencies),
      "latency": "from the frame's arrival (the capture's read returned) to its row written to frames.csv",
      "post_columns": "raw values clipped to the label ranges; no median filter in live mode",
      "model": os.path.abspath(predictor.path), "model_kind": predictor.kind, "experiment": predictor.config.name,
      "value_ranges": {dim: list(r) for dim, r in zip(metrics.DIMENSIONS, predictor.ranges)},
      "face_config": dataclasses.asdict(face_config), "outputs": {"frames": frames_csv},
  }
  record_files.write_atomic(os.path.join(output_dir, "summary.json"),
                            json.dumps(summary, indent=2, default=float) + "\n")
  return summary
