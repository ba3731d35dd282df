"""The face pipeline: read a video, detect and track ONE target face, crop it to 96x96.

Used by data preparation (`data_prep`) and by video prediction alike; there is no other copy.

- Detection: MTCNN (the `mtcnn` package ships its weights and runs offline) behind a
  small `Detector` protocol, optionally on a downscaled frame (`detection_scale`) and only
  every `detect_every` frames, with Lucas-Kanade optical flow following the face in between.
  (The paper used the DPM detector ffld2; SPEC chooses MTCNN.)
- Tracking: the track starts on the most confident face (ties: the largest); afterwards a
  detection is accepted only if it continues the track in position and size, so a second,
  larger face elsewhere does not steal it.
- Misses: the last box is held (followed by optical flow where possible) for
  `max_hold_frames` frames after a failed detection, then the frame is marked missing:
  face_found False, box NaN, a black crop. Frames are never dropped, so the timeline stays
  aligned with per-frame labels.
- Crops: a square around the box centre, side (1 + 2 margin) x the box's larger side,
  padded with black outside the frame, resized to `crop_size` (INTER_AREA).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterator, Protocol

import cv2
import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv")


class VideoError(Exception):
  """A video that cannot be used; names the file and the reason."""

  def __init__(self, path: str, reason: str):
    super().__init__(f"{path}: {reason}")
    self.path = path
    self.reason = reason


@dataclasses.dataclass(frozen=True)
class FaceConfig:
  """Detection, tracking and cropping settings."""

  # Paper Sec. III-C: face crops resized to 96x96x3.
  crop_size: int = 96
  # Fraction of the box's larger side added on each side before cropping.
  margin: float = 0.1
  # Frames the last box is held after a failed detection before the frame counts as missing.
  max_hold_frames: int = 5
  # Run the detector every k frames and follow the face with optical flow in between.
  detect_every: int = 5
  # Downscale factor of the frame given to the detector (1.0 = full resolution).
  detection_scale: float = 0.5
  # Smallest face the detector looks for, in full-resolution pixels.
  min_face_size: int = 24
  # Detections below this confidence are ignored.
  min_confidence: float = 0.9
  # A detection continues the track if its centre moved less than this fraction of the
  # track's box size and its size changed by less than this factor.
  max_center_jump: float = 0.6
  max_size_ratio: float = 1.8


FULL_DETECTION = FaceConfig(detect_every=1, detection_scale=1.0)


@dataclasses.dataclass
class FaceTrack:
  """Per-frame result of a whole video (or a [start, end) segment of it)."""

  crops: np.ndarray  # uint8 [T, S, S, 3] RGB; zeros where no face
  face_found: np.ndarray  # bool [T]
  detected: np.ndarray  # bool [T]: the detector itself fired on the target
  boxes: np.ndarray  # float32 [T, 4] x0, y0, x1, y1 in source pixels; NaN where no face
  timestamps: np.ndarray  # float64 [T] seconds from the start of the file
  fps: float
  frame_size: tuple[int, int]  # (width, height)


class Detector(Protocol):

  def detect(self, frame_rgb: np.ndarray) -> list[tuple[np.ndarray, float]]:
    """Boxes (x0, y0, x1, y1) in the given frame's pixels, with scores."""


class MTCNNDetector:
  """MTCNN from the `mtcnn` package; the model loads on first use."""

  def __init__(self, min_face_size: int = 24, min_confidence: float = 0.9):
    self.min_face_size = min_face_size
    self.min_confidence = min_confidence
    self._mtcnn = None

  def detect(self, frame_rgb: np.ndarray) -> list[tuple[np.ndarray, float]]:
    if self._mtcnn is None:
      from mtcnn import MTCNN  # Lazy: loading the networks costs seconds.

      self._mtcnn = MTCNN()
    # The package's own image pyramid (its default minimum face of 20 px); mtcnn 1.0 misses
    # faces with some other min_face_size values, so small boxes are filtered here instead.
    faces = self._mtcnn.detect_faces(np.ascontiguousarray(frame_rgb), box_format="xyxy")
    out = []
    for f in faces:
      box = np.asarray(f["box"], np.float64)
      if f["confidence"] >= self.min_confidence and max(box[2] - box[0], box[3] - box[1]) >= self.min_face_size:
        out.append((box, float(f["confidence"])))
    return out


