"""TF1 checkpoint and VGG-Face h5 conversion: parity with the released graphs, strictness, the command.

The released checkpoints cannot be downloaded here, so each test builds the
released graph with tf.compat.v1 (`tf1_reference.py`, the authors' scopes and
cells), fills random weights, saves a TF1 checkpoint, converts it and compares
outputs on the same frames. Frames are 64x64 (pool5 2x2 and conv5_3 4x4, so the
flatten order matters), 2 sequences of 3 frames.
"""

import json
import os
import sys

import h5py
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

sys.path.insert(0, os.path.dirname(__file__))
import cli_runner  # noqa: E402
import tf1_reference as ref  # noqa: E402

from omg_cnnrnn import experiments, models, tf1_weights, training  # noqa: E402

SIZE = 64
_RNG = np.random.default_rng(7)
U8 = _RNG.integers(0, 256, (2, 3, SIZE, SIZE, 3), dtype=np.uint8)
FRAMES = (U8.astype(np.float32) - 128.0) / 128.0  # The released scaling, as in our pipeline.
MASK = np.ones((2, 3), np.float32)
TOLERANCE = 1e-4
MEASURED = {}  # Max abs differences, printed at the end of the module (pytest -s).


def _tf11_names(name):
  """TF 1.1 GRUCell spellings (the OMG code's TF version): weights/biases instead of kernel/bias."""
  if "gru_cell" in name:
    return name.replace("/kernel", "/weights").replace("/bias", "/biases")
  return name


@pytest.fixture(scope="module")
def released(tmp_path_factory):
  """Runs (and caches) a released TF1 graph: (checkpoint prefix, endpoints, variable values)."""
  cache = {}

  def get(name, dropout_wrapper=False, rename=None):
    key = (name, dropout_wrapper, rename)
    if key not in cache:
      prefix = str(tmp_path_factory.mktemp(name) / "model.ckpt-0")
      out, values = ref.run_released(name, FRAMES, prefix, seed=len(cache), dropout_wrapper=dropout_wrapper,
                                     rename=rename)
      cache[key] = (prefix, out, values)
    return cache[key]

  yield get
  if MEASURED:
    print("\nmax |keras - tf1| per released model:", json.dumps(MEASURED, indent=1))


def _model(name):
  config = tf1_weights.released_config(name, image_size=SIZE)
  return models.build_model(config.model, image_size=SIZE), config


def _predict(model):
  return model({"frames": FRAMES, "mask": MASK}, training=False).numpy().reshape(-1, 2)


# (released model, OMG training-graph DropoutWrapper cells, TF 1.1 GRU names, TF1 variables, Keras layers)
PARITY = [
    ("affwildnet_vggface_gru", False, False, 38, 17),
    ("affwildnet_resnet_gru", False, False, 275, 109),
    ("vggface_4096x4096x2", False, False, 32, 16),
    ("vggface_4096x2000x2", False, False, 32, 16),
    ("omg_cnn_gru_1rnn", True, True, 38, 17),
    ("omg_cnn_gru_3rnn", True, False, 54, 21),
]
# The fast tier checks one released model (VGG-Face, a GRU, the TF 1.1 names); the whole suite all
# six (each builds a TF1 graph and a full-size model: seconds).
FAST_PARITY = ("omg_cnn_gru_1rnn",)


@pytest.mark.parametrize("name,wrapper,tf11,num_vars,num_layers", [
    pytest.param(*p, id=p[0], marks=() if p[0] in FAST_PARITY else pytest.mark.slow) for p in PARITY])
