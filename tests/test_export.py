"""Export round trip: the SavedModel reproduces the Keras model, also without this package."""

import json
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

from omg_cnnrnn import experiments, export, losses, models


def _model():
  config = experiments.get("testing")
  return models.build_model(config.model, image_size=config.data.image_size), config


def test_saved_model_matches_keras_outputs(tmp_path):
  model, config = _model()
  path = export.export_saved_model(model, config, str(tmp_path / "saved_model"))
  rng = np.random.default_rng(0)
  frames = rng.integers(0, 256, (2, 5, 32, 32, 3), dtype=np.uint8)
  mask = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 1, 0]], np.float32)
  scaled = (frames.astype(np.float32) - 128.0) / 128.0
  expected = model({"frames": scaled, "mask": mask}, training=False).numpy()

  loaded = tf.saved_model.load(path)
  out = loaded.signatures["serve_with_mask"](frames=tf.constant(frames), mask=tf.constant(mask))
  np.testing.assert_allclose(out["per_frame"].numpy(), expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out["valence"].numpy(), expected[..., 0], rtol=1e-5, atol=1e-6)
  utterance, _ = losses.sequence_aggregate(expected, mask)
  np.testing.assert_allclose(out["utterance"].numpy(), utterance.numpy(), rtol=1e-5, atol=1e-6)
  # The utterance value ignores masked frames: equals the mean over the valid ones.
  np.testing.assert_allclose(out["utterance_arousal"].numpy()[1], expected[1, mask[1] > 0, 1].mean(), rtol=1e-5)

  default = loaded.signatures["serving_default"](frames=tf.constant(frames))
  all_valid = model({"frames": scaled, "mask": np.ones_like(mask)}, training=False).numpy()
  np.testing.assert_allclose(default["per_frame"].numpy(), all_valid, rtol=1e-5, atol=1e-6)
  with open(os.path.join(path, "config.json")) as f:
    assert json.load(f)["name"] == "testing"


def test_saved_model_loads_without_the_package(tmp_path):
  model, config = _model()
  path = export.export_saved_model(model, config, str(tmp_path / "sm"))
  frames = np.full((1, 3, 32, 32, 3), 77, np.uint8)
  expected = model({"frames": (frames.astype(np.float32) - 128) / 128, "mask": np.ones((1, 3), np.float32)},
                   training=False).numpy()
  np.save(tmp_path / "frames.npy", frames)
  code = (
      "import sys; sys.modules['omg_cnnrnn'] = None; sys.modules['data_prep'] = None\n"
      "import numpy as np, tensorflow as tf\n"
      f"m = tf.saved_model.load({path!r})\n"
      f"f = np.load({str(tmp_path / 'frames.npy')!r})\n"
      "print(m.signatures['serving_default'](frames=tf.constant(f))['per_frame'].numpy().tolist())\n"
  )
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
  got = np.array(json.loads(out.stdout.strip().splitlines()[-1]))
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
