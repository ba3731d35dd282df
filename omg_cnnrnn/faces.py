"""The face pipeline: read a video, detect and track ONE target face, crop it to 96x96.

Used by data preparation (`data_prep`) and by video prediction alike; there is no other copy.

- Reading: `probe_video` / `read_frames` (OpenCV's FFmpeg backend). Every decoded frame of
  `[start, end)` is yielded with its timestamp, the decoder's presentation time (so a
  variable-frame-rate video is cut at the right frames; index / fps where the container
  gives no times); anything unusable (missing, empty, not a video, truncated or corrupt,
  no frames, a segment outside the video) raises `VideoError`, which names the file and
  the reason.
- Detection: MTCNN (the `mtcnn` package ships its weights and runs offline; the paper used
  the DPM detector ffld2, SPEC chooses MTCNN) behind a small `Detector` protocol, its
  networks run as TensorFlow graphs (2-3x faster than the package's eager calls). It runs
  every `detect_every` frames; in between, Lucas-Kanade optical flow of corner points
  inside the box follows the face (translation and scale, RANSAC-fitted), and a failure of
  the flow triggers the detector at once. While a face is tracked the detector looks at a
  window around it, resized to a fixed face size (`roi_detection`); the whole frame,
  downscaled by `detection_scale`, is searched when no face is tracked or the window
  misses, and every `fine_search_every`-th search is at full resolution for small faces.
- Tracking: a track starts on the face `initial_target` names (default the largest);
  afterwards a detection is accepted only if it continues the track in position and size,
  so a second, larger face elsewhere does not steal it. A face elsewhere that looks like
  the target (`reid_similarity`) is taken at once (a cut); after a loss the new track
  prefers the face most like the last target.
- Verification: every frame, the tracked box is compared with the target's appearance
  (`verify_similarity`); a box that no longer shows it (the face walked out, was cut
  away or covered, and the flow follows the background) makes the detector run at once,
  over the whole frame at full resolution if the window misses.
- Misses: when the detector runs and does not find the target, a box that still looks
  like the target is held (followed by the flow where it is reliable) for
  `max_hold_frames` frames, then frames are marked missing: face_found False, box NaN, a
  black crop; a box that no longer looks like the target, or has left the picture, is
  dropped at once, so the first frame without the face is marked. Frames are never
  dropped, so the timeline stays aligned with per-frame labels.
- Crops: a square around the box centre, side (1 + 2 margin) x the box's larger side,
  padded with black outside the frame, resized to `crop_size`.

`FaceTracker` is streaming (constant memory), `iter_faces` streams a whole video through it,
and `process_video` collects the result into a `FaceTrack`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
from typing import Iterator, NamedTuple, Protocol

# FFmpeg's own decoder warnings (hundreds of lines for a corrupt file) would drown the one
# clear VideoError; this must be set before OpenCV opens its first capture.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

INITIAL_TARGETS = ("largest", "left", "right", "center")

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv")

# MTCNN's image pyramid starts at a 20-pixel face by default (see MTCNNDetector).
_MTCNN_DEFAULT_MIN_FACE = 20


class VideoError(Exception):
  """A video that cannot be used; `str()` names the file and the reason."""

  def __init__(self, path: str, reason: str):
    super().__init__(f"{path}: {reason}")
    self.path = str(path)
    self.reason = reason


@dataclasses.dataclass(frozen=True)
class FaceConfig:
  """Detection, tracking and cropping settings.

  The defaults are the speed/accuracy point chosen with `data_prep/bench_faces.py`: on
  its 640x360 video, two shared CPU cores, about 100 frames/s end to end with mean box IoU
  0.93 against per-frame full-resolution detection (which runs at about 20 frames/s) and
  every frame with a face found. `FULL_DETECTION` is that reference.
  """

  # Paper Sec. III-C: face crops resized to 96x96x3.
  crop_size: int = 96
  # Fraction of the box's larger side added on each side before cropping.
  margin: float = 0.1
  # Frames the last box is held after failed detections before frames count as missing.
  max_hold_frames: int = 5
  # Run the detector every k frames and follow the face with optical flow in between.
  detect_every: int = 5
  # Downscale factor of the frame given to the detector when it searches the whole frame
  # (1.0 = full resolution). MTCNN's smallest face is 20 px in the image it sees, i.e.
  # 20 / detection_scale source pixels; see fine_search_every for smaller faces.
  detection_scale: float = 0.5
  # While a face is tracked, detect it in a window around its box only: a square of
  # roi_context x the face's size, resized so the face is about roi_face_size px. Cheap
  # whatever the resolution, as sharp for small faces as for large ones, and blind to
  # other faces; when it misses, the whole frame is searched in the same frame.
  roi_detection: bool = True
  roi_context: float = 3.0
  roi_face_size: int = 48
  # While no face is tracked, run the detector every k frames: faster through long
  # stretches without a face, but a returning face can be found up to k - 1 frames late.
  search_every: int = 1
  # Every k-th search of the whole frame (the first included) runs at the resolution where
  # min_face_size is still 20 px (full resolution for the default), so faces too small
  # for detection_scale are found too, at most k - 1 frames late (0: never).
  fine_search_every: int = 2
  # Smallest face accepted, in source pixels.
  min_face_size: int = 24
  # Detections below this confidence are ignored.
  min_confidence: float = 0.9
  # A detection continues the track if its centre moved less than this fraction of the
  # track's box size and its size changed by less than this factor.
  max_center_jump: float = 0.6
  max_size_ratio: float = 1.8
  # Which face a new track starts on: "largest", "left", "right" or "center" (two-person
  # videos, e.g. Aff-Wild2's <video>_left / <video>_right annotations).
  initial_target: str = "largest"
  # A detection elsewhere whose appearance matches the target this closely (correlation of
  # normalised 16x16 grey patches; measured: the same face across 0.3-0.8x scale and
  # 0.7-1.2x brightness >= 0.75, mean 0.92; two different people <= 0.53) is the target
  # after a jump (a cut), taken at once instead of after the hold. Above 1 disables it.
  reid_similarity: float = 0.8
  # Every frame, the tracked box is checked against the target's appearance (the same
  # correlation): below this the face has left the box (walked out, cut away, covered),
  # the detector runs at once, and if it does not find the target the frame is marked
  # missing at once instead of being held. -1 disables the check.
  verify_similarity: float = 0.5
  # Optical flow: the box follows the points only if at least this many survive the
  # forward-backward check and the RANSAC fit; otherwise the detector runs at once.
  min_flow_points: int = 8
  # Largest change of box size per frame the flow may report before it counts as failed.
  max_flow_scale_change: float = 0.2

  def __post_init__(self):
    checks = {
        "crop_size": self.crop_size >= 1, "margin": self.margin >= 0,
        "max_hold_frames": self.max_hold_frames >= 0, "detect_every": self.detect_every >= 1,
        "detection_scale": 0 < self.detection_scale <= 1, "search_every": self.search_every >= 1,
        "roi_context": self.roi_context >= 1.5, "roi_face_size": self.roi_face_size >= 24,
        "fine_search_every": self.fine_search_every >= 0,
        "min_face_size": self.min_face_size >= 1, "min_confidence": 0 <= self.min_confidence <= 1,
        "max_center_jump": self.max_center_jump > 0, "max_size_ratio": self.max_size_ratio >= 1,
        "initial_target": self.initial_target in INITIAL_TARGETS,
        "verify_similarity": -1 <= self.verify_similarity <= 1,
        "min_flow_points": self.min_flow_points >= 3, "max_flow_scale_change": self.max_flow_scale_change > 0,
    }
    bad = [f"{k}={getattr(self, k)!r}" for k, ok in checks.items() if not ok]
    if bad:
      raise ValueError(f"invalid FaceConfig: {', '.join(bad)}")


# The reference: the detector on every full-resolution frame, no optical flow.
FULL_DETECTION = FaceConfig(detect_every=1, detection_scale=1.0, roi_detection=False, fine_search_every=0)
# Faster still where frames are large or faces stay put: the detector every 15 frames,
# whole-frame searches at a third of the resolution (data_prep/bench_faces.py).
FAST_DETECTION = FaceConfig(detect_every=15, detection_scale=0.33)


@dataclasses.dataclass
class FaceTrack:
  """Per-frame result of a whole video (or of a [start, end) segment of it)."""

  crops: np.ndarray  # uint8 [T, S, S, 3] RGB; zeros where no face
  face_found: np.ndarray  # bool [T]: detected, followed or held
  detected: np.ndarray  # bool [T]: the detector itself fired on the target
  boxes: np.ndarray  # float32 [T, 4] x0, y0, x1, y1 in source pixels; NaN where no face
  timestamps: np.ndarray  # float64 [T] seconds from the start of the file
  fps: float
  frame_size: tuple[int, int]  # (width, height)


class FaceFrame(NamedTuple):
  """One frame's result from `iter_faces`."""

  timestamp: float
  face_found: bool
  detected: bool
  box: np.ndarray  # float32 [4], NaN where no face
  crop: np.ndarray  # uint8 [S, S, 3]


