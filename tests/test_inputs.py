"""The crop -> network-input contract (`omg_cnnrnn.data.inputs`)."""

import numpy as np
import pytest
import tensorflow as tf

from omg_cnnrnn import configs
from omg_cnnrnn.data import inputs


def test_a_crop_at_the_models_size_is_only_scaled():
  crop = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)
  assert inputs.resize_crop(crop, 8) is crop
  np.testing.assert_array_equal(inputs.network_input(crop, 8).numpy(), (crop.astype(np.float32) - 128) / 128)
  assert inputs.input_size(configs.DataConfig(image_size=40)) == 40


@pytest.mark.parametrize("side", [24, 19])
def test_another_size_is_area_resized_and_rounded_to_uint8(side):
  crop = np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8)
  resized = inputs.resize_crop(crop, 8)
  assert resized.dtype == np.uint8 and resized.shape == (8, 8, 3)
  area = tf.image.resize(crop.astype(np.float32), (8, 8), method="area").numpy()
  np.testing.assert_array_equal(resized, np.floor(area + 0.5).astype(np.uint8))  # halves up
  if side == 24:  # an integer factor: the area resize is the mean of 3x3 blocks
    blocks = crop.astype(np.float64).reshape(8, 3, 8, 3, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(resized, np.round(blocks), atol=1)
  # The graph form (a batch, a dynamic shape) gives the same numbers.
  fn = tf.function(lambda x: inputs.network_input(x, 8), input_signature=[tf.TensorSpec((None, None, None, 3), tf.uint8)])
  np.testing.assert_array_equal(fn(crop[np.newaxis]).numpy()[0], (resized.astype(np.float32) - 128) / 128)
