"""The network's input contract: a uint8 face crop -> the frames the network reads.

One definition, used by the training and evaluation pipeline (`pipeline.scale_frames`, after
the JPEG decode), the SavedModel's serving signatures (`serving.ServingModule`) and prediction
(`inference`: crops of the face tracker, before the SavedModel, the workdir model or TFLite):

1. `resize_crop`: a crop (H, W, 3) of another side than the model's `image_size` (the
   config's `DataConfig.image_size`, `input_size(config)`) is resized by area
   (`tf.image.resize(method="area")`) and rounded back to uint8, so a crop of any size
   reaches every path as the same uint8 image; a crop already at the model's size is left
   unchanged (the paper's runs prepare crops at the network's size);
2. `scale`: uint8 -> float32 `(x - 128) / 128`, in [-1, 1) (the released code's scaling).

`network_input` is both. The serving signatures take uint8 frames at the model's size (step 1
happens before them, in `inference`), and apply step 2 inside the graph.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from omg_cnnrnn import configs

OFFSET = 128.0  # released code: (x - 128) / 128
SCALE = 128.0


def input_size(config: configs.ExperimentConfig | configs.DataConfig) -> int:
  """The side of the square frames a model of `config` reads (its `DataConfig.image_size`)."""
  data = getattr(config, "data", config)
  return int(data.image_size)


def _resize(image: tf.Tensor, image_size: int) -> tf.Tensor:
  resized = tf.image.resize(tf.cast(image, tf.float32), (image_size, image_size), method="area")
  # Halves round up (as OpenCV's INTER_AREA does), not to even as tf.round would.
  return tf.cast(tf.clip_by_value(tf.floor(resized + 0.5), 0.0, 255.0), tf.uint8)


def resize_tensor(image: tf.Tensor, image_size: int) -> tf.Tensor:
  """uint8 `[..., H, W, 3]` -> uint8 `[..., S, S, 3]` (area resize, rounded), in graph or eager mode.

  Unchanged where H = W = S (decided at run time for a dynamic shape).
  """
  image = tf.convert_to_tensor(image)
  shape = tf.shape(image)
  same = tf.logical_and(tf.equal(shape[-3], image_size), tf.equal(shape[-2], image_size))
  out = tf.cond(same, lambda: tf.cast(image, tf.uint8), lambda: _resize(image, image_size))
  return tf.ensure_shape(out, image.shape[:-3].concatenate([image_size, image_size, 3]))


def resize_crop(crop: np.ndarray, image_size: int) -> np.ndarray:
  """A uint8 face crop (H, W, 3) at the model's input size (S, S, 3): `resize_tensor` for NumPy."""
  crop = np.asarray(crop)
  if crop.shape[0] == image_size and crop.shape[1] == image_size:
    return crop.astype(np.uint8, copy=False)
  return _resize(crop, image_size).numpy()


def scale(frames: tf.Tensor) -> tf.Tensor:
  """uint8 frames (any shape) -> float32 `(x - 128) / 128`: what the network reads."""
  return (tf.cast(frames, tf.float32) - OFFSET) / SCALE


def network_input(crops: tf.Tensor, image_size: int) -> tf.Tensor:
  """uint8 crops `[..., H, W, 3]` -> float32 `[..., S, S, 3]` network input (`resize_tensor`, `scale`)."""
  return scale(resize_tensor(crops, image_size))
