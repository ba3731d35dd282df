"""Throughput and accuracy of the face pipeline's speed settings (issue 3, item 5).

Writes a 640x360 test video with a real face (scikit-image's astronaut photo) moving and
changing size over a panning background, leaving the picture twice (once walking out,
once cut away), then runs the whole per-frame pipeline for several settings: decode,
detect, track, crop and JPEG-encode the crop. For each it reports frames/s and the mean
box IoU against per-frame full-resolution detection (the reference) and against the true
pasted box, and the two rates of a face that leaves: the share of face-less frames
flagged (target >= 90%) and of frames with the whole face in the picture where it is
found (target >= 98%), with the frame of each face-less stretch first flagged.

  python data_prep/bench_faces.py
  python data_prep/bench_faces.py --frames=150 --settings=1@1.0,10@0.5

Timings on a shared machine are noisy; `--repeat` keeps the best of several runs.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from typing import Iterator

from absl import app
from absl import flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from omg_cnnrnn import atomic, faces  # noqa: E402

_FRAMES = flags.DEFINE_integer("frames", 300, "Frames of the test video.")
_FPS = flags.DEFINE_float("fps", 30.0, "Frame rate of the test video.")
_SIZE = flags.DEFINE_list("size", ["640", "360"], "Width, height of the test video (the face scales with it).")
_SETTINGS = flags.DEFINE_list(
    "settings", ["1@1.0", "1@0.5", "1@0.33", "5@1.0", "10@1.0", "15@1.0", "5@0.5", "10@0.5", "15@0.5",
                 "5@0.33", "10@0.33", "15@0.33", "1@0.5+roi", "5@0.5+roi", "10@0.5+roi", "15@0.5+roi",
                 "10@0.33+roi", "15@0.33+roi", "default"],
    "Settings to run: `k@s` is detect_every=k on the whole frame downscaled by s (no window "
    "detection, no fine search); `k@s+roi` adds the window around the tracked face and the "
    "full-resolution search every 2nd search; `default` is FaceConfig(). `1@1.0` is the "
    "reference and always runs first.")
_REPEAT = flags.DEFINE_integer("repeat", 1, "Runs per setting; the fastest counts.")
_VIDEO = flags.DEFINE_string("keep_video", None, "Also save the test video here.")

WIDTH, HEIGHT = 640, 360
# The face in skimage.data.astronaut() (512x512), as MTCNN finds it at full resolution.
ASTRONAUT_FACE = (182.0, 64.0, 265.0, 171.0)
# The part of the photo pasted into the scene (face, hair, collar).
_PATCH = (130, 20, 320, 240)
# A second, different person (matplotlib's sample photo of Grace Hopper, 512x600) as a
# distractor, with her face box as MTCNN finds it and the pasted part.
HOPPER_FACE = (178.0, 110.0, 351.0, 330.0)
_HOPPER_PATCH = (110, 30, 420, 430)


def _patch(image, region, face_box):
  """A pasted patch (RGB), an elliptical feathered alpha mask, the face box inside it."""
  x0, y0, x1, y1 = region
  patch = image[y0:y1, x0:x1]
  h, w = patch.shape[:2]
  yy, xx = np.mgrid[:h, :w]
  r = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
  alpha = np.clip((1.0 - r) / 0.15, 0.0, 1.0).astype(np.float32)
  return patch, alpha, np.array(face_box) - [x0, y0, x0, y0]


def _hopper():
  import matplotlib

  path = os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")
  image = cv2.imread(path)
  return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@dataclasses.dataclass
class Scene:
  """The test video's frames and the true face box per frame (NaN: no face)."""

  frames: list
  boxes: np.ndarray  # float [T, 4]
  inside: np.ndarray  # bool [T]: the face is wholly inside the frame


