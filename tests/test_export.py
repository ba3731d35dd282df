"""Export round trip: the SavedModel reproduces the Keras model, also without this package; streaming signature."""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import cli_runner
from conftest import tiny
from omg_cnnrnn import experiments, losses, models, serving

pytestmark = pytest.mark.slow  # each test exports or loads a SavedModel


def _testing():
  """The testing row with a tiny backbone (conftest.tiny): these tests are about the export, not VGG-16."""
  return tiny(experiments.get("testing"))


def _model():
  config = _testing()
  return models.build_model(config.model, image_size=config.data.image_size), config


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  """One model and its SavedModel, shared read-only by the tests that only read them."""
  model, config = _model()
  return model, config, serving.export_saved_model(model, config, str(tmp_path_factory.mktemp("export") / "sm"))


def test_saved_model_matches_keras_outputs(exported):
  model, config, path = exported
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


def test_saved_model_loads_without_the_package(exported, tmp_path):
  model, config, path = exported
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


def _cnn_only_config():
  config = _testing()
  stream = dataclasses.replace(config.model.streams[0], rnn_inputs=())
  return dataclasses.replace(config, name="testing_cnn_only",
                             model=dataclasses.replace(config.model, streams=(stream,)))


def _stream(signature, frames, mask, state, chunk):
  outs = []
  for a in range(0, frames.shape[1], chunk):
    out = signature(frames=tf.constant(frames[:, a:a + chunk]), mask=tf.constant(mask[:, a:a + chunk]),
                    state=tf.constant(state))
    outs.append(out["per_frame"].numpy())
    state = out["state"].numpy()
  return np.concatenate(outs, axis=1), state


def test_streaming_signature_equals_whole_sequence(exported):
  model, config, path = exported
  loaded = tf.saved_model.load(path)
  rng = np.random.default_rng(1)
  frames = rng.integers(0, 256, (2, 13, 32, 32, 3), dtype=np.uint8)
  mask = np.ones((2, 13), np.float32)
  mask[0, 4:9] = 0  # face lost across a chunk boundary
  mask[1, 10:] = 0  # ... and at the end
  whole = loaded.signatures["serve_with_mask"](frames=tf.constant(frames), mask=tf.constant(mask))["per_frame"]
  state = loaded.signatures[serving.INITIAL_STATE_SIGNATURE](batch_size=tf.constant(2))["state"].numpy()
  # testing row: one RNN branch of 2 GRU layers of 8 units.
  assert state.shape == (2, 2, 8) and not state.any()
  streamed, final = _stream(loaded.signatures[serving.STREAMING_SIGNATURE], frames, mask, state, chunk=3)
  valid = mask > 0
  np.testing.assert_allclose(streamed[valid], whole.numpy()[valid], atol=1e-5)
  assert np.abs(final).max() > 0

  # A chunk without any face hands its input state back unchanged.
  sig = loaded.signatures[serving.STREAMING_SIGNATURE]
  out = sig(frames=tf.constant(frames[:, :4]), mask=tf.zeros((2, 4)), state=tf.constant(final))
  np.testing.assert_array_equal(out["state"].numpy(), final)
  # The state shape is fixed by the signature: a wrong one is refused.
  with pytest.raises((ValueError, TypeError, tf.errors.InvalidArgumentError)):
    sig(frames=tf.constant(frames[:, :4]), mask=tf.ones((2, 4)), state=tf.zeros((2, 3, 8)))


def test_saved_model_holds_one_copy_of_the_weights(exported):
  model, config, path = exported
  stored = tf.train.list_variables(os.path.join(path, "variables", "variables"))
  # Dropout RNG states (tf.random.Generator, present once training.set_seed has run) are not weights.
  weights = [shape for name, shape in stored if "OBJECT_GRAPH" not in name and "_random_generator" not in name]
  assert sum(int(np.prod(shape)) for shape in weights) == model.count_params()


def test_cnn_only_streaming_has_a_zero_width_state(tmp_path):
  config = _cnn_only_config()
  model = models.build_model(config.model, image_size=32)
  loaded = tf.saved_model.load(serving.export_saved_model(model, config, str(tmp_path / "sm")))
  state = loaded.signatures[serving.INITIAL_STATE_SIGNATURE](batch_size=tf.constant(1))["state"].numpy()
  assert state.shape == (1, 0, config.model.rnn_units)
  frames = np.random.default_rng(2).integers(0, 256, (1, 5, 32, 32, 3), dtype=np.uint8)
  mask = np.ones((1, 5), np.float32)
  streamed, final = _stream(loaded.signatures[serving.STREAMING_SIGNATURE], frames, mask, state, chunk=2)
  expected = model({"frames": (frames.astype(np.float32) - 128) / 128, "mask": mask}, training=False).numpy()
  np.testing.assert_allclose(streamed, expected, rtol=1e-5, atol=1e-6)
  assert final.shape == (1, 0, config.model.rnn_units)


