"""Every face in the picture as its own track, with a stable id (issue 15 item 2).

Built on the face pipeline's public parts (`faces.read_frames`, `faces.default_detector`,
`faces.crop_face`, `faces.box_iou`, `faces.FaceConfig`); `faces.FaceTracker` follows one
target, this follows them all:

- Detection: the detector runs on every frame (the whole frame, downscaled by
  `detection_scale`; faces below `min_face_size` or `min_confidence` are ignored). There is no
  optical flow between detections: with several faces a held box would crop a neighbour.
- Association: each live track predicts its box (constant velocity of its centre), and
  detections are assigned to tracks by the Hungarian method on a cost of position (centre
  distance over the face size, 1 - IoU), size (log ratio) and appearance (a normalised
  16x16 grey patch, kept as a running average); pairs beyond `max_center_jump` (growing with
  the frames a track was missed) or `max_size_ratio` are never matched. When two faces cross,
  the motion and the appearance keep each on its own track.
- Loss and return: a track not detected for `max_hold_frames` frames is lost (its frames have
  no row); a later detection that matches no live track but looks like a lost one
  (`reid_similarity`, the same measure and threshold as the single tracker's) gets the lost
  track's id back, so a person who leaves and returns keeps their id (and, in prediction,
  their GRU state); any other detection starts a new track, ids counting up from 1.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Iterator

import cv2
import numpy as np

from omg_cnnrnn import faces


def appearance(gray: np.ndarray, box) -> np.ndarray | None:
  """A face's look: its box as a 16x16 grey patch, zero-mean and unit-norm (None if tiny)."""
  h, w = gray.shape
  x0, y0 = max(int(round(box[0])), 0), max(int(round(box[1])), 0)
  x1, y1 = min(int(round(box[2])), w), min(int(round(box[3])), h)
  if x1 - x0 < 4 or y1 - y0 < 4:
    return None
  patch = cv2.resize(gray[y0:y1, x0:x1], (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
  patch -= patch.mean()
  norm = float(np.linalg.norm(patch))
  return patch / norm if norm > 1e-6 else None


def _size(box) -> float:
  return float(max(box[2] - box[0], box[3] - box[1]))


def _centre(box) -> np.ndarray:
  return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], np.float64)


@dataclasses.dataclass
class Track:
  """One person: id, last box, motion, look."""

  id: int
  box: np.ndarray  # float64 [4], last detected
  velocity: np.ndarray  # centre pixels per frame
  look: np.ndarray | None
  last_frame: int  # frame index of the last detection

  def predicted(self, frame: int) -> np.ndarray:
    shift = self.velocity * (frame - self.last_frame)
    return self.box + np.concatenate([shift, shift])

  def similarity(self, look: np.ndarray | None) -> float:
    return -1.0 if look is None or self.look is None else float(look @ self.look)