def test_converted_model_matches_the_tf1_graph(released, name, wrapper, tf11, num_vars, num_layers):
  prefix, tf1_out, _ = released(name, wrapper, _tf11_names if tf11 else None)
  model, config = _model(name)
  report = tf1_weights.load_tf1_checkpoint(model, config.model, prefix, name)
  assert (report["missing"], report["shape_mismatch"], report["unexpected"], report["fresh"]) == ([], [], [], [])
  assert len(report["loaded"]) == num_vars and len(report["keras_loaded"]) == num_layers
  if tf11:
    assert "rnn_out_fc_max_pool_1/rnn/multi_rnn_cell/cell_0/gru_cell/gates/weights" in report["loaded"]
  json.dumps(report)  # training.warm_start stores it as JSON.

  diff = float(np.abs(_predict(model) - tf1_out["prediction"]).max())
  MEASURED[name] = diff
  assert diff < TOLERANCE
  assert np.abs(tf1_out["prediction"]).max() > 0.05  # Not a trivially zero output.
  backbone = config.model.streams[0].backbone
  taps = models.feature_taps(model, backbone)(FRAMES.reshape((-1, SIZE, SIZE, 3)))
  pool5 = tf.reshape(taps["pool5"], (FRAMES.shape[0] * FRAMES.shape[1], -1)).numpy()
  np.testing.assert_allclose(pool5, tf1_out["pool5"], rtol=1e-4, atol=1e-4)


def test_gru_mapping_matches_tf1_cells_and_swapped_gates_do_not():
  rng = np.random.default_rng(3)
  x = rng.normal(size=(2, 5, 7)).astype(np.float32)
  with tf.Graph().as_default() as graph:
    inputs = tf.compat.v1.placeholder(tf.float32, x.shape)
    with tf.compat.v1.variable_scope("rnn_1"):
      outputs = ref.gru_rnn(inputs, 2, 5, 4)
    variables = tf.compat.v1.global_variables()
    with tf.compat.v1.Session(graph=graph) as sess:
      values = {v.op.name: ref.random_value(v.op.name, v.shape, rng).astype(np.float32) for v in variables}
      ref._assign_all(sess, {v.op.name: v for v in variables}, values)
      expected = sess.run(outputs, {inputs: x}).reshape(2, 5, 4)

  def keras_stack(swap_gates):
    seq = tf_keras.Sequential([tf_keras.Input((5, 7))] + [
        tf_keras.layers.GRU(4, return_sequences=True, reset_after=False) for _ in range(2)])
    for cell, layer in enumerate(seq.layers):
      assignment = tf1_weights._gru(f"gru{cell}", layer, f"rnn_1/rnn/multi_rnn_cell/cell_{cell}")
      got = {}
      for source in assignment.sources:
        value = values[source.candidates[0]]
        if swap_gates and source.role.startswith("gates"):
          value = np.concatenate([value[..., 4:], value[..., :4]], axis=-1)  # r <-> u.
        got[source.role] = value
      layer.set_weights(assignment.convert(got))
    return seq(x).numpy()

  assert np.abs(keras_stack(False) - expected).max() < 1e-5
  assert np.abs(keras_stack(True) - expected).max() > 1e-2


def _broken_checkpoint(values, path):
  """conv_5 (conv3_1) with 200 maps, no output bias, plus a step counter and a stray variable."""
  broken = dict(values)
  broken["conv_5/weights"] = np.zeros((3, 3, 128, 200), np.float32)
  del broken["rnn_1/biases_rnn"]
  broken["global_step"] = np.zeros((), np.float32)
  broken["extra/thing"] = np.ones((3,), np.float32)
  return ref.write_checkpoint(broken, str(path / "model.ckpt-5"))