def make_scene(num_frames: int = 300, width: int = WIDTH, height: int = HEIGHT, seed: int = 0) -> Scene:
  """A real face moving, scaling and changing brightness over a panning background.

  Timeline (fractions of the video): at 20% a 3-frame cut after which the face is ~270 px
  away, at 33% it jumps back (no gap) and walks out of the picture on the right and back
  in until 45%; at 70% it is cut away for 1/15 of the video; from 80% to 92% a second,
  larger face (another person) stands on the right while the target is on the left.
  Faces are 37-123 px tall at 640x360 and scale with the frame.

  Args:
    num_frames: length of the video.
    width: frame width.
    height: frame height.
    seed: background texture seed.

  Returns:
    A Scene.
  """
  from skimage import data

  patch, alpha, face = _patch(data.astronaut(), _PATCH, ASTRONAUT_FACE)
  hopper = _hopper()
  if hopper is not None:
    other = _patch(hopper, _HOPPER_PATCH, HOPPER_FACE)
  rng = np.random.default_rng(seed)
  # A wide background (coffee photo plus noise) panned slowly: camera motion for the flow.
  k = height / HEIGHT  # faces and motion scale with the frame
  back = cv2.resize(data.coffee(), (width + int(200 * k), height + int(60 * k)),
                    interpolation=cv2.INTER_AREA).astype(np.int16)
  back = np.clip(back + rng.integers(-12, 13, back.shape), 0, 255).astype(np.uint8)
  frames, boxes, inside = [], [], []
  exit_start, exit_end = int(0.33 * num_frames), int(0.45 * num_frames)  # walks out, comes back
  cut_start = int(0.70 * num_frames)
  cut_end = cut_start + max(3, num_frames // 15)  # 20 frames of 300
  jump_start, jump_end = int(0.20 * num_frames), int(0.20 * num_frames) + 3  # a short cut, then elsewhere
  other_start, other_end = int(0.80 * num_frames), int(0.92 * num_frames)
  for i in range(num_frames):
    u = i / max(num_frames - 1, 1)
    pan = int(k * (100 + 100 * np.sin(2 * np.pi * u)))
    frame = back[int(k * (30 + 20 * np.sin(6 * u))):, pan:][:height, :width].copy()
    scale = k * (0.75 + 0.4 * np.sin(2 * np.pi * 1.5 * u))  # face 37..123 px tall at 640x360
    phase = 0.125 if jump_start <= i < exit_start else 0.0
    cx = width / 2 + 0.3 * width * np.sin(2 * np.pi * 2 * (u + phase))
    cy = height / 2 + 0.12 * height * np.sin(2 * np.pi * 3 * u + 1.0)
    if exit_start <= i < exit_end:  # out to the right and back in
      v = (i - exit_start) / (exit_end - exit_start)
      cx += (width * 0.9) * np.sin(np.pi * v)
    gain = 0.85 + 0.2 * np.sin(2 * np.pi * 2.5 * u)
    box = np.full(4, np.nan)
    if hopper is not None and other_start <= i < other_end:
      _paste(frame, *other, (0.78 * width, 0.5 * height), 0.75 * k, 1.0)  # a 165 px face at 640x360
    if not (cut_start <= i < cut_end or jump_start <= i < jump_end):
      box = _paste(frame, patch, alpha, face, (cx, cy), scale, gain)
    frames.append(frame)
    boxes.append(box)
    inside.append(not np.isnan(box).any() and box[0] >= 0 and box[1] >= 0 and box[2] <= width and box[3] <= height)
  return Scene(frames, np.array(boxes), np.array(inside))


def _paste(frame, patch, alpha, face, centre, scale, gain):
  """Pastes the patch scaled so the face box's centre lands at `centre`; returns the box.

  Returns NaN when no part of the face lies inside the frame.
  """
  h, w = frame.shape[:2]
  ph, pw = int(round(patch.shape[0] * scale)), int(round(patch.shape[1] * scale))
  sx, sy = pw / patch.shape[1], ph / patch.shape[0]
  img = cv2.resize(patch, (pw, ph), interpolation=cv2.INTER_AREA).astype(np.float32) * gain
  a = cv2.resize(alpha, (pw, ph), interpolation=cv2.INTER_LINEAR)[..., None]
  fx, fy = (face[0] + face[2]) / 2 * sx, (face[1] + face[3]) / 2 * sy
  left, top = int(round(centre[0] - fx)), int(round(centre[1] - fy))
  box = np.array([face[0] * sx + left, face[1] * sy + top, face[2] * sx + left, face[3] * sy + top])
  x0, y0, x1, y1 = max(left, 0), max(top, 0), min(left + pw, w), min(top + ph, h)
  if x1 > x0 and y1 > y0:
    src = (slice(y0 - top, y1 - top), slice(x0 - left, x1 - left))
    region = frame[y0:y1, x0:x1].astype(np.float32)
    frame[y0:y1, x0:x1] = np.clip(region * (1 - a[src]) + img[src] * a[src], 0, 255).astype(np.uint8)
  if box[2] <= 0 or box[0] >= w or box[3] <= 0 or box[1] >= h:
    return np.full(4, np.nan)
  return box


def write_video(path: str, frames, fps: float) -> None:
  """Writes RGB frames as an mp4 (MPEG-4 part 2, what OpenCV can always write)."""
  h, w = frames[0].shape[:2]
  with atomic.atomic_output(path, suffix=".mp4") as tmp:  # Atomically; OpenCV picks the container by the extension.
    writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for frame in frames:
      writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def parse_setting(text: str) -> faces.FaceConfig:
  """`k@s[+roi]` or `default` -> a FaceConfig (see --settings)."""
  if text == "default":
    return faces.FaceConfig()
  roi = text.endswith("+roi")
  k, s = text.removesuffix("+roi").split("@")
  return dataclasses.replace(faces.FULL_DETECTION, detect_every=int(k), detection_scale=float(s),
                             roi_detection=roi, fine_search_every=2 if roi else 0)


@dataclasses.dataclass
class Run:
  """One pass of the pipeline over the video."""

  seconds: float
  face_found: np.ndarray  # bool [T]
  detected: np.ndarray  # bool [T]
  boxes: np.ndarray  # float [T, 4]
  detector_runs: int


def run_pipeline(path: str, config: faces.FaceConfig, detector=None) -> Run:
  """Decodes, detects, tracks, crops and JPEG-encodes every frame, timed end to end."""
  tracker = faces.FaceTracker(config, detector)
  found, detected, boxes = [], [], []
  begin = time.perf_counter()
  for _, frame in faces.read_frames(path):
    ok, box, crop = tracker.update(frame)
    cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))  # what data_prep stores
    found.append(ok)
    detected.append(tracker.detected)
    boxes.append(box)
  seconds = time.perf_counter() - begin
  return Run(seconds, np.array(found), np.array(detected), np.array(boxes), tracker.detector_runs)


