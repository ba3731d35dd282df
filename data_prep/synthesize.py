"""Writes the synthetic OMG-format and Aff-Wild-format datasets (the embedded default).

    python -m data_prep.synthesize --output_dir=<dir> --seed=0 [--preset=demo|smoke]

Deterministic by seed: the same seed gives identical CSVs and identical frames. Layout:

    <out>/omg/omg_TrainVideos.csv, omg_ValidationVideos.csv   official columns and order
    <out>/omg/videos/<video>/<utterance>                       utterance mp4s (prepare_data.py layout)
    <out>/omg/youtube/<video>.mp4                              whole videos; utterances are [start, end) of them
    <out>/omg/ground_truth/<video>/<utterance>.json            per-frame face boxes (null: no face) and labels
    <out>/affwild/videos/<video>.mp4, annotations/<split>/{valence,arousal}/<video>.txt
    <out>/affwild2/videos/<video>.mp4, annotations/<video>.txt  ("valence,arousal" header, -5 unannotated)
    <out>/synth.json                                            seed, sizes, fps

Faces: the astronaut photo scikit-image ships (a real face), its expression encoding
valence and arousal (see `synthetic_faces`), varying smoothly over time around an
utterance level, itself around a video level (in the real OMG data most label variance
lies between videos). Each video has its own background, face size, tint and flip, and
head motion, roll, zoom and lighting changes over time, and some utterances lose the
face for a few frames (it is occluded).
"""

from __future__ import annotations

import dataclasses
import json
import os

import cv2
import numpy as np
from absl import app, flags

from data_prep import synthetic_faces
from omg_cnnrnn import atomic
from omg_cnnrnn.metrics import LABEL_COLUMNS as OMG_COLUMNS


@dataclasses.dataclass(frozen=True)
class Preset:
  width: int = 320
  height: int = 240
  fps: float = 10.0
  train_videos: int = 20
  validation_videos: int = 6
  utterances_per_video: int = 3
  utterance_seconds: tuple[float, float] = (2.0, 3.5)
  affwild_videos: int = 4
  affwild_seconds: float = 10.0
  affwild2_videos: int = 2
  # "expression": arousal shows in every frame (eyes, brows, mouth opening); "motion": the
  # expression carries valence alone and arousal sets how fast the head rocks (roll), so
  # arousal can only be read across frames (what a recurrent row can see and a CNN cannot).
  arousal_in: str = "expression"


PRESETS = {
    # Many short videos at a small frame size: the diversity of looks (background, tint, face
    # size, flip) is what lets 32x32 networks generalise to the validation videos, and the small
    # frames keep face detection cheap (the crops are 96x96 whatever the frame size).
    "demo": Preset(width=192, height=144, train_videos=48, validation_videos=12, utterance_seconds=(1.5, 2.5)),
    "motion": Preset(width=192, height=144, train_videos=48, validation_videos=12, utterance_seconds=(1.5, 2.5),
                     arousal_in="motion"),
    "smoke": Preset(width=160, height=120, fps=5.0, train_videos=2, validation_videos=2, utterances_per_video=2,
                    utterance_seconds=(1.0, 1.6), affwild_videos=1, affwild_seconds=2.0, affwild2_videos=1),
}


def emotion_class(valence: float, arousal01: float) -> int:
  """EmotionMaxVote consistent with (valence, arousal): 0 anger .. 6 surprise."""
  if abs(valence) < 0.2 and arousal01 < 0.6:
    return 4  # neutral
  if valence >= 0.2:
    return 6 if arousal01 > 0.75 else 3  # surprise / happy
  if arousal01 > 0.7:
    return 0 if valence < -0.5 else 2  # anger / fear
  return 5 if arousal01 < 0.45 else 1  # sad / disgust


def _smooth_track(rng, n: int, fps: float, amplitude: float, period_s=(2.0, 6.0)) -> np.ndarray:
  """A smooth random signal: two sinusoids with random periods and phases."""
  t = np.arange(n) / fps
  out = np.zeros(n)
  for _ in range(2):
    out += amplitude / 2 * np.sin(2 * np.pi * t / rng.uniform(*period_s) + rng.uniform(0, 2 * np.pi))
  return out