@pytest.mark.slow  # full-size models (seconds); the fast tier keeps one parity check above
def test_strict_load_names_wrong_shapes_and_missing_variables_and_changes_nothing(released, tmp_path):
  _, _, values = released("affwildnet_vggface_gru")
  prefix = _broken_checkpoint(values, tmp_path)
  model, config = _model("affwildnet_vggface_gru")
  before = [w.numpy() for w in model.weights]
  conv3_1 = model.get_layer("vgg16").get_layer("conv3_1").kernel.numpy()
  with pytest.raises(tf1_weights.TF1CheckpointError) as err:
    tf1_weights.load_tf1_checkpoint(model, config.model, prefix, "affwildnet_vggface_gru")
  message = str(err.value)
  assert "shape mismatch: conv_5/weights has shape (3, 3, 128, 200)" in message
  assert "vgg16/conv3_1 needs (3, 3, 128, 256)" in message
  assert "missing variable rnn_1/biases_rnn" in message
  assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, model.weights))

  report = tf1_weights.load_tf1_checkpoint(model, config.model, prefix, "affwildnet_vggface_gru", allow_partial=True)
  assert [m["variable"] for m in report["shape_mismatch"]] == ["conv_5/weights"]
  assert report["missing"] == ["rnn_1/biases_rnn"]
  assert report["unexpected"] == ["extra/thing"] and report["ignored"] == ["global_step"]
  assert report["fresh"] == ["vgg16/conv3_1", "output"]
  assert len(report["loaded"]) == 38 - 4  # conv_5 weights+biases, weights_rnn+biases_rnn
  np.testing.assert_array_equal(model.get_layer("vgg16").get_layer("conv3_2").kernel.numpy(), values["conv_6/weights"])
  np.testing.assert_array_equal(model.get_layer("vgg16").get_layer("conv3_1").kernel.numpy(), conv3_1)


@pytest.mark.slow  # full-size models (seconds); the fast tier keeps one parity check above
def test_bad_inputs_fail_clearly(released, tmp_path):
  prefix, _, _ = released("affwildnet_vggface_gru")
  model, config = _model("affwildnet_vggface_gru")
  with pytest.raises(FileNotFoundError, match="nowhere/model.ckpt-1"):
    tf1_weights.load_tf1_checkpoint(model, config.model, str(tmp_path / "nowhere/model.ckpt-1"), "affwildnet_vggface_gru")
  with pytest.raises(ValueError, match="unknown released model 'vgg'.*affwildnet_resnet_gru"):
    tf1_weights.load_tf1_checkpoint(model, config.model, prefix, "vgg")
  with pytest.raises(tf1_weights.TF1CheckpointError, match="resnet50 stream.*vgg16"):
    tf1_weights.load_tf1_checkpoint(model, config.model, prefix, "affwildnet_resnet_gru", allow_partial=True)
  import dataclasses

  cudnn = dataclasses.replace(config.model, gru_reset_after=True)
  with pytest.raises(tf1_weights.TF1CheckpointError, match="reset_after"):
    tf1_weights.load_tf1_checkpoint(models.build_model(cudnn, image_size=SIZE), cudnn, prefix, "affwildnet_vggface_gru")
  small = models.build_model(config.model, image_size=32)  # pool5 1x1: linear_1 has 512 rows, not 2048.
  with pytest.raises(tf1_weights.TF1CheckpointError, match=r"linear_1/weights has shape \(2048, 4096\).*image size"):
    tf1_weights.load_tf1_checkpoint(small, config.model, prefix, "affwildnet_vggface_gru")


@pytest.mark.slow  # full-size models (seconds); the fast tier keeps one parity check above
def test_partial_warm_start_of_cnn_3rnn_from_affwildnet(released):
  prefix, tf1_out, values = released("affwildnet_vggface_gru")
  config = experiments.get("table3/cnn_3rnn_last_conv")
  model = models.build_model(config.model, image_size=SIZE)
  with pytest.raises(tf1_weights.TF1CheckpointError, match="vgg16_rnn_conv5_3_gru1 has no variable"):
    tf1_weights.load_tf1_checkpoint(model, config.model, prefix, "affwildnet_vggface_gru")
  output_before = model.get_layer("output").kernel.numpy()
  result = training.warm_start(model, config.model, [f"tf1:{prefix}"], SIZE)  # Layout detected from the names.
  report = result["sources"][0]["report"]
  assert report["released_model"] == "affwildnet_vggface_gru"
  assert [m["variable"] for m in report["shape_mismatch"]] == ["rnn_1/weights_rnn"]
  assert report["missing"] == [] and report["unexpected"] == []
  assert sorted(report["fresh"]) == ["output", "vgg16_rnn_conv5_3_gru1", "vgg16_rnn_conv5_3_gru2",
                                     "vgg16_rnn_pool5_gru1", "vgg16_rnn_pool5_gru2"]
  assert {"vgg16_fc1", "vgg16_rnn_fc1_gru1", "vgg16_rnn_fc1_gru2"} <= set(report["keras_loaded"])
  np.testing.assert_array_equal(model.get_layer("output").kernel.numpy(), output_before)
  np.testing.assert_array_equal(model.get_layer("vgg16_fc1").kernel.numpy(), values["linear_1/weights"])
  fc1 = models.feature_taps(model)(FRAMES.reshape((-1, SIZE, SIZE, 3)))["fc1"].numpy()
  np.testing.assert_allclose(fc1, tf1_out["fc1"], rtol=1e-4, atol=1e-4)
  # The explicit form `tf1:<released>@<prefix>` names the layout.
  named = training.warm_start(model, config.model, [f"tf1:affwildnet_vggface_gru@{prefix}"], SIZE)
  assert named["sources"][0]["report"]["released_model"] == "affwildnet_vggface_gru"