def mean_iou(boxes: np.ndarray, reference: np.ndarray, where: np.ndarray) -> float:
  """Mean IoU over the frames `where`; a frame without a box counts 0."""
  ious = [faces.box_iou(boxes[i], reference[i]) for i in np.flatnonzero(where)]
  return float(np.mean(ious)) if ious else float("nan")


def benchmark(path: str, scene: Scene, settings: list[str], repeat: int = 1) -> Iterator[dict]:
  """Runs each setting on the video; yields one row of results per setting.

  The reference `1@1.0` runs first whatever the order asked for.
  """
  # Model loading and graph tracing are one-off costs per process, not per frame.
  for config in (faces.FULL_DETECTION, faces.FaceConfig()):
    tracker = faces.FaceTracker(config)
    for frame in scene.frames[:3]:
      tracker.update(frame)
  absent = np.isnan(scene.boxes).any(axis=1)
  reference = None
  for name in ["1@1.0"] + [s for s in settings if s != "1@1.0"]:
    runs = [run_pipeline(path, parse_setting(name)) for _ in range(repeat)]
    run = min(runs, key=lambda r: r.seconds)
    reference = reference or run
    ref_boxes = np.where(reference.detected[:, None], reference.boxes, np.nan)
    yield dict(setting=name, fps=len(run.face_found) / run.seconds, runs=run.detector_runs,
               iou_ref=mean_iou(run.boxes, ref_boxes, reference.detected),
               iou_true=mean_iou(run.boxes, scene.boxes, scene.inside),
               found=float(run.face_found[scene.inside].mean()), false=int(run.face_found[absent].sum()),
               flagged=float((~run.face_found[absent]).mean()) if absent.any() else float("nan"),
               first_flagged=first_flagged(run.face_found, absent))


def first_flagged(face_found: np.ndarray, absent: np.ndarray) -> str:
  """For each stretch of face-less frames, how many frames into it the face was first flagged.

  0 is the first face-less frame itself; "-" a stretch never flagged.
  """
  out, i = [], 0
  while i < len(absent):
    if not absent[i]:
      i += 1
      continue
    j = i
    while j < len(absent) and absent[j]:
      j += 1
    missing = np.flatnonzero(~face_found[i:j])
    out.append(str(missing[0]) if len(missing) else "-")
    i = j
  return ",".join(out)


LEGEND = """
IoU ref: mean box IoU against the reference's detections (per-frame, full resolution),
  over the frames where it detected a face; a frame without a box counts 0.
IoU true: the same against the true pasted face box, over frames where it is wholly inside.
found: share of those frames with a face (target: >= 98%); false: frames with a face
  reported while none is in the picture (boxes held after the face vanished); flagged: share
  of the face-less frames marked face-less (target: >= 90%); first flagged: per stretch of
  face-less frames, the frame of the stretch where the face was first flagged missing (0:
  its first frame). Frames where the face is partly in the picture count in neither rate."""


def main(argv):
  del argv
  width, height = (int(v) for v in _SIZE.value)
  scene = make_scene(_FRAMES.value, width, height)
  with tempfile.TemporaryDirectory() as tmp:
    path = _VIDEO.value or os.path.join(tmp, "bench.mp4")
    write_video(path, scene.frames, _FPS.value)
    print(f"video: {len(scene.frames)} frames {width}x{height} at {_FPS.value:g} fps; face wholly inside in "
          f"{scene.inside.sum()}, absent in {np.isnan(scene.boxes).any(axis=1).sum()}; {os.cpu_count()} CPU "
          "cores (shared: timings are noisy)")
    print(f"{'setting':>11} {'frames/s':>9} {'det runs':>8} {'IoU ref':>8} {'IoU true':>8} {'found':>6} {'false':>6} "
          f"{'flagged':>7}  first flagged")
    for r in benchmark(path, scene, _SETTINGS.value, _REPEAT.value):
      print(f"{r['setting']:>11} {r['fps']:9.1f} {r['runs']:8d} {r['iou_ref']:8.3f} {r['iou_true']:8.3f} "
            f"{r['found']:6.1%} {r['false']:6d} {r['flagged']:7.1%}  {r['first_flagged']}", flush=True)
  print(LEGEND)
  print(f"defaults: {faces.FaceConfig()}")
  from omg_cnnrnn import hardware

  # Times mean little without the machine's speed, measured in the same run.
  print(f"this machine: {hardware.matmul_peak(2048):.0f} GFLOP/s (float32 2048^2 matmul)")


if __name__ == "__main__":
  app.run(main)