class Detector(Protocol):
  """What the tracker needs from a face detector."""

  def detect(self, frame_rgb: np.ndarray) -> list[tuple[np.ndarray, float]]:
    """Returns boxes (x0, y0, x1, y1) in the given frame's pixels, with scores."""


# ------------------------------------------------------------------------------- detection
class MTCNNDetector:
  """MTCNN from the `mtcnn` package; the networks load on first use, once per process.

  mtcnn 1.0 sizes its image pyramid for a 20-pixel minimum face whatever `min_face_size`
  says, so larger values make it miss every face; here a larger minimum face shrinks the
  image instead (same search, and faster), a smaller one is passed through.
  """

  _lock = threading.Lock()
  _shared = None  # the loaded mtcnn.MTCNN, shared by every instance of this process

  def __init__(self, min_face_size: int = _MTCNN_DEFAULT_MIN_FACE, min_confidence: float = 0.9):
    self.min_face_size = int(min_face_size)
    self.min_confidence = float(min_confidence)

  @classmethod
  def _model(cls):
    with cls._lock:
      if cls._shared is None:
        from mtcnn import MTCNN  # Lazy: importing TensorFlow and loading the nets takes seconds.

        model = MTCNN()
        _compile_stages(model)
        cls._shared = model
    return cls._shared

  def detect(self, frame_rgb: np.ndarray) -> list[tuple[np.ndarray, float]]:
    """Faces in an RGB uint8 frame: [(box x0, y0, x1, y1 in frame pixels, confidence)]."""
    image = np.ascontiguousarray(frame_rgb)
    shrink = 1.0
    kwargs = {}
    if self.min_face_size > _MTCNN_DEFAULT_MIN_FACE:
      shrink = _MTCNN_DEFAULT_MIN_FACE / self.min_face_size
      h, w = image.shape[:2]
      size = (max(1, round(w * shrink)), max(1, round(h * shrink)))
      image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    else:
      kwargs["min_face_size"] = self.min_face_size
    if min(image.shape[:2]) < 12:  # below one MTCNN window: nothing to find
      return []
    faces = self._model().detect_faces(image, box_format="xyxy", **kwargs)
    out = []
    for face in faces:
      box = np.asarray(face["box"], np.float64) / shrink
      # The pyramid's smallest face is approximate; the size asked for is not.
      if face["confidence"] >= self.min_confidence and _size(box) >= self.min_face_size:
        out.append((box, float(face["confidence"])))
    return out