@pytest.mark.slow  # a full-width conversion and SavedModel: half a minute or more on 2 cores
def test_command_writes_checkpoint_savedmodel_and_init_from_source_and_refuses_a_broken_checkpoint(
    released, tmp_path):
  name = "affwildnet_vggface_gru"
  prefix, tf1_out, values = released(name)
  (tmp_path / "broken").mkdir()
  broken = _broken_checkpoint(values, tmp_path / "broken")
  out_dir = tmp_path / "converted"
  # The command line in this process (tests/cli_runner.py): no Python and TensorFlow start-up to pay.
  bad = cli_runner.run("omg_cnnrnn.tf1", [f"--checkpoint={broken}", f"--released_model={name}",
                                          f"--output_dir={tmp_path / 'out'}", f"--image_size={SIZE}"])
  bad_err = bad.stderr
  good = cli_runner.run("omg_cnnrnn.tf1", [f"--checkpoint={prefix}", f"--released_model={name}",
                                           f"--output_dir={out_dir}", f"--image_size={SIZE}"])
  good_err = good.stderr

  assert bad.returncode != 0
  assert "conv_5/weights" in bad_err and "rnn_1/biases_rnn" in bad_err
  assert not (tmp_path / "out" / "checkpoints").exists()

  assert good.returncode == 0, good_err[-3000:]
  for path in ("config.json", "conversion_report.json", "checkpoints/ckpt-0.index", "saved_model/saved_model.pb"):
    assert (out_dir / path).exists(), path
  report = json.loads((out_dir / "conversion_report.json").read_text())
  assert len(report["tf1"]["loaded"]) == 38 and report["tf1"]["missing"] == []

  served = tf.saved_model.load(str(out_dir / "saved_model")).signatures["serving_default"](frames=tf.constant(U8))
  diff = float(np.abs(served["per_frame"].numpy().reshape(-1, 2) - tf1_out["prediction"]).max())
  MEASURED[f"{name} (command, SavedModel on uint8)"] = diff
  assert diff < TOLERANCE

  config_path, ckpt = training._resolve_source(str(out_dir))
  assert config_path == str(out_dir / "config.json") and ckpt.endswith("checkpoints/ckpt-0")
  config = experiments.get("table3/cnn_rnn")
  model = models.build_model(config.model, image_size=SIZE)
  result = training.warm_start(model, config.model, [str(out_dir)], SIZE)
  assert result["fresh"] == [] and len(result["loaded"]) == 17
  assert np.abs(_predict(model) - tf1_out["prediction"]).max() < TOLERANCE


def _rcmalli_vgg16(size, first_filters=64, skip=()):
  """rcmalli keras-vggface VGG16 without top: conv1_1 ... conv5_3 (ReLU, same), pool1 ... pool5 (2x2/2)."""
  layers = [tf_keras.Input((size, size, 3))]
  channels = (64, 128, 256, 512, 512)
  for block, reps in enumerate((2, 2, 3, 3, 3), start=1):
    for i in range(1, reps + 1):
      name = f"conv{block}_{i}"
      if name in skip:
        continue
      filters = first_filters if name == "conv1_1" else channels[block - 1]
      layers.append(tf_keras.layers.Conv2D(filters, 3, activation="relu", padding="same", name=name))
    layers.append(tf_keras.layers.MaxPooling2D(2, 2, name=f"pool{block}"))
  return tf_keras.Sequential(layers, name="vggface_vgg16")


