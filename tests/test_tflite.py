"""TFLite export (`omg_cnnrnn.export --tflite`): parity with the SavedModel, prediction from a .tflite, bad files."""

import os

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import omg_cnnrnn
import predict_helpers as helpers
from omg_cnnrnn import inference, serving, tflite

pytestmark = pytest.mark.slow  # TFLite conversions

CHUNK = 5  # frames per call fixed in the files; the tests feed other counts


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  root = tmp_path_factory.mktemp("tflite")
  # A quarter-width VGG: at 1/16 the file's fixed overhead hides the int8 weights' 4x saving.
  config = helpers.config(width=0.25)
  path = serving.export_saved_model(helpers.model(config, seed=3), config, str(root / "sm"), tflite_chunk_frames=CHUNK)
  video = helpers.face_video(str(root / "clip.mp4"), frames=24, hidden=range(9, 13))
  return path, video


def _saved_stream(path, frames, mask, pieces):
  sig = tf.saved_model.load(path).signatures[serving.STREAMING_SIGNATURE]
  state = np.zeros((1, 2, 8), np.float32)
  outs, a = [], 0
  for n in pieces:
    out = sig(frames=tf.constant(frames[:, a:a + n]), mask=tf.constant(mask[:, a:a + n]), state=tf.constant(state))
    outs.append(out["per_frame"].numpy())
    state = out["state"].numpy()
    a += n
  return np.concatenate(outs, axis=1), state


def test_float32_tflite_equals_the_saved_model_and_the_quantised_one_is_close(exported):
  path, _ = exported
  names = set(os.listdir(path))
  assert set(tflite.FILES) <= names
  float_size = os.path.getsize(os.path.join(path, tflite.FLOAT32_FILE))
  quant_size = os.path.getsize(os.path.join(path, tflite.DYNAMIC_RANGE_FILE))
  assert quant_size < 0.35 * float_size  # int8 weights
  rng = np.random.default_rng(0)
  frames = rng.integers(0, 256, (1, 13, helpers.SIZE, helpers.SIZE, 3), dtype=np.uint8)
  mask = np.ones((1, 13), np.float32)
  mask[0, 3:8] = 0  # a face-less stretch across a chunk boundary
  pieces = (3, 10)  # neither a multiple of the file's 5 frames
  want, want_state = _saved_stream(path, frames, mask, pieces)
  valid = mask > 0
  assert np.abs(want[valid]).max() > 0.05
  results = {}
  for name in tflite.FILES:
    runner = tflite.TFLiteStreaming(os.path.join(path, name))
    assert (runner.chunk_frames, runner.image_size, runner.num_states, runner.state_units) == (CHUNK, 32, 2, 8)
    state, outs, a = runner.initial_state(), [], 0
    for n in pieces:
      out = runner(frames[:, a:a + n], mask[:, a:a + n], state)
      outs.append(out["per_frame"])
      state = out["state"]
      a += n
    results[name] = (np.concatenate(outs, axis=1), state)
  got, state = results[tflite.FLOAT32_FILE]
  np.testing.assert_allclose(got[valid], want[valid], atol=1e-4)
  np.testing.assert_allclose(state, want_state, atol=1e-4)
  quant, _ = results[tflite.DYNAMIC_RANGE_FILE]
  error = np.abs(quant[valid] - want[valid]).max()
  assert 0 < error < 0.1, error
  with pytest.raises(ValueError, match="batch 1"):
    tflite.TFLiteStreaming(os.path.join(path, tflite.FLOAT32_FILE)).initial_state(2)


def test_predict_runs_a_tflite_model_like_the_saved_model(exported, tmp_path):
  path, video = exported
  model_file = os.path.join(path, tflite.FLOAT32_FILE)
  predictor = inference.load_predictor(model_file)
  assert predictor.kind == "tflite" and predictor.config.name == "testing"
  summary = inference.predict_video(predictor, video, str(tmp_path / "lite"), chunk_frames=7)
  inference.predict_video(inference.load_predictor(path), video, str(tmp_path / "sm"), chunk_frames=7)
  lite, saved = pd.read_csv(tmp_path / "lite" / "frames.csv"), pd.read_csv(tmp_path / "sm" / "frames.csv")
  assert list(lite["face_found"]) == list(saved["face_found"]) and lite["face_found"].sum() >= 15
  columns = ["valence", "arousal", "valence_post", "arousal_post"]
  np.testing.assert_allclose(lite[columns].to_numpy(), saved[columns].to_numpy(), atol=1e-4)
  assert summary["model_kind"] == "tflite"
  # The Python API loads it too, and predict_faces carries the state as with the SavedModel.
  crops = np.random.default_rng(1).integers(0, 256, (9, 32, 32, 3), dtype=np.uint8)
  a, b = omg_cnnrnn.load(model_file), omg_cnnrnn.load(path)
  for model in (a, b):
    model.predict_faces(crops[:4])
  np.testing.assert_allclose(a.predict_faces(crops[4:]).to_numpy(), b.predict_faces(crops[4:]).to_numpy(), atol=1e-4)


def test_cnn_only_rows_convert_with_a_zero_width_state(tmp_path):
  config = helpers.config(rnn_inputs=())
  model = helpers.model(config, seed=4)
  module = serving.ServingModule(model, config)
  (tmp_path / "m.tflite").write_bytes(tflite.convert(module, chunk_frames=4))
  runner = tflite.TFLiteStreaming(str(tmp_path / "m.tflite"))
  frames = np.random.default_rng(2).integers(0, 256, (1, 6, 32, 32, 3), dtype=np.uint8)
  out = runner(frames, np.ones((1, 6), np.float32), runner.initial_state())
  want = model({"frames": helpers.scaled(frames[0])[:, None], "mask": np.ones((6, 1), np.float32)},
               training=False).numpy()[:, 0]
  np.testing.assert_allclose(out["per_frame"][0], want, atol=1e-4)
  assert out["state"].shape == (1, 0, config.model.rnn_units)


def test_bad_tflite_files_are_refused_naming_them(exported, tmp_path):
  path, _ = exported
  text = tmp_path / "notes.tflite"
  text.write_text("not a model\n")
  (tmp_path / "config.json").write_text(open(os.path.join(path, "config.json")).read())
  with pytest.raises(inference.ModelError, match="notes.tflite: not a loadable TFLite model"):
    inference.load_predictor(str(text))
  lonely = tmp_path / "alone"
  lonely.mkdir()
  (lonely / "m.tflite").write_bytes(open(os.path.join(path, tflite.FLOAT32_FILE), "rb").read())
  with pytest.raises(inference.ModelError, match="m.tflite: no config.json beside the .tflite file"):
    inference.load_predictor(str(lonely / "m.tflite"))
  with pytest.raises(inference.ModelError, match="missing.tflite: model not found"):
    inference.load_predictor(str(tmp_path / "missing.tflite"))
