"""Training-window augmentation: one transform per window, shared by its frames (`data/augment.py`)."""

import dataclasses
import os
import sys

import numpy as np
import pytest
import tensorflow as tf

sys.path.insert(0, os.path.dirname(__file__))
import fake_data  # noqa: E402

from omg_cnnrnn import configs  # noqa: E402
from omg_cnnrnn.data import augment, pipeline  # noqa: E402

ON = configs.DataConfig(image_size=16, augment_flip=True, augment_crop_scale=0.7, augment_color=0.3)


def _frames(n=4, size=16, seed=0):
  """Distinct, asymmetric frames in [-1, 1]."""
  rng = np.random.default_rng(seed)
  return tf.constant(rng.uniform(-1, 1, (n, size, size, 3)).astype(np.float32))


def test_every_frame_of_a_window_gets_the_same_transform():
  # Reversing the frames and augmenting with the same seed gives the reversed output: the
  # transform does not depend on a frame's place, so the change from frame to frame survives.
  frames = _frames()
  seed = tf.constant([7, 3], tf.int64)
  out = augment.augment_window(frames, seed, ON).numpy()
  out_reversed = augment.augment_window(frames[::-1], seed, ON).numpy()
  np.testing.assert_allclose(out_reversed, out[::-1], atol=1e-6)
  # ... and equal frames stay equal.
  same = augment.augment_window(tf.repeat(frames[:1], 3, axis=0), seed, ON).numpy()
  np.testing.assert_allclose(same[1:], np.repeat(same[:1], 2, axis=0), atol=1e-6)


def test_windows_get_different_looks_deterministically_by_seed():
  frames = _frames()
  outs = [augment.augment_window(frames, tf.constant([0, k], tf.int64), ON).numpy() for k in range(6)]
  again = augment.augment_window(frames, tf.constant([0, 0], tf.int64), ON).numpy()
  np.testing.assert_array_equal(outs[0], again)
  for k in range(1, 6):
    assert np.abs(outs[k] - outs[0]).mean() > 0.05
  assert all(o.min() >= -1.0 and o.max() <= 1.0 and o.shape == (4, 16, 16, 3) for o in outs)


def test_each_part_does_what_it_says():
  frames = _frames()
  seed = tf.constant([1, 2], tf.int64)
  off = configs.DataConfig(image_size=16)
  assert not augment.enabled(off) and augment.enabled(ON)
  np.testing.assert_array_equal(augment.augment_window(frames, seed, off).numpy(), frames.numpy())
  flip = dataclasses.replace(off, augment_flip=True)
  outs = [augment.augment_window(frames, tf.constant([0, k], tf.int64), flip).numpy() for k in range(20)]
  mirrored = [np.array_equal(o, frames.numpy()[:, :, ::-1]) for o in outs]
  kept = [np.array_equal(o, frames.numpy()) for o in outs]
  assert all(m or k for m, k in zip(mirrored, kept)) and 3 <= sum(mirrored) <= 17
  # Colour alone: a pixel-wise affine map per channel (no pixel moves).
  color = dataclasses.replace(off, augment_color=0.3)
  out = augment.augment_window(frames * 0.5, seed, color).numpy()
  x = frames.numpy().reshape(-1, 3) * 0.5
  y = out.reshape(-1, 3)
  for c in range(3):
    slope, intercept = np.polyfit(x[:, c], y[:, c], 1)
    np.testing.assert_allclose(y[:, c], slope * x[:, c] + intercept, atol=1e-5)
    assert 0.49 <= slope <= 1.69 and abs(slope - 1) > 1e-4
  # Crop alone: a constant image stays constant; a zoom moves pixels.
  crop = dataclasses.replace(off, augment_crop_scale=0.5)
  flat = augment.augment_window(tf.fill((2, 16, 16, 3), 0.25), seed, crop).numpy()
  np.testing.assert_allclose(flat, 0.25, atol=1e-6)
  assert np.abs(augment.augment_window(frames, seed, crop).numpy() - frames.numpy()).mean() > 0.05


def test_the_training_pipeline_augments_only_when_asked_and_replays_the_same_windows(tmp_path):
  fake_data.write_split(str(tmp_path), "train", num_videos=2, utterances=2, frames=(6, 9))
  plain = configs.DataConfig(image_size=16, sequence_length=4, batch_size=2, shuffle_buffer=4)
  on = dataclasses.replace(plain, augment_flip=True, augment_crop_scale=0.7, augment_color=0.3)

  def first(config):
    (x, y), = pipeline.train_dataset(str(tmp_path), config, seed=5).take(1)
    return x["frames"].numpy(), x["mask"].numpy(), y.numpy()

  base, mask, labels = first(plain)
  augmented, mask_on, labels_on = first(on)
  # The same windows (labels and masks), other pixels.
  np.testing.assert_array_equal(labels_on, labels)
  np.testing.assert_array_equal(mask_on, mask)
  assert np.abs(augmented - base).mean() > 0.02
  np.testing.assert_array_equal(first(on)[0], augmented)  # replayable


def test_out_of_range_settings_are_refused_naming_the_field():
  with pytest.raises(ValueError, match="data.augment_crop_scale"):
    configs.DataConfig(augment_crop_scale=0.0)
  with pytest.raises(ValueError, match="data.augment_color"):
    configs.DataConfig(augment_color=1.5)