def default_detector(config: FaceConfig) -> MTCNNDetector:
  """The MTCNN detector for a config (cheap: the networks are shared by the process).

  It sees frames already downscaled by `config.detection_scale` (and windows resized so
  the face is about `roi_face_size` px). Faces below 20 px there are out of MTCNN's reach
  at the default pyramid; asking it for smaller ones would upsample the image and undo
  the downscaling, so the minimum is never below 20. Pass this (or nothing) to
  `process_video` rather than a hand-made MTCNNDetector.
  """
  min_face = max(_MTCNN_DEFAULT_MIN_FACE, int(config.min_face_size * config.detection_scale))
  return MTCNNDetector(min_face, config.min_confidence)


def _compile_stages(model) -> None:
  """Runs MTCNN's three networks as TensorFlow graphs instead of eager Keras calls.

  The package calls each Keras model eagerly, once per pyramid scale; the per-call
  overhead, not the arithmetic, dominates on small frames (measured: 640x360 120 -> 50 ms,
  213x120 51 -> 16 ms, identical boxes). One input signature with free spatial and batch
  dimensions gives one graph per network. Should a later mtcnn lay out its stages
  differently, the eager models stay in place.
  """
  import tensorflow as tf

  for stage in getattr(model, "stages", []):
    net = getattr(stage, "_model", None)
    if net is None or isinstance(net, _GraphNet):
      continue
    stage._model = _GraphNet(tf.function(net, input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)]))


class _GraphNet:
  """A compiled MTCNN network that refuses an empty batch the way the package expects.

  mtcnn signals "no face" by letting the next network fail on an empty batch of
  proposals (InvalidArgumentError, caught in `detect_faces`); inside a graph that failure
  also prints a TensorFlow warning per call, so the empty batch is refused here instead.
  """

  def __init__(self, function):
    self._function = function

  def __call__(self, images):
    if images.shape[0] == 0:
      import tensorflow as tf

      raise tf.errors.InvalidArgumentError(None, None, "no face proposals")
    return self._function(images)


# -------------------------------------------------------------------------------- video I/O
def _describe_unopenable(path: str) -> str:
  with open(path, "rb") as f:
    head = f.read(512)
  if b"\0" not in head:
    try:
      head.decode("utf-8")
      return "not a video: the file holds text"
    except UnicodeDecodeError:
      pass
  return "not a readable video (OpenCV/FFmpeg cannot open it: corrupt, truncated or not a video)"


