"""Test fakes: prepared TFRecord shards whose frames encode their labels (no video, no detector).

Written with the package's own `features.encode_example`, so the keys are the real ones.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import tensorflow as tf

from omg_cnnrnn.data import features


def face_like(valence: float, arousal: float, size: int, rng) -> np.ndarray:
  """A crop whose upper half brightness encodes arousal ([0, 1]) and lower half valence, plus noise."""
  img = np.zeros((size, size, 3), np.float32)
  img[: size // 2] = 128 + 100 * (2 * arousal - 1)
  img[size // 2:] = 128 + 100 * valence
  img += rng.normal(0, 8, img.shape)
  return np.clip(img, 0, 255).astype(np.uint8)


def write_split(data_dir: str, split: str, num_videos: int = 3, utterances: int = 3, frames=(5, 12),
                size: int = 32, seed: int = 0, num_shards: int = 2, faceless_every: int = 0) -> pd.DataFrame:
  """Writes `<split>-0000i-of-0000n.tfrecord` shards; returns the label table (OMG columns)."""
  rng = np.random.default_rng(seed)
  os.makedirs(data_dir, exist_ok=True)
  rows, examples = [], []
  for v in range(num_videos):
    video = f"{seed:03x}{v:06x}"
    level = np.array([rng.uniform(-0.6, 0.6), rng.uniform(0.2, 0.8)])  # valence in [-1, 1], OMG arousal in [0, 1]
    start = 0.0
    for u in range(utterances):
      n = int(rng.integers(frames[0], frames[1] + 1))
      val, aro = np.clip(level + rng.normal(0, 0.2, 2), [-1, 0], [1, 1])
      utt = f"utterance_{u + 1}.mp4"
      found = np.ones(n, bool)
      if faceless_every:
        found[::faceless_every] = False
      crops = [face_like(val, aro, size, rng) if f else np.zeros((size, size, 3), np.uint8) for f in found]
      boxes = np.where(found[:, None], np.array([10, 10, 50, 50], np.float32), np.nan)
      examples.append(features.encode_example(
          video=video, utterance=utt, valence=float(val), arousal=float(aro), crops=crops, face_found=found,
          boxes=boxes, timestamps=np.arange(n) / 10.0, fps=10.0, split=split, source=f"{video}/{utt}"))
      rows.append({"link": f"https://youtu.be/{video}", "start": start, "end": start + n / 10.0, "video": video,
                   "utterance": utt, "arousal": float(aro), "valence": float(val), "EmotionMaxVote": 4})
      start += n / 10.0
  for s in range(num_shards):
    path = os.path.join(data_dir, f"{split}-{s:05d}-of-{num_shards:05d}.tfrecord")
    with tf.io.TFRecordWriter(path) as w:
      for ex in examples[s::num_shards]:
        w.write(ex.SerializeToString())
  return pd.DataFrame(rows)


def trend_crops(start: float, step: float, n: int, size: int, texture: np.ndarray, rng) -> list[np.ndarray]:
  """n crops of one fixed texture whose brightness goes `start`, `start + step`, ... (plus noise)."""
  crops = []
  for t in range(n):
    img = texture * (start + step * t) / 128.0 + rng.normal(0, 3, texture.shape)
    crops.append(np.clip(img, 0, 255).astype(np.uint8))
  return crops


def write_trend_split(data_dir: str, split: str, num_utterances: int, frames: int = 8, size: int = 32,
                      seed: int = 0) -> pd.DataFrame:
  """A task only a recurrent row can solve: the labels live in how the frames change over time.

  Each utterance shows one texture whose brightness rises or falls, slowly or fast, from a
  random level. Valence is the direction (+0.6 rising, -0.6 falling); OMG arousal the speed
  (0.8 fast, 0.2 slow). Any single frame is as likely under either direction, so a network
  that sees one frame at a time (a CNN-only row) is at chance on valence.
  """
  rng = np.random.default_rng(seed)
  os.makedirs(data_dir, exist_ok=True)
  rows, examples = [], []
  for u in range(num_utterances):
    direction = 1 if u % 2 == 0 else -1
    fast = (u // 2) % 2 == 0
    step = direction * (10.0 if fast else 3.0)
    span = abs(step) * (frames - 1)
    low = float(rng.uniform(50, 205 - span))
    start = low if direction > 0 else low + span
    texture = np.clip(128 + rng.normal(0, 25, (size, size, 3)), 0, 255)
    crops = trend_crops(start, step, frames, size, texture, rng)
    valence, arousal = 0.6 * direction, 0.8 if fast else 0.2
    video, utt = f"{seed:03x}{u:06x}", "utterance_1.mp4"
    found = np.ones(frames, bool)
    examples.append(features.encode_example(
        video=video, utterance=utt, valence=valence, arousal=arousal, crops=crops, face_found=found,
        boxes=np.tile(np.array([0, 0, size, size], np.float32), (frames, 1)), timestamps=np.arange(frames) / 10.0,
        fps=10.0, split=split, source=f"{video}/{utt}"))
    rows.append({"link": f"https://youtu.be/{video}", "start": 0.0, "end": frames / 10.0, "video": video,
                 "utterance": utt, "arousal": arousal, "valence": valence, "EmotionMaxVote": 4})
  path = os.path.join(data_dir, f"{split}-00000-of-00001.tfrecord")
  with tf.io.TFRecordWriter(path) as w:
    for ex in examples:
      w.write(ex.SerializeToString())
  return pd.DataFrame(rows)