def probe_video(path: str) -> dict:
  """fps, frame count and size of a video; raises VideoError for anything unusable."""
  if not os.path.exists(path):
    raise VideoError(path, "file not found")
  if os.path.isdir(path):
    raise VideoError(path, "is a directory, not a video")
  if os.path.getsize(path) == 0:
    raise VideoError(path, "empty (zero-byte) file")
  cap = cv2.VideoCapture(path)
  try:
    if not cap.isOpened():
      raise VideoError(path, "not a readable video (OpenCV cannot open it: corrupt, truncated or not a video)")
    fps = cap.get(cv2.CAP_PROP_FPS)
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    ok, _ = cap.read()
    if not ok:
      raise VideoError(path, "no decodable frames (corrupt or truncated video)")
  finally:
    cap.release()
  if not fps or not np.isfinite(fps) or fps <= 0:
    raise VideoError(path, f"invalid frame rate {fps}")
  return {"fps": float(fps), "num_frames": count, "width": width, "height": height}


def read_frames(path: str, start: float | None = None, end: float | None = None) -> Iterator[tuple[float, np.ndarray]]:
  """(timestamp, RGB frame) of every decoded frame with start <= t < end (seconds)."""
  info = probe_video(path)
  fps = info["fps"]
  duration = info["num_frames"] / fps if info["num_frames"] > 0 else None
  if start is not None and end is not None and end <= start:
    raise VideoError(path, f"end {end} <= start {start}")
  if start is not None and duration is not None and start >= duration:
    raise VideoError(path, f"start {start:.3f} s is past the end of the video ({duration:.3f} s)")
  cap = cv2.VideoCapture(path)
  try:
    index = 0
    if start:
      index = int(np.ceil(start * fps - 1e-6))
      cap.set(cv2.CAP_PROP_POS_FRAMES, index)
    while True:
      ok, frame = cap.read()
      if not ok:
        break
      t = index / fps
      if end is not None and t >= end - 1e-9:
        break
      yield t, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
      index += 1
  finally:
    cap.release()