def probe_video(path: str) -> dict:
  """Frame rate, frame count and size of a video.

  Args:
    path: the video file.

  Returns:
    dict with `fps` (float), `num_frames` (int, from the container; 0 where it says
    nothing), `width`, `height` and `duration` (seconds; None where unknown).

  Raises:
    VideoError: the file is missing, empty, a directory, not a video, has no decodable
      frame or no valid frame rate.
  """
  path = os.fspath(path)
  if not os.path.exists(path):
    raise VideoError(path, "file not found")
  if os.path.isdir(path):
    raise VideoError(path, "is a directory, not a video")
  if os.path.getsize(path) == 0:
    raise VideoError(path, "empty (zero-byte) file")
  cap = cv2.VideoCapture(path)
  try:
    if not cap.isOpened():
      raise VideoError(path, _describe_unopenable(path))
    fps = cap.get(cv2.CAP_PROP_FPS)
    count = max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT)))
    ok, frame = cap.read()
    if not ok or frame is None:
      raise VideoError(path, "no decodable frames (corrupt or truncated video)")
    # The decoded frame's size, not the stream header's: they differ for videos with a
    # rotation tag, which OpenCV applies, and boxes are in decoded pixels.
    height, width = frame.shape[:2]
  finally:
    cap.release()
  if not fps or not math.isfinite(fps) or fps <= 0:
    raise VideoError(path, f"invalid frame rate {fps}")
  return {"fps": float(fps), "num_frames": count, "width": width, "height": height,
          "duration": count / fps if count else None}


def _frame_range(path: str, info: dict, start: float | None, end: float | None) -> tuple[int, int | None]:
  """First frame index and the index past the last (None: to the end) of [start, end)."""
  fps, duration = info["fps"], info["duration"]
  if start is not None and (not math.isfinite(start) or start < 0):
    raise VideoError(path, f"start {start} s is outside the video (negative or not a number)")
  if end is not None and not math.isfinite(end):
    raise VideoError(path, f"end {end} s is not a number")
  if start is not None and end is not None and end <= start:
    raise VideoError(path, f"end {end} <= start {start}")
  if duration is not None:
    if start is not None and start >= duration:
      raise VideoError(path, f"start {start:.3f} s is past the end of the video ({duration:.3f} s)")
    # Two frame periods of slack: cut points are rounded to frames and containers' stated
    # durations are rounded too.
    if end is not None and end > duration + 2.0 / fps + 1e-6:
      raise VideoError(path, f"end {end:.3f} s is past the end of the video ({duration:.3f} s)")
  return (time_to_frame(start, fps) if start else 0), (time_to_frame(end, fps) if end is not None else None)


def time_to_frame(seconds: float, fps: float) -> int:
  """The first frame at or after `seconds`: where a cut at that time starts or stops.

  For a constant-frame-rate video, where frame i is shown at i / fps; `read_frames` cuts
  by each frame's own time with the same rule (`at_or_after`), which is this for those.
  """
  return int(math.ceil(seconds * fps - 1e-6))


def at_or_after(timestamp: float, seconds: float, fps: float) -> bool:
  """Whether a frame shown at `timestamp` lies at or after a cut at `seconds`.

  The rule of `time_to_frame` (a millionth of a frame period of slack for the rounding of
  cut times), applied to the frame's time instead of its index.
  """
  return timestamp * fps >= seconds * fps - 1e-6


# Decoded timestamps within this of the nominal frame grid (index / fps) are taken as on
# it: containers such as Matroska store times in whole milliseconds, and a constant-rate
# video's frames should cut exactly as `time_to_frame` says.
_GRID_SNAP_S = 0.0005
# `read_frames` seeks this far before a cut's start and decodes forward: seeking by time
# is by an estimated frame number, which a variable frame rate makes approximate.
_SEEK_MARGIN_S = 1.0


def _frame_time(cap, previous: float | None, fps: float) -> float:
  """The decoder's presentation time of the frame just grabbed, in seconds.

  `CAP_PROP_POS_MSEC` where the container gives increasing times (so a variable-frame-rate
  video keeps its real timing); otherwise one nominal period after the previous frame.
  """
  t = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
  if not math.isfinite(t) or t < 0 or (previous is not None and t <= previous):
    return 0.0 if previous is None else previous + 1.0 / fps
  grid = round(t * fps) / fps
  return grid if abs(t - grid) <= _GRID_SNAP_S else t


