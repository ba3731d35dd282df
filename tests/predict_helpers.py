"""Tiny models and generated face videos shared by the prediction tests (test_api, test_batch ...)."""

from __future__ import annotations

import dataclasses

import numpy as np
import tf_keras

from data_prep import synthesize, synthetic_faces
from omg_cnnrnn import experiments, models

SIZE = 32  # the testing row's input size


def config(rnn_inputs=None):
  """The testing row; he_normal keeps an untrained VGG's outputs visibly apart."""
  base = experiments.get("testing")
  stream = base.model.streams[0]
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