def crop_face(frame_rgb: np.ndarray, box, crop_size: int = 96, margin: float = 0.1) -> np.ndarray:
  """Square crop around the box centre, padded with black outside the frame, resized."""
  x0, y0, x1, y1 = [float(v) for v in box]
  side = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
  cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
  left, top = int(round(cx - side / 2)), int(round(cy - side / 2))
  size = max(1, int(round(side)))
  h, w = frame_rgb.shape[:2]
  pad = max(0, -left, -top, left + size - w, top + size - h)
  src = frame_rgb if pad == 0 else cv2.copyMakeBorder(frame_rgb, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
  patch = src[top + pad:top + pad + size, left + pad:left + pad + size]
  interp = cv2.INTER_AREA if size > crop_size else cv2.INTER_LINEAR
  return cv2.resize(patch, (crop_size, crop_size), interpolation=interp)


def box_iou(a, b) -> float:
  """Intersection over union of two (x0, y0, x1, y1) boxes."""
  ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
  iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
  inter = ix * iy
  union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
  return inter / union if union > 0 else 0.0


class FaceTracker:
  """Streaming detection + tracking of one target face; constant memory per frame."""

  def __init__(self, config: FaceConfig = FaceConfig(), detector: Detector | None = None):
    self.config = config
    self.detector = detector or MTCNNDetector(max(4, int(config.min_face_size * config.detection_scale)),
                                              config.min_confidence)
    self.reset()

  def reset(self):
    self.box = None  # current target box (float [4]) or None
    self.frame_index = 0
    self.hold = 0  # frames held since the last failed detection
    self._prev_gray = None

  def _detect(self, frame):
    s = self.config.detection_scale
    small = frame if s == 1.0 else cv2.resize(frame, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    return [(np.asarray(b, np.float64) / s, score) for b, score in self.detector.detect(small)]

  def _choose(self, detections):
    if not detections:
      return None
    if self.box is None:
      return max(detections, key=lambda d: (d[1], (d[0][2] - d[0][0]) * (d[0][3] - d[0][1])))[0]
    size = max(self.box[2] - self.box[0], self.box[3] - self.box[1])
    centre = (self.box[:2] + self.box[2:]) / 2
    best, best_cost = None, np.inf
    for b, _ in detections:
      d_size = max(b[2] - b[0], b[3] - b[1])
      jump = np.linalg.norm((b[:2] + b[2:]) / 2 - centre) / size
      ratio = max(d_size, size) / max(min(d_size, size), 1e-6)
      if jump <= self.config.max_center_jump and ratio <= self.config.max_size_ratio:
        cost = jump + np.log(ratio)
        if cost < best_cost:
          best, best_cost = b, cost
    return best

  def _follow(self, gray):
    """Moves the box by the median optical flow of corner points inside it."""
    if self._prev_gray is None or self.box is None:
      return
    x0, y0, x1, y1 = np.clip(self.box, 0, [gray.shape[1], gray.shape[0]] * 2).astype(int)
    if x1 - x0 < 4 or y1 - y0 < 4:
      return
    mask = np.zeros_like(gray)
    mask[y0:y1, x0:x1] = 255
    points = cv2.goodFeaturesToTrack(self._prev_gray, 40, 0.01, 3, mask=mask)
    if points is None or len(points) < 4:
      return
    moved, status, _ = cv2.calcOpticalFlowPyrLK(self._prev_gray, gray, points, None, winSize=(15, 15), maxLevel=2)
    good = status.reshape(-1) == 1
    if good.sum() >= 4:
      shift = np.median((moved - points).reshape(-1, 2)[good], axis=0)
      self.box = self.box + np.array([shift[0], shift[1], shift[0], shift[1]])

  def update(self, frame_rgb: np.ndarray) -> tuple[bool, bool, np.ndarray, np.ndarray]:
    """Processes one frame: (face_found, detected, box or NaN [4], crop uint8 [S, S, 3])."""
    c = self.config
    gray = cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2GRAY)
    lost = self.box is None or self.hold > 0
    detected = False
    if lost or self.frame_index % c.detect_every == 0:
      target = self._choose(self._detect(frame_rgb))
      if target is not None:
        self.box, self.hold, detected = target, 0, True
      elif self.box is not None:
        self.hold += 1
        self._follow(gray)
        if self.hold > c.max_hold_frames:
          self.box = None
    else:
      self._follow(gray)
    self._prev_gray = gray
    self.frame_index += 1
    if self.box is None:
      return False, False, np.full(4, np.nan, np.float32), np.zeros((c.crop_size, c.crop_size, 3), np.uint8)
    crop = crop_face(frame_rgb, self.box, c.crop_size, c.margin)
    return True, detected, self.box.astype(np.float32), crop


def process_video(path: str, config: FaceConfig = FaceConfig(), detector: Detector | None = None,
                  start: float | None = None, end: float | None = None, progress: bool = False) -> FaceTrack:
  """Detects, tracks and crops the target face in every frame of [start, end)."""
  info = probe_video(path)
  tracker = FaceTracker(config, detector)
  crops, found, det, boxes, times = [], [], [], [], []
  frames = read_frames(path, start, end)
  if progress:
    from tqdm import tqdm

    frames = tqdm(frames, desc=os.path.basename(path), unit="frame", leave=False)
  for t, frame in frames:
    f, d, b, crop = tracker.update(frame)
    found.append(f)
    det.append(d)
    boxes.append(b)
    crops.append(crop)
    times.append(t)
  if not crops:
    raise VideoError(path, f"no frames between {start} and {end} s")
  return FaceTrack(crops=np.stack(crops), face_found=np.array(found), detected=np.array(det),
                   boxes=np.stack(boxes).astype(np.float32), timestamps=np.array(times), fps=info["fps"],
                   frame_size=(info["width"], info["height"]))