def render_video(rng, preset: Preset, valence: np.ndarray, arousal: np.ndarray, occlusions=()) -> tuple[list, list]:
  """Frames (uint8 RGB) and face boxes (None where no face) of one video."""
  n = len(valence)
  look = synthetic_faces.Appearance.random(rng, preset.width, preset.height)
  cx = preset.width / 2 + _smooth_track(rng, n, preset.fps, preset.width * 0.18)
  cy = preset.height / 2 + _smooth_track(rng, n, preset.fps, preset.height * 0.08)
  angle = _smooth_track(rng, n, preset.fps, 10.0)
  scale = 1.0 + _smooth_track(rng, n, preset.fps, 0.15)
  light = 1.0 + _smooth_track(rng, n, preset.fps, 0.25, (3.0, 8.0))
  if preset.arousal_in == "motion":
    # Head roll rocking at 0.15 Hz (arousal -1) to 1.5 Hz (arousal +1), 14 degrees, random
    # phase: every roll angle is as likely at any arousal, only its rate of change differs.
    hz = 0.15 + 1.35 * (np.clip(arousal, -1, 1) + 1) / 2
    phase = rng.uniform(0, 2 * np.pi) + np.cumsum(2 * np.pi * hz / preset.fps)
    angle = angle * 0.3 + 14.0 * np.sin(phase)
    arousal = np.full(n, -0.3)  # neutral eyes and brows, mouth closed: nothing in one frame
  hidden = np.zeros(n, bool)
  for start, stop in occlusions:
    hidden[start:stop] = True
  frames, boxes = [], []
  for i in range(n):
    frame, box = synthetic_faces.render_frame(look, float(valence[i]), float(arousal[i]), (cx[i], cy[i]),
                                              float(angle[i]), float(scale[i]), float(light[i]), not hidden[i])
    frames.append(frame)
    boxes.append(None if box is None else [round(float(b), 2) for b in box])
  return frames, boxes


def write_mp4(path: str, frames: list, fps: float) -> None:
  """Writes RGB frames as an mp4 (OpenCV's 'mp4v'), atomically (`atomic.atomic_output`)."""
  h, w = frames[0].shape[:2]
  with atomic.atomic_output(path, suffix=".mp4") as tmp:  # OpenCV picks the container by the extension.
    writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
      raise IOError(f"cannot open a video writer for {path}")
    try:
      for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    finally:
      writer.release()


def _video_id(rng, used: set) -> str:
  while True:
    vid = "".join(rng.choice(list("0123456789abcdef"), 9))
    if vid not in used:
      used.add(vid)
      return vid


def synthesize_omg(out: str, rng, preset: Preset, used: set) -> dict:
  """Both OMG splits: CSVs, utterance mp4s, whole videos, ground truth."""
  counts = {}
  for split, num_videos in (("Train", preset.train_videos), ("Validation", preset.validation_videos)):
    rows = []
    for _ in range(num_videos):
      video = _video_id(rng, used)
      level_v, level_a = rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5)
      lengths = [int(round(rng.uniform(*preset.utterance_seconds) * preset.fps))
                 for _ in range(preset.utterances_per_video)]
      val, aro, occlusions, bounds, start = [], [], [], [], 0
      for k, n in enumerate(lengths):
        uv = np.clip(level_v + rng.normal(0, 0.4), -1, 1)
        ua = np.clip(level_a + rng.normal(0, 0.4), -1, 1)
        val.append(np.clip(uv + _smooth_track(rng, n, preset.fps, 0.25), -1, 1))
        aro.append(np.clip(ua + _smooth_track(rng, n, preset.fps, 0.25), -1, 1))
        if k % 2 == 1 and n > 6:  # some utterances lose the face for a few frames
          o = start + int(rng.integers(1, n - 4))
          occlusions.append((o, o + 3))
        bounds.append((start, start + n))
        start += n
      valence, arousal = np.concatenate(val), np.concatenate(aro)
      frames, boxes = render_video(rng, preset, valence, arousal, occlusions)
      write_mp4(os.path.join(out, "omg", "youtube", f"{video}.mp4"), frames, preset.fps)
      first_utt = int(rng.integers(1, 20))
      for k, (s, e) in enumerate(bounds):
        utt = f"utterance_{first_utt + 2 * k}.mp4"  # numbers have gaps, like the real files
        write_mp4(os.path.join(out, "omg", "videos", video, utt), frames[s:e], preset.fps)
        a01 = (arousal[s:e] + 1) / 2  # OMG arousal is in [0, 1]
        v_mean, a_mean = float(valence[s:e].mean()), float(a01.mean())
        rows.append([f"https://www.youtube.com/watch?v={video}", f"{s / preset.fps:.3f}", f"{e / preset.fps:.3f}",
                     video, utt, f"{a_mean:.6f}", f"{v_mean:.6f}", str(emotion_class(v_mean, a_mean))])
        truth = {"video": video, "utterance": utt, "fps": preset.fps, "boxes": boxes[s:e],
                 "valence": [round(float(v), 5) for v in valence[s:e]],
                 "arousal": [round(float(a), 5) for a in a01]}
        atomic.write_atomic(os.path.join(out, "omg", "ground_truth", video, utt + ".json"), json.dumps(truth))
    csv = os.path.join(out, "omg", f"omg_{split}Videos.csv")
    atomic.write_atomic(csv, "".join(",".join(row) + "\n" for row in [list(OMG_COLUMNS), *rows]))
    counts[split.lower()] = {"videos": num_videos, "utterances": len(rows)}
  return counts