def read_frames(path: str, start: float | None = None, end: float | None = None) -> Iterator[tuple[float, np.ndarray]]:
  """Decodes the frames of `[start, end)`.

  Frames are placed in time by the decoder's presentation times (`CAP_PROP_POS_MSEC`), not
  by index / fps, so a variable-frame-rate video is cut at the frames shown at `start` and
  `end`; a container without usable times falls back to index / fps. For a constant rate
  the two agree (times within half a millisecond of the frame grid are snapped to it).

  Args:
    path: the video file.
    start: first second to read (None: the beginning).
    end: the second where reading stops, exclusive (None: the end).

  Yields:
    (timestamp in seconds from the start of the file, RGB uint8 frame).

  Raises:
    VideoError: see `probe_video`; also a segment outside the video, `end <= start`, a
      segment without frames, and decoding that stops well before the frame count the
      container states (a truncated or corrupt file), the last after the decoded frames.
  """
  path = os.fspath(path)
  info = probe_video(path)
  fps = info["fps"]
  first, stop = _frame_range(path, info, start, end)
  # What the container promises; some estimate it from the duration, so frames beyond it
  # are still read, and only a clear shortfall counts as truncation.
  promised = info["num_frames"] if stop is None else min(stop, info["num_frames"] or stop)
  lo = start or 0.0
  cap = cv2.VideoCapture(path)
  index = 0  # frames grabbed since the start of the file; None after a seek
  previous = None  # time of the last grabbed frame
  pending = False  # a frame grabbed while checking the seek, not yet used
  if lo > _SEEK_MARGIN_S and cap.set(cv2.CAP_PROP_POS_MSEC, (lo - _SEEK_MARGIN_S) * 1000.0):
    # FFmpeg seeks to the key frame before and decodes forward. The first frame grabbed
    # must lie before `start` (else frames may have been skipped); if not, the file is
    # decoded from its beginning instead.
    ok = cap.grab()
    t = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0 if ok else float("nan")
    if ok and t > 0 and not at_or_after(t, lo, fps):
      previous, pending, index = _frame_time(cap, None, fps), True, None
    else:
      cap.release()
      cap = cv2.VideoCapture(path)
  yielded, stopped = 0, False
  try:
    while True:
      if pending:
        pending = False
      elif cap.grab():
        previous = _frame_time(cap, previous, fps)
        index = None if index is None else index + 1
      else:
        break
      t = previous
      if not at_or_after(t, lo, fps):
        continue  # before the cut: decoded (the codec needs it), not converted
      if end is not None and at_or_after(t, end, fps):
        stopped = True
        break
      ok, frame = cap.retrieve()
      if not ok or frame is None:
        break
      yielded += 1
      yield t, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
  finally:
    cap.release()
  if not yielded:
    raise VideoError(path, f"no decodable frames between {start} and {end} s")
  # Frames decoded from the start of the file (estimated on the nominal grid after a seek).
  reached = index if index is not None else int(round(previous * fps)) + 1
  if not stopped and promised and reached < promised - 1 - 0.01 * (promised - first):
    raise VideoError(path, f"decoding stopped at frame {reached} of {promised} (truncated or corrupt video)")


# ------------------------------------------------------------------------------------ crops
def crop_face(frame_rgb: np.ndarray, box, crop_size: int = 96, margin: float = 0.1) -> np.ndarray:
  """Square crop around a face box, black outside the frame, resized.

  Args:
    frame_rgb: uint8 [H, W, 3] frame.
    box: x0, y0, x1, y1 in frame pixels (may reach outside the frame).
    crop_size: output side in pixels.
    margin: fraction of the box's larger side added on each side.

  Returns:
    uint8 [crop_size, crop_size, 3].
  """
  left, top, size = _square(box, margin)
  patch = _cut(frame_rgb, left, top, size)
  if size == crop_size:
    return np.ascontiguousarray(patch)
  interp = cv2.INTER_AREA if size > crop_size else cv2.INTER_LINEAR
  return cv2.resize(patch, (crop_size, crop_size), interpolation=interp)


def _square(box, margin: float) -> tuple[int, int, int]:
  """(left, top, side) of the square around a box's centre, (1 + 2 margin) x its larger side."""
  x0, y0, x1, y1 = (float(v) for v in box)
  size = max(1, int(round(max(x1 - x0, y1 - y0) * (1 + 2 * margin))))
  return int(round((x0 + x1) / 2 - size / 2)), int(round((y0 + y1) / 2 - size / 2)), size


def _cut(frame: np.ndarray, left: int, top: int, size: int) -> np.ndarray:
  """The frame's square [top:top+size, left:left+size], black where it lies outside."""
  h, w = frame.shape[:2]
  if left >= 0 and top >= 0 and left + size <= w and top + size <= h:
    return frame[top:top + size, left:left + size]
  # Copy only the part inside the frame into a black square: cheaper than padding the
  # whole frame, and the face stays centred however far the box reaches out.
  patch = np.zeros((size, size) + frame.shape[2:], frame.dtype)
  sx0, sy0, sx1, sy1 = max(left, 0), max(top, 0), min(left + size, w), min(top + size, h)
  if sx1 > sx0 and sy1 > sy0:
    patch[sy0 - top:sy1 - top, sx0 - left:sx1 - left] = frame[sy0:sy1, sx0:sx1]
  return patch