@pytest.mark.slow  # full-size models (seconds); the fast tier keeps one parity check above
def test_vggface_h5_in_the_keras_layout_loads_into_the_backbone(tmp_path):
  reference = _rcmalli_vgg16(32)
  for w in reference.weights:
    w.assign(np.random.default_rng(len(w.name)).normal(0, 0.05, w.shape))
  path = str(tmp_path / "rcmalli_vggface_tf_notop_vgg16.h5")
  reference.save_weights(path)
  with h5py.File(path, "r") as f:  # The layout the loader reads (Keras 2 save_weights).
    assert "conv1_1" in tf1_weights._decode(f.attrs["layer_names"])  # bytes in Keras 2 era files, str now.
    assert tf1_weights._decode(f["conv1_1"].attrs["weight_names"]) == ["conv1_1/kernel:0", "conv1_1/bias:0"]
    assert f["conv5_3/conv5_3/kernel:0"].shape == (3, 3, 512, 512)

  model = models.build_model(experiments.get("table3/cnn_rnn").model, image_size=32)
  report = tf1_weights.load_vggface_h5(model, path)
  assert len(report["loaded"]) == 13 and report["unexpected"] == []
  x = FRAMES[0, :, :32, :32]
  expected = tf_keras.Model(reference.inputs, reference.get_layer("conv5_3").output)(x).numpy()
  got = model.get_layer("vgg16")(x)["conv5_3"].numpy()
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)

  missing = str(tmp_path / "missing.h5")
  _rcmalli_vgg16(32, skip=("conv5_3",)).save_weights(missing)
  with pytest.raises(ValueError, match=r"missing.*\['conv5_3'\]"):
    tf1_weights.load_vggface_h5(model.get_layer("vgg16"), missing)
  wrong = str(tmp_path / "wrong.h5")
  _rcmalli_vgg16(32, first_filters=32).save_weights(wrong)
  with pytest.raises(ValueError, match=r"conv1_1 has kernel \(3, 3, 3, 32\)"):
    tf1_weights.load_vggface_h5(model, wrong)
  with pytest.raises(FileNotFoundError, match="nope.h5"):
    tf1_weights.load_vggface_h5(model, str(tmp_path / "nope.h5"))


def test_fresh_gru_biases_start_as_tf1_grucell_initialises_them():
  units, inputs = 5, 3
  with tf.Graph().as_default():
    gru_cell = ref._rnn_cells()[0](units)
    x = tf.compat.v1.placeholder(tf.float32, (1, 2, inputs))
    tf.compat.v1.nn.dynamic_rnn(gru_cell, x, dtype=tf.float32)
    with tf.compat.v1.Session() as sess:
      sess.run(tf.compat.v1.global_variables_initializer())
      values = {v.name: sess.run(v) for v in tf.compat.v1.global_variables()}
  gates = next(v for k, v in values.items() if "gates" in k and ("bias" in k))
  candidate = next(v for k, v in values.items() if "candidate" in k and ("bias" in k))
  r, u = gates[:units], gates[units:]
  want = np.concatenate([u, r, candidate])  # Keras order [z (= u), r, h], as the converter maps it.
  config = experiments.get("testing").model
  model = models.build_model(config, image_size=32)
  bias = model.get_layer("vgg16_rnn_conv5_3_pool5_fc1_gru1").cell.bias.numpy()
  np.testing.assert_array_equal(np.concatenate([bias[:units], bias[config.rnn_units:config.rnn_units + units],
                                                bias[2 * config.rnn_units:2 * config.rnn_units + units]]), want)
  assert want.tolist() == [1.0] * (2 * units) + [0.0] * units
