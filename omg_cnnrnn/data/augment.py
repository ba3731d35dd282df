"""Training-window augmentation: one random look per window, the same for all its frames.

Not in the paper (its rows start from VGG-Face / AffWildNet weights and it names no
augmentation); off by default (`DataConfig.augment_*`). A run from random weights on a few
hundred utterances fits each training utterance's look (background, tint, face size, flip) to
its label: on the motion set (`data_prep.synthesize --preset=motion`, arousal only in how the
head moves) the CNN-only row's training loss falls to 0.27 in 150 steps while its validation
arousal stays at -0.06 (0.60 and -0.07 with augmentation). Drawing a new look for
every window -- flip, scale and place of the crop, colour gains, brightness and contrast --
means a look no longer names an utterance, while the motion inside the window is untouched:
every frame of a window gets the same transform, so the change from frame to frame survives
(a flip mirrors a roll and keeps its rate). What it did and did not do is measured in the
README ("Where training starts"): it lifts the CNN-only row's validation valence, and it does
not make the recurrent row learn the motion.

`augment_window` draws from a stateless seed (the run's seed, the window's place in the
training stream), so a run's windows are the same on every replay of the pipeline.
"""

from __future__ import annotations

import tensorflow as tf

from omg_cnnrnn import configs


def augment_window(frames: tf.Tensor, seed: tf.Tensor, config: configs.DataConfig) -> tf.Tensor:
  """frames float32 `[T, S, S, 3]` in [-1, 1] -> the same window under one random transform.

  Args:
    frames: one training window (network input, `inputs.network_input`).
    seed: int `[2]`, stateless seed of this window.
    config: `augment_flip`, `augment_crop_scale`, `augment_color` (0 / False: that part off).
  """
  size = frames.shape[1]
  u = tf.random.stateless_uniform([9], seed=seed)  # one draw per parameter below
  if config.augment_flip:
    frames = tf.cond(u[0] < 0.5, lambda: tf.reverse(frames, axis=[2]), lambda: frames)
  if config.augment_crop_scale < 1.0:
    # A square box of side in [crop_scale, 1] of the frame at a uniform position, resized back.
    side = config.augment_crop_scale + (1.0 - config.augment_crop_scale) * u[1]
    top, left = (1.0 - side) * u[2], (1.0 - side) * u[3]
    box = tf.stack([top, left, top + side, left + side])
    count = tf.shape(frames)[0]
    frames = tf.image.crop_and_resize(frames, tf.tile(box[None], [count, 1]), tf.range(count), (size, size))
  if config.augment_color > 0:
    a = config.augment_color
    gains = 1.0 + a * (2.0 * u[4:7] - 1.0)            # per channel: a tint
    contrast = 1.0 + a * (2.0 * u[7] - 1.0)           # around the window's mean
    brightness = a * (2.0 * u[8] - 1.0)               # in [-1, 1] units
    mean = tf.reduce_mean(frames)
    frames = (frames * gains - mean) * contrast + mean + brightness
  return tf.clip_by_value(frames, -1.0, 1.0)


def enabled(config: configs.DataConfig) -> bool:
  """Whether `config` asks for any augmentation."""
  return bool(config.augment_flip or config.augment_crop_scale < 1.0 or config.augment_color > 0)
