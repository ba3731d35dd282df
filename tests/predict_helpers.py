"""Tiny models and generated face videos shared by the prediction tests (test_api, test_batch ...)."""

from __future__ import annotations

import dataclasses

import numpy as np
import tf_keras

from conftest import tiny
from data_prep import synthesize, synthetic_faces
from omg_cnnrnn import experiments, models

SIZE = 32  # the testing row's input size


def config(rnn_inputs=None, width=None):
  """The testing row with a tiny backbone (conftest.tiny, or `width`); he_normal keeps an untrained VGG's outputs apart."""
  base = tiny(experiments.get("testing"))
  stream = base.model.streams[0]
  if width is not None:
    stream = dataclasses.replace(stream, backbone_width=width)
  if rnn_inputs is not None:
    stream = dataclasses.replace(stream, rnn_inputs=rnn_inputs)
  return dataclasses.replace(base, model=dataclasses.replace(base.model, streams=(stream,),
                                                             kernel_initializer="he_normal"))


def model(cfg, seed=0, gain=3.0):
  """An untrained model whose outputs spread over about [-gain/3, gain/3]."""
  tf_keras.utils.set_random_seed(seed)
  net = models.build_model(cfg.model, image_size=SIZE)
  output = net.get_layer("output")
  kernel, bias = output.get_weights()
  output.set_weights([kernel * gain, bias])
  return net


def scaled(frames):
  return (np.asarray(frames, np.float32) - 128.0) / 128.0


def face_video(path: str, frames: int = 30, hidden=(), seed: int = 0, fps: float = 10.0) -> str:
  """A real face (the astronaut texture) moving and changing expression; absent in `hidden`."""
  rng = np.random.default_rng(seed)
  look = synthetic_faces.Appearance.random(rng, 320, 240)
  out = []
  for i in range(frames):
    frame, _ = synthetic_faces.render_frame(look, float(np.sin(i / 5)), float(np.cos(i / 7)),
                                            (160 + 20 * np.sin(i / 6), 120.0), 0.0, 1.0, 1.0, i not in hidden)
    out.append(frame)
  synthesize.write_mp4(path, out, fps)
  return path


def two_faces_video(path: str, frames: int = 40, fps: float = 10.0, seed: int = 5):
  """Two different faces crossing paths: A moves left to right (higher), B right to left (lower).

  Returns (path, boxes): boxes[i] = {"A": box or None, "B": box or None} in source pixels.
  """
  rng = np.random.default_rng(seed)
  width, height = 480, 300
  a = synthetic_faces.Appearance.random(rng, width, height)
  a = dataclasses.replace(a, face_width=70.0, flip=False, tint=np.array([1.1, 0.95, 0.9], np.float32))
  b = dataclasses.replace(a, face_width=90.0, flip=True, tint=np.array([0.85, 0.95, 1.15], np.float32))
  out, boxes = [], []
  for i in range(frames):
    s = i / (frames - 1)
    ax, bx = 90 + 300 * s, 390 - 300 * s
    frame, box_a = synthetic_faces.render_frame(a, float(np.sin(i / 4)), 0.3, (ax, 105.0), 0.0, 1.0, 1.0)
    on_a = dataclasses.replace(b, background=frame.astype(np.float32))
    frame, box_b = synthetic_faces.render_frame(on_a, -0.5, float(np.cos(i / 5)), (bx, 200.0), 0.0, 1.0, 1.0)
    out.append(frame)
    boxes.append({"A": box_a, "B": box_b})
  synthesize.write_mp4(path, out, fps)
  return path, boxes
