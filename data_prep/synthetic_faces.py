"""Renders a real face whose expression encodes valence and arousal, moving in a video frame.

The base texture is the astronaut photograph that scikit-image ships (a real face, no
download). Expressions are smooth displacement fields (`cv2.remap`) anchored at the
face's landmarks, plus a mouth opening:
- valence: mouth corners pulled up (smile, +1) or down (frown, -1);
- arousal: eyes and brows opened / raised and the mouth opened (+1), or lids and brows
  lowered and the mouth closed (-1).
The warped head is blended into the frame with an elliptical mask, moved, rotated,
scaled and lit per frame. `render_frame` also returns the face box in frame pixels.
"""

from __future__ import annotations

import dataclasses
import functools

import cv2
import numpy as np

# Head crop of skimage.data.astronaut() (x0, y0, x1, y1) and, inside it, the landmarks
# (MTCNN keypoints of the photo) and the face box the detector reports.
_HEAD = (130, 10, 320, 230)
_LEFT_EYE = (204 - 130, 100 - 10)
_RIGHT_EYE = (245 - 130, 102 - 10)
_MOUTH_LEFT = (202 - 130, 139 - 10)
_MOUTH_RIGHT = (244 - 130, 140 - 10)
FACE_BOX = (182 - 130, 64 - 10, 265 - 130, 171 - 10)


@functools.lru_cache(maxsize=1)
def base_head() -> np.ndarray:
  """float32 RGB head crop of the astronaut photo."""
  import skimage.data

  x0, y0, x1, y1 = _HEAD
  return skimage.data.astronaut()[y0:y1, x0:x1].astype(np.float32)


def _bump(xs, ys, cx, cy, sx, sy):
  return np.exp(-(((xs - cx) / sx) ** 2 + ((ys - cy) / sy) ** 2))


@functools.lru_cache(maxsize=1)
def _grids():
  h, w = base_head().shape[:2]
  ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
  mouth_cx = (_MOUTH_LEFT[0] + _MOUTH_RIGHT[0]) / 2
  mouth_cy = (_MOUTH_LEFT[1] + _MOUTH_RIGHT[1]) / 2
  corners = _bump(xs, ys, _MOUTH_LEFT[0], _MOUTH_LEFT[1], 9, 7) + _bump(xs, ys, _MOUTH_RIGHT[0], _MOUTH_RIGHT[1], 9, 7)
  centre = _bump(xs, ys, mouth_cx, mouth_cy + 2, 10, 6)
  eyes = _bump(xs, ys, _LEFT_EYE[0], _LEFT_EYE[1] - 5, 10, 6) + _bump(xs, ys, _RIGHT_EYE[0], _RIGHT_EYE[1] - 5, 10, 6)
  brows = _bump(xs, ys, _LEFT_EYE[0], _LEFT_EYE[1] - 14, 14, 6) + _bump(xs, ys, _RIGHT_EYE[0], _RIGHT_EYE[1] - 14, 14, 6)
  # Inner brow ends (towards the nose): lowered in a frown, lifted in a smile.
  inner = (_bump(xs, ys, _LEFT_EYE[0] + 9, _LEFT_EYE[1] - 13, 7, 6)
           + _bump(xs, ys, _RIGHT_EYE[0] - 9, _RIGHT_EYE[1] - 13, 7, 6))
  return xs, ys, corners, centre, eyes, brows, inner, (mouth_cx, mouth_cy)