def _outputs(path, frames):
  return tf.saved_model.load(path).signatures["serving_default"](frames=tf.constant(frames))["per_frame"].numpy()


def _seeded_model(seed):
  config = _testing()
  tf_keras.utils.set_random_seed(seed)
  return models.build_model(config.model, image_size=config.data.image_size), config


def test_export_refuses_a_folder_it_did_not_write(exported, tmp_path):
  model, config, _ = exported
  workdir = tmp_path / "workdir"  # A training workdir given by mistake: its checkpoints must survive.
  (workdir / "checkpoints").mkdir(parents=True)
  (workdir / "checkpoints" / "ckpt-4.index").write_bytes(b"x")
  (workdir / "config.json").write_text(config.to_json())
  with pytest.raises(serving.ExportDirError, match=f"--export_dir={workdir}: a non-empty folder that is not a "
                                                  r"SavedModel written by omg_cnnrnn.export \(holds \['checkpoints'\]"):
    serving.export_saved_model(model, config, str(workdir))
  assert sorted(os.listdir(workdir)) == ["checkpoints", "config.json"]
  assert os.listdir(workdir / "checkpoints") == ["ckpt-4.index"]
  notes = tmp_path / "notes"
  notes.mkdir()
  (notes / "saved_model.pb").write_bytes(b"")  # Only our file names, but no config.json: not ours either.
  with pytest.raises(serving.ExportDirError, match=r"lacks \['config.json'\]"):
    serving.export_saved_model(model, config, str(notes))
  (tmp_path / "file").write_text("x")
  with pytest.raises(serving.ExportDirError, match="is not a folder"):
    serving.export_saved_model(model, config, str(tmp_path / "file"))
  assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]  # nothing written beside them
  (tmp_path / "empty").mkdir()
  serving.export_saved_model(model, config, str(tmp_path / "empty"))  # an empty folder is fine


def test_reexport_swaps_the_new_model_in_and_a_failed_one_keeps_the_old(tmp_path, monkeypatch):
  frames = np.random.default_rng(1).integers(0, 256, (1, 3, 32, 32, 3), dtype=np.uint8)
  first, config = _seeded_model(1)
  second, _ = _seeded_model(2)
  path = serving.export_saved_model(first, config, str(tmp_path / "sm"))
  want_first = _outputs(path, frames)
  serving.export_saved_model(second, config, str(tmp_path / "sm"))
  want_second = _outputs(path, frames)
  assert not np.allclose(want_first, want_second)
  assert sorted(os.listdir(tmp_path)) == ["sm"]  # the old one deleted, no temporary folders

  real_save = tf.saved_model.save

  def killed_midway(module, target, **kwargs):
    real_save(module, target, **kwargs)
    raise KeyboardInterrupt("killed while writing")

  monkeypatch.setattr(tf.saved_model, "save", killed_midway)
  with pytest.raises(KeyboardInterrupt):
    serving.export_saved_model(first, config, path)
  monkeypatch.undo()
  np.testing.assert_array_equal(_outputs(path, frames), want_second)
  assert sorted(os.listdir(tmp_path)) == ["sm"]

  # A run killed between its two renames left the old export aside and no model in place,
  # beside a half-written new one: the next export puts the old one back before it starts.
  os.replace(path, tmp_path / ".sm.old-999999999-0000abcd")
  (tmp_path / ".sm.new-999999999-0000abcd").mkdir()
  serving._recover(path)
  np.testing.assert_array_equal(_outputs(path, frames), want_second)
  assert sorted(os.listdir(tmp_path)) == ["sm"]


def test_help_of_predict_and_export_says_a_saved_model_must_be_trusted():
  for module in ("omg_cnnrnn.predict", "omg_cnnrnn.export"):
    out = cli_runner.run(module, ["--helpfull"])
    text = " ".join((out.stdout + out.stderr).split())
    assert "A SavedModel is a program" in text and "trusted" in text, module
    assert "workdir" in text and "no graph" in text, module
    assert ".tflite" in text, module  # export --tflite writes them, omg-predict --model runs them