def synthesize_affwild(out: str, rng, preset: Preset, used: set) -> dict:
  """Aff-Wild (per-dimension txt) and Aff-Wild2 (v,a txt with -5) sets, per-frame labels in [-1, 1]."""
  n = int(round(preset.affwild_seconds * preset.fps))
  for fmt, count in (("affwild", preset.affwild_videos), ("affwild2", preset.affwild2_videos)):
    for _ in range(count):
      video = _video_id(rng, used)
      valence = np.clip(rng.uniform(-0.6, 0.6) + _smooth_track(rng, n, preset.fps, 0.7), -1, 1)
      arousal = np.clip(rng.uniform(-0.6, 0.6) + _smooth_track(rng, n, preset.fps, 0.7), -1, 1)
      frames, _ = render_video(rng, preset, valence, arousal)
      write_mp4(os.path.join(out, fmt, "videos", f"{video}.mp4"), frames, preset.fps)
      if fmt == "affwild":
        for dim, values in (("valence", valence), ("arousal", arousal)):
          path = os.path.join(out, fmt, "annotations", "train", dim, f"{video}.txt")
          with atomic.atomic_output(path) as tmp:
            np.savetxt(tmp, values, fmt="%.5f")
      else:
        labels = np.stack([valence, arousal], 1)
        labels[: max(1, n // 10)] = -5  # the first frames are unannotated
        path = os.path.join(out, fmt, "annotations", f"{video}.txt")
        with atomic.atomic_output(path) as tmp:
          np.savetxt(tmp, labels, fmt="%.5f", delimiter=",", header="valence,arousal", comments="")
  return {"affwild_videos": preset.affwild_videos, "affwild2_videos": preset.affwild2_videos, "frames_each": n}


def synthesize(output_dir: str, seed: int = 0, preset: str | Preset = "demo", omg_only: bool = False) -> dict:
  """Writes the synthetic set (without the Aff-Wild ones if `omg_only`); returns its description (synth.json)."""
  p = PRESETS[preset] if isinstance(preset, str) else preset
  rng = np.random.default_rng(seed)
  used: set = set()
  info = {"seed": seed, "preset": dataclasses.asdict(p)}
  info["omg"] = synthesize_omg(output_dir, rng, p, used)
  if not omg_only:
    info["affwild"] = synthesize_affwild(output_dir, rng, p, used)
  atomic.write_atomic(os.path.join(output_dir, "synth.json"), json.dumps(info, indent=2))
  return info


def main(argv):
  del argv
  info = synthesize(FLAGS.output_dir, FLAGS.seed, FLAGS.preset, FLAGS.omg_only)
  print(json.dumps(info["omg"]), json.dumps(info.get("affwild", {})))


FLAGS = flags.FLAGS
if __name__ == "__main__":
  flags.DEFINE_string("output_dir", None, "Where to write the synthetic set.")
  flags.DEFINE_integer("seed", 0, "Random seed (same seed, same data).")
  flags.DEFINE_enum("preset", "demo", list(PRESETS), "Size preset: demo (the embedded default), motion (arousal "
                    "shown only by how fast the head rocks) or smoke (tiny).")
  flags.DEFINE_bool("omg_only", False, "Write the OMG-format set only (no Aff-Wild / Aff-Wild2 sets).")
  flags.mark_flag_as_required("output_dir")
  app.run(main)