def box_iou(a, b) -> float:
  """Intersection over union of two (x0, y0, x1, y1) boxes; 0 where either is NaN."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if np.isnan(a).any() or np.isnan(b).any():
    return 0.0
  ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
  iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
  inter = ix * iy
  union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
  return float(inter / union) if union > 0 else 0.0


# --------------------------------------------------------------------------------- tracking
def _size(box) -> float:
  return float(max(box[2] - box[0], box[3] - box[1]))


def _signature(gray: np.ndarray, box) -> np.ndarray | None:
  """A 16x16 normalised grey patch of the face: enough to tell two faces apart on re-entry."""
  x0, y0, x1, y1 = (int(round(v)) for v in box)
  h, w = gray.shape
  x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
  if x1 - x0 < 4 or y1 - y0 < 4:
    return None
  patch = cv2.resize(gray[y0:y1, x0:x1], (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
  patch -= patch.mean()
  norm = np.linalg.norm(patch)
  return patch / norm if norm > 1e-6 else None


class FaceTracker:
  """Streaming detection and tracking of one target face; constant memory.

  Call `update` with consecutive frames of one video; `reset` before another video.
  """

  def __init__(self, config: FaceConfig = FaceConfig(), detector: Detector | None = None):
    self.config = config
    self.detector = detector if detector is not None else default_detector(config)
    self.reset()

  def reset(self) -> None:
    """Forgets the target (start of a new video)."""
    self.box = None  # the target's box, float64 [4], or None while no face is tracked
    self.detected = False  # whether the detector fired on the target in the last frame
    self.misses = 0  # consecutive detector runs without the target
    self.detector_runs = 0
    self._since_detect = 1 << 30  # frames since the detector last ran; the first frame searches
    self._searches = 0  # whole-frame searches while no face was tracked
    self._prev_gray = None
    self._signature = None  # appearance of the target when last detected

  # Detection ------------------------------------------------------------------------------
  def _detect(self, frame: np.ndarray, scale: float | None = None) -> list[tuple[np.ndarray, float]]:
    """Detections in the whole frame, seen at `scale` (default detection_scale)."""
    scale = self.config.detection_scale if scale is None else scale
    h, w = frame.shape[:2]
    if scale != 1.0:
      image = cv2.resize(frame, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
      sx, sy = image.shape[1] / w, image.shape[0] / h
    else:
      image, sx, sy = frame, 1.0, 1.0
    return self._run_detector(image, [sx, sy, sx, sy], [0, 0, 0, 0])

  def _detect_roi(self, frame: np.ndarray) -> list[tuple[np.ndarray, float]]:
    """Detections in a window around the current box, resized to a fixed face size."""
    c = self.config
    left, top, size = _square(self.box, (c.roi_context - 1) / 2)
    out = max(24, int(round(c.roi_context * c.roi_face_size)))
    window = _cut(frame, left, top, size)
    window = cv2.resize(window, (out, out), interpolation=cv2.INTER_AREA if size > out else cv2.INTER_LINEAR)
    f = out / size
    return self._run_detector(window, [f, f, f, f], [left, top, left, top])

  def _run_detector(self, image, scale, offset) -> list[tuple[np.ndarray, float]]:
    """Runs the detector; boxes back in source pixels, filtered by confidence and size."""
    self.detector_runs += 1
    c = self.config
    out = []
    for box, score in self.detector.detect(image):
      box = np.asarray(box, np.float64) / scale + offset
      if score >= c.min_confidence and _size(box) >= c.min_face_size and box[2] > box[0] and box[3] > box[1]:
        out.append((box, float(score)))
    return out

  def _fine_scale(self) -> float:
    """The coarsest frame scale at which a face of min_face_size is still 20 px."""
    c = self.config
    return min(1.0, max(c.detection_scale, _MTCNN_DEFAULT_MIN_FACE / c.min_face_size))

  def _continuation(self, detections):
    """The detection that continues the current track, or None."""
    c = self.config
    size = _size(self.box)
    centre = (self.box[:2] + self.box[2:]) / 2
    best, best_cost = None, np.inf
    for box, _ in detections:
      jump = float(np.linalg.norm((box[:2] + box[2:]) / 2 - centre)) / size
      ratio = max(_size(box), size) / max(min(_size(box), size), 1e-6)
      if jump <= c.max_center_jump and ratio <= c.max_size_ratio:
        cost = jump + math.log(ratio) + (1.0 - box_iou(box, self.box))
        if cost < best_cost:
          best, best_cost = box, cost
    return best

  def _similarity(self, gray, box) -> float:
    sig = _signature(gray, box)
    return -1.0 if sig is None or self._signature is None else float(sig @ self._signature)

  def _looks_like_target(self, gray, box) -> bool:
    """Whether the box's content matches the target's appearance (True before it is known)."""
    if self._signature is None or self.config.verify_similarity <= -1:
      return True
    return self._similarity(gray, box) >= self.config.verify_similarity

  def _reidentified(self, detections, gray):
    """A detection away from the track that looks like the target (it jumped), or None."""
    if self._signature is None or not detections:
      return None
    similarity = [self._similarity(gray, box) for box, _ in detections]
    best = int(np.argmax(similarity))
    return detections[best][0] if similarity[best] >= self.config.reid_similarity else None

  def _new_target(self, detections, gray):
    """Starts a track: a face like the last target, else the one `initial_target` names."""
    if not detections:
      return None
    again = self._reidentified(detections, gray)
    if again is not None:
      return again
    rule = self.config.initial_target
    width = gray.shape[1]

    def key(d):
      box, score = d
      cx = (box[0] + box[2]) / 2
      # Area breaks ties between faces on the same side; confidence within equal areas.
      area = box_area(box) * score
      if rule == "left":
        return (-round(cx / width * 4), area)
      if rule == "right":
        return (round(cx / width * 4), area)
      if rule == "center":
        return (-round(abs(cx - width / 2) / width * 4), area)
      return (area,)

    return max(detections, key=key)[0]

  def _remember(self, gray, box) -> None:
    """Keeps a running appearance of the target, robust to one odd frame."""
    sig = _signature(gray, box)
    if sig is None:
      return
    if self._signature is not None:
      sig = 0.7 * self._signature + 0.3 * sig
      sig /= max(np.linalg.norm(sig), 1e-6)
    self._signature = sig

  # Following ------------------------------------------------------------------------------
  def _follow(self, prev: np.ndarray, gray: np.ndarray):
    """The box moved with the optical flow of corner points inside it; None if unreliable."""
    c = self.config
    h, w = gray.shape
    box = self.box
    size = _size(box)
    # Work on a window around the box only: the face moves less than its size per frame.
    wx0, wy0 = int(max(0, box[0] - size)), int(max(0, box[1] - size))
    wx1, wy1 = int(min(w, box[2] + size)), int(min(h, box[3] + size))
    bx0, by0 = int(max(box[0], 0)) - wx0, int(max(box[1], 0)) - wy0
    bx1, by1 = int(min(box[2], w)) - wx0, int(min(box[3], h)) - wy0
    if bx1 - bx0 < 8 or by1 - by0 < 8:
      return None
    prev_win, cur_win = prev[wy0:wy1, wx0:wx1], gray[wy0:wy1, wx0:wx1]
    mask = np.zeros_like(prev_win)
    mask[by0:by1, bx0:bx1] = 255
    spacing = max(3, int(size / 12))
    points = cv2.goodFeaturesToTrack(prev_win, 60, 0.01, spacing, mask=mask)
    if points is None or len(points) < c.min_flow_points:
      return None
    win = (15, 15)
    moved, st1, _ = cv2.calcOpticalFlowPyrLK(prev_win, cur_win, points, None, winSize=win, maxLevel=3)
    back, st2, _ = cv2.calcOpticalFlowPyrLK(cur_win, prev_win, moved, None, winSize=win, maxLevel=3)
    fb_error = np.linalg.norm((back - points).reshape(-1, 2), axis=1)
    good = (st1.ravel() == 1) & (st2.ravel() == 1) & (fb_error < 1.0)
    if good.sum() < c.min_flow_points:
      return None
    src, dst = points.reshape(-1, 2)[good], moved.reshape(-1, 2)[good]
    matrix, inliers = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=1.5)
    if matrix is None or inliers.sum() < c.min_flow_points:
      return None
    scale = math.hypot(matrix[0, 0], matrix[1, 0])
    if abs(scale - 1.0) > c.max_flow_scale_change:
      return None
    cx, cy = (box[0] + box[2]) / 2 - wx0, (box[1] + box[3]) / 2 - wy0
    ncx, ncy = matrix @ np.array([cx, cy, 1.0])
    half_w, half_h = (box[2] - box[0]) / 2 * scale, (box[3] - box[1]) / 2 * scale
    return np.array([ncx - half_w + wx0, ncy - half_h + wy0, ncx + half_w + wx0, ncy + half_h + wy0])

  # One frame ------------------------------------------------------------------------------
  def update(self, frame_rgb: np.ndarray) -> tuple[bool, np.ndarray, np.ndarray]:
    """Processes the next frame.

    Args:
      frame_rgb: uint8 [H, W, 3] RGB frame.

    Returns:
      (face_found, box float32 [4] x0, y0, x1, y1 or NaN, crop uint8 [S, S, 3], black
      where no face). `self.detected` tells whether the detector itself fired on the target.
    """
    c = self.config
    gray = cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2GRAY)
    prev, self._prev_gray = self._prev_gray, gray
    if prev is not None and prev.shape != gray.shape:
      prev = None
    followed = None
    if self.box is not None and prev is not None:
      followed = self._follow(prev, gray)
      if followed is not None:
        self.box = followed
    self._since_detect += 1
    # Whether the box still shows the target: a face that left leaves the flow following
    # the background, and the box would be held on it until the next detection.
    unlike = self.box is not None and not self._looks_like_target(gray, self.box)
    if self.box is None:
      run = self._since_detect >= c.search_every
    else:
      # Also when the flow fails: the face has likely turned, been covered or left.
      run = self.misses > 0 or self._since_detect >= c.detect_every or followed is None or unlike
    self.detected = False
    if run:
      self._since_detect = 0
      if self.box is None:
        # The first search of a video is a fine one: small faces are found at once.
        fine = c.fine_search_every and self._searches % c.fine_search_every == 0
        self._searches += 1
        target = self._new_target(self._detect(frame_rgb, self._fine_scale() if fine else None), gray)
      else:
        target = self._continuation(self._detect_roi(frame_rgb)) if c.roi_detection else None
        if target is None:
          # Before a box that no longer looks like the target is given up, the whole frame
          # is searched finely: the face may have moved faster than the flow could follow.
          detections = self._detect(frame_rgb, self._fine_scale() if unlike else None)
          target = self._continuation(detections)
          if target is None:
            target = self._reidentified(detections, gray)
      if target is not None:
        self.box, self.misses, self.detected = target, 0, True
        self._remember(gray, target)
      elif self.box is not None:
        self.misses += 1
        # A box mostly outside the picture holds no face: the target walked out.
        h, w = gray.shape
        visible = box_area(np.clip(self.box, 0, [w, h, w, h])) / max(box_area(self.box), 1e-6)
        if self.misses > c.max_hold_frames or visible < 0.5 or unlike:
          self.box, self.misses = None, 0
    if self.box is None:
      return False, np.full(4, np.nan, np.float32), np.zeros((c.crop_size, c.crop_size, 3), np.uint8)
    return True, self.box.astype(np.float32), crop_face(frame_rgb, self.box, c.crop_size, c.margin)


def box_area(box) -> float:
  """Area of an (x0, y0, x1, y1) box."""
  return float(max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1]))


# ---------------------------------------------------------------------------- whole videos
def iter_faces(path: str, config: FaceConfig = FaceConfig(), detector: Detector | None = None,
               start: float | None = None, end: float | None = None) -> Iterator[FaceFrame]:
  """Streams `read_frames` through a `FaceTracker`: one `FaceFrame` per decoded frame.

  Args and errors as in `process_video`; memory stays constant however long the video.
  """
  tracker = FaceTracker(config, detector)
  for t, frame in read_frames(path, start, end):
    found, box, crop = tracker.update(frame)
    yield FaceFrame(t, found, tracker.detected, box, crop)


def process_video(path: str, config: FaceConfig = FaceConfig(), detector: Detector | None = None,
                  start: float | None = None, end: float | None = None, progress: bool = False) -> FaceTrack:
  """Detects, tracks and crops the target face in every frame of `[start, end)`.

  Args:
    path: the video file.
    config: detection, tracking and crop settings.
    detector: a `Detector`; None: MTCNN (shared by every call in this process).
    start: first second (None: the beginning).
    end: the second where processing stops, exclusive (None: the end).
    progress: show a tqdm bar.

  Returns:
    A `FaceTrack` with one entry per decoded frame (never fewer: frames without a face are
    marked, not dropped). It holds every crop (27 KB a frame at 96 px): stream long
    videos with `iter_faces` instead.

  Raises:
    VideoError: the file or the segment cannot be used; names the file and the reason.
  """
  path = os.fspath(path)
  info = probe_video(path)
  frames = iter_faces(path, config, detector, start, end)
  if progress:
    from tqdm import tqdm

    first, stop = _frame_range(path, info, start, end)
    bounds = [b for b in (stop, info["num_frames"]) if b]
    total = min(bounds) - first if bounds else None
    frames = tqdm(frames, desc=os.path.basename(path), unit="frame", total=total, leave=False)
  items = list(frames)
  return FaceTrack(
      crops=np.stack([f.crop for f in items]),
      face_found=np.array([f.face_found for f in items], bool),
      detected=np.array([f.detected for f in items], bool),
      boxes=np.stack([f.box for f in items]).astype(np.float32),
      timestamps=np.array([f.timestamp for f in items], np.float64),
      fps=info["fps"],
      frame_size=(info["width"], info["height"]))