def expression(valence: float, arousal: float) -> np.ndarray:
  """The head crop with the expression of (valence, arousal) in [-1, 1]^2, uint8 RGB."""
  head = base_head()
  xs, ys, corners, centre, eyes, brows, inner, (mx, my) = _grids()
  # remap samples the source at (x + dx, y + dy): a positive dy moves content up.
  dy = (26.0 * valence * corners - 8.0 * valence * centre + 10.0 * valence * inner
        + 5.0 * arousal * eyes + 7.0 * arousal * brows)
  out = cv2.remap(head, xs, ys + dy.astype(np.float32), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
  opening = max(0.0, arousal + 0.3) / 1.3  # mouth closed below arousal -0.3
  if opening > 0:
    mask = np.zeros(out.shape[:2], np.float32)
    cv2.ellipse(mask, (int(mx), int(my + 3)), (13, max(1, int(round(9 * opening)))), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (5, 5), 1.5)[..., None]
    out = out * (1 - mask) + np.array([60.0, 20.0, 25.0]) * mask
  return np.clip(out, 0, 255)


@dataclasses.dataclass(frozen=True)
class Appearance:
  """Per-video look: where the head is, how big, its colour, the background."""

  background: np.ndarray  # float32 [H, W, 3]
  face_width: float  # face-box width in pixels
  tint: np.ndarray  # per-channel gain
  flip: bool

  @staticmethod
  def random(rng: np.random.Generator, width: int, height: int) -> "Appearance":
    low = rng.uniform(30, 220, (4, 5, 3)).astype(np.float32)
    background = cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC)
    background += rng.normal(0, 6, background.shape).astype(np.float32)
    return Appearance(background=np.clip(background, 0, 255), face_width=float(rng.uniform(0.3, 0.42) * height),
                      tint=rng.uniform(0.85, 1.15, 3).astype(np.float32), flip=bool(rng.integers(0, 2)))


def render_frame(appearance: Appearance, valence: float, arousal: float, centre: tuple[float, float],
                 angle: float, scale: float, light: float, visible: bool = True):
  """One frame: uint8 RGB [H, W, 3] and the face box (x0, y0, x1, y1), or None when no face shows.

  Args:
    appearance: the video's look.
    valence, arousal: the expression, in [-1, 1].
    centre: face-box centre in frame pixels.
    angle: head roll in degrees; scale: multiplies the face width; light: brightness gain.
    visible: False renders the background alone (the face is occluded / out of the shot).
  """
  frame = appearance.background * light
  if not visible:
    return np.clip(frame, 0, 255).astype(np.uint8), None
  head = expression(valence, arousal) * appearance.tint
  fx0, fy0, fx1, fy1 = FACE_BOX
  if appearance.flip:
    head = head[:, ::-1]
    w = head.shape[1]
    fx0, fx1 = w - fx1, w - fx0
  s = appearance.face_width * scale / (fx1 - fx0)
  fc = ((fx0 + fx1) / 2, (fy0 + fy1) / 2)
  m = cv2.getRotationMatrix2D(fc, angle, s)
  m[:, 2] += np.array(centre) - np.array(fc)
  h, w = frame.shape[:2]
  alpha = np.zeros(head.shape[:2], np.float32)
  hh, hw = head.shape[:2]
  cv2.ellipse(alpha, (hw // 2, int(hh * 0.5)), (int(hw * 0.42), int(hh * 0.5)), 0, 0, 360, 1.0, -1)
  alpha = cv2.GaussianBlur(alpha, (15, 15), 5)
  warped = cv2.warpAffine(np.ascontiguousarray(head), m, (w, h), flags=cv2.INTER_LINEAR)
  a = cv2.warpAffine(alpha, m, (w, h), flags=cv2.INTER_LINEAR)[..., None]
  frame = frame * (1 - a) + warped * light * a
  corners = np.array([[fx0, fy0, 1], [fx1, fy0, 1], [fx0, fy1, 1], [fx1, fy1, 1]], np.float64) @ m.T
  box = np.array([corners[:, 0].min(), corners[:, 1].min(), corners[:, 0].max(), corners[:, 1].max()])
  inside = (min(box[2], w) - max(box[0], 0)) * (min(box[3], h) - max(box[1], 0))
  area = (box[2] - box[0]) * (box[3] - box[1])
  shown = inside > 0.6 * area
  return np.clip(frame, 0, 255).astype(np.uint8), (box if shown else None)