class MultiFaceTracker:
  """Streaming detection and tracking of every face; `update` once per frame, in order."""

  def __init__(self, config: faces.FaceConfig = faces.FaceConfig(), detector: faces.Detector | None = None,
               max_lost: int = 64):
    self.config = config
    self.detector = detector if detector is not None else faces.default_detector(config)
    self.max_lost = max_lost
    self.reset()

  def reset(self) -> None:
    """Forgets every track (a new video); ids start again at 1."""
    self.live: list[Track] = []
    self.lost: list[Track] = []
    self.frame = -1
    self._next_id = 1

  def _detections(self, frame: np.ndarray) -> list[np.ndarray]:
    c = self.config
    h, w = frame.shape[:2]
    scale = c.detection_scale
    image = frame if scale == 1.0 else cv2.resize(
        frame, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    sx, sy = image.shape[1] / w, image.shape[0] / h
    out = []
    for box, score in self.detector.detect(image):
      box = np.asarray(box, np.float64) / np.array([sx, sy, sx, sy])
      if score >= c.min_confidence and _size(box) >= c.min_face_size and box[2] > box[0] and box[3] > box[1]:
        out.append(box)
    return out

  def _cost(self, track: Track, box: np.ndarray, look) -> float:
    """Cost of giving `box` to `track`; inf where it cannot be the same face."""
    c = self.config
    predicted = track.predicted(self.frame)
    size = _size(predicted)
    gap = self.frame - track.last_frame
    jump = float(np.linalg.norm(_centre(box) - _centre(predicted))) / max(size, 1e-6)
    ratio = max(_size(box), size) / max(min(_size(box), size), 1e-6)
    if jump > c.max_center_jump * gap or ratio > c.max_size_ratio:
      return math.inf
    similarity = track.similarity(look)
    look_cost = 0.0 if similarity < -0.5 else (1.0 - similarity)
    return jump + math.log(ratio) + (1.0 - faces.box_iou(box, predicted)) + look_cost

  def update(self, frame_rgb: np.ndarray) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """The faces of the next frame.

    Returns:
      `(track id, box float32 [4] x0, y0, x1, y1, crop uint8 [S, S, 3])` per face found,
      ordered by id.
    """
    from scipy.optimize import linear_sum_assignment

    c = self.config
    self.frame += 1
    gray = cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2GRAY)
    boxes = self._detections(frame_rgb)
    looks = [appearance(gray, b) for b in boxes]
    matched: dict[int, int] = {}  # detection -> live track index
    if self.live and boxes:
      cost = np.array([[self._cost(t, b, lk) for b, lk in zip(boxes, looks)] for t in self.live])
      finite = np.where(np.isfinite(cost), cost, 1e6)
      for ti, di in zip(*linear_sum_assignment(finite)):
        if np.isfinite(cost[ti, di]):
          matched[di] = ti
    seen = []
    for di, box in enumerate(boxes):
      if di in matched:
        track = self.live[matched[di]]
      else:
        track = self._returning(looks[di]) or self._new(box)
      self._observe(track, box, looks[di])
      seen.append(track)
    # Tracks not seen for longer than the hold are lost (kept for re-identification).
    keep = []
    for track in self.live:
      if track in seen or self.frame - track.last_frame <= c.max_hold_frames:
        keep.append(track)
      else:
        self.lost = ([track] + self.lost)[:self.max_lost]
    self.live = keep + [t for t in seen if t not in keep]
    out = [(t.id, t.box.astype(np.float32), faces.crop_face(frame_rgb, t.box, c.crop_size, c.margin))
           for t in seen]
    return sorted(out, key=lambda item: item[0])

  def _returning(self, look) -> Track | None:
    """A lost track this face looks like (it came back), taken out of `lost`."""
    if look is None or not self.lost:
      return None
    similarity = [t.similarity(look) for t in self.lost]
    best = int(np.argmax(similarity))
    if similarity[best] < self.config.reid_similarity:
      return None
    track = self.lost.pop(best)
    track.velocity = np.zeros(2)
    self.live.append(track)
    return track

  def _new(self, box) -> Track:
    track = Track(self._next_id, np.asarray(box, np.float64), np.zeros(2), None, self.frame)
    self._next_id += 1
    self.live.append(track)
    return track

  def _observe(self, track: Track, box: np.ndarray, look) -> None:
    gap = max(1, self.frame - track.last_frame)
    if track.look is not None:  # moved since its last detection: the velocity follows (smoothed)
      track.velocity = 0.5 * track.velocity + 0.5 * (_centre(box) - _centre(track.box)) / gap
    track.box, track.last_frame = np.asarray(box, np.float64), self.frame
    if look is not None:
      blended = look if track.look is None else 0.7 * track.look + 0.3 * look
      track.look = blended / max(float(np.linalg.norm(blended)), 1e-6)


def track_all(frames: Iterable[tuple[float, np.ndarray]], config: faces.FaceConfig = faces.FaceConfig(),
              detector: faces.Detector | None = None) -> Iterator[tuple[float, list]]:
  """`(time, [(track id, box, crop), ...])` per frame of `(time, RGB frame)` pairs."""
  tracker = MultiFaceTracker(config, detector)
  for t, frame in frames:
    yield t, tracker.update(frame)


def parse_target(text: str) -> str | tuple[float, float]:
  """`--target`: one of `faces.INITIAL_TARGETS`, or a point "x,y" in source pixels.

  Raises:
    ValueError: anything else; names the value.
  """
  text = str(text).strip()
  if text in faces.INITIAL_TARGETS:
    return text
  try:
    x, y = (float(v) for v in text.split(","))
  except ValueError:
    raise ValueError(f"--target={text!r}: expected one of {list(faces.INITIAL_TARGETS)} or a point x,y in pixels "
                     "of the first frame") from None
  if not (math.isfinite(x) and math.isfinite(y)):
    raise ValueError(f"--target={text!r}: the point must be finite")
  return x, y


def follow_point(frames: Iterable[tuple[float, np.ndarray]], point: tuple[float, float],
                 config: faces.FaceConfig = faces.FaceConfig(), detector: faces.Detector | None = None
                 ) -> Iterator[tuple[float, bool, np.ndarray, np.ndarray]]:
  """`(time, face_found, box, crop)` of ONE person: the face at `point` when faces first show.

  The person is the track whose box holds the point in the first frame with a face (else the
  one whose centre is nearest it), followed by `MultiFaceTracker` (its id survives leaving
  and returning); frames without that person are face-less.
  """
  chosen = None
  blank = np.zeros((config.crop_size, config.crop_size, 3), np.uint8)
  for t, found in track_all(frames, config, detector):
    if chosen is None and found:
      p = np.asarray(point, np.float64)

      def distance(item):
        box = item[1]
        inside = box[0] <= p[0] <= box[2] and box[1] <= p[1] <= box[3]
        return (0 if inside else 1, float(np.linalg.norm(_centre(box) - p)))

      chosen = min(found, key=distance)[0]
    mine = [item for item in found if item[0] == chosen]
    if mine:
      yield t, True, mine[0][1], mine[0][2]
    else:
      yield t, False, np.full(4, np.nan, np.float32), blank
