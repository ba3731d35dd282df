"""Model tests: pinned parameter counts, tap shapes, forward passes, masking, GRU semantics."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import omg_cnnrnn
from conftest import tiny
from omg_cnnrnn import configs, experiments, models
from omg_cnnrnn.models import backbones

# Parameter counts at the paper's 96x96 input, pinned for every registered row
# (vision_transformer models_test habit). Cross-checked by `_paper_count` below.
PINNED_PARAMS = {
    "table3/cnn_only": 41_987_906,
    "table3/cnn_rnn": 35_314_498,
    "table3/cnn_1rnn": 44_161_858,
    "table3/cnn_1rnn_released": 37_083_970,
    "table3/cnn_2rnn": 37_232_450,
    "table3/cnn_2rnn_fc": 37_248_514,
    "table3/cnn_3rnn_2nd_last_conv": 44_458_818,
    "table3/cnn_3rnn_last_conv": 44_458_818,
    "table3/cnn_3rnn_fc": 44_482_818,
    # Released-code CNN-3RNN (train_script.py --h_units=256): GRUs of 256 units, output 768 -> 2.
    "table3/cnn_3rnn_2nd_last_conv_released": 56_209_218,
    "table3/cnn_3rnn_last_conv_released": 56_209_218,
    "table3/cnn_3rnn_fc_released": 56_257_026,
    "table4/cnn_only": 23_565_250,
    "table4/cnn_rnn": 24_496_066,
    "table4/cnn_fc_rnn": 33_675_202,
    "table5/vgg_fc_rnn_resnet_rnn": 59_810_562,
    "table5/vgg_fc_rnn_resnet_fc_rnn": 68_989_698,
    "table5/vgg_fc_rnn_resnet_rnn_fc": 59_826_626,
    "table5/vgg_fc_rnn_resnet_fc_rnn_fc": 69_005_762,
    "table6/vgg16_1rnn_post": 44_161_858,
    "table6/vgg16_3rnn_last_conv_post": 44_458_818,
    "table6/vgg16_1rnn_released_post": 37_083_970,
    "table6/vgg16_3rnn_last_conv_released_post": 56_209_218,
    "table6/resnet_rnn_post": 24_496_066,
    "table6/fusion_post": 59_810_562,
    "testing": 15_342_418,
}

# Independent counts from the paper's layer sizes (Table I, Table II, Sec. IV), no Keras involved.
VGG_CONV = sum(9 * cin * cout + cout for cin, cout in [
    (3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
    (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)])
# ResNet-50 v1 without conv biases (slim): convolutions plus 4 batch-norm vectors per conv.
def _resnet50():
  total = 7 * 7 * 3 * 64 + 4 * 64
  cin = 64
  for base, units in [(64, 3), (128, 4), (256, 6), (512, 3)]:
    for unit in range(units):
      if cin != 4 * base:
        total += cin * 4 * base + 4 * 4 * base  # 1x1 projection shortcut
      total += cin * base + 4 * base + 9 * base * base + 4 * base + base * 4 * base + 4 * 4 * base
      cin = 4 * base
  return total
RESNET = _resnet50()
CONV5 = 6 * 6 * 512  # conv5_2 / conv5_3 at 96x96
POOL5 = 3 * 3 * 512


def _dense(i, o):
  return i * o + o


def _gru2(i, h=128):  # TF1 GRUCell form: one bias per gate (reset_after=False)
  return 3 * (i * h + h * h + h) + 3 * (h * h + h * h + h)


def _paper_count(name):
  fc1 = _dense(POOL5, 4096)
  return {
      "table3/cnn_only": VGG_CONV + fc1 + _dense(4096, 2048) + _dense(2048, 2),
      "table3/cnn_rnn": VGG_CONV + fc1 + _gru2(4096) + _dense(128, 2),
      "table3/cnn_1rnn": VGG_CONV + fc1 + _gru2(CONV5 + POOL5 + 4096) + _dense(128, 2),
      "table3/cnn_2rnn": VGG_CONV + fc1 + _gru2(POOL5) + _gru2(4096) + _dense(256, 2),
      "table3/cnn_2rnn_fc": VGG_CONV + fc1 + _gru2(POOL5) + _gru2(4096) + _dense(256, 64) + _dense(64, 2),
      "table3/cnn_3rnn_last_conv": VGG_CONV + fc1 + _gru2(CONV5) + _gru2(POOL5) + _gru2(4096) + _dense(384, 2),
      "table3/cnn_1rnn_released": VGG_CONV + fc1 + _gru2(4096 + POOL5) + _dense(128, 2),
      "table3/cnn_3rnn_last_conv_released": (VGG_CONV + fc1 + _gru2(CONV5, 256) + _gru2(POOL5, 256)
                                             + _gru2(4096, 256) + _dense(768, 2)),
      "table3/cnn_3rnn_fc_released": (VGG_CONV + fc1 + _gru2(CONV5, 256) + _gru2(POOL5, 256) + _gru2(4096, 256)
                                      + _dense(768, 64) + _dense(64, 2)),
      "table4/cnn_only": RESNET + _dense(2048, 2),
      "table4/cnn_rnn": RESNET + _gru2(2048) + _dense(128, 2),
      "table4/cnn_fc_rnn": RESNET + _dense(2048, 4096) + _gru2(4096) + _dense(128, 2),
      "table5/vgg_fc_rnn_resnet_rnn": VGG_CONV + fc1 + _gru2(4096) + RESNET + _gru2(2048) + _dense(256, 2),
  }[name]


def _resnet_rows_slow(names, fast=None):
  """`names` for a parametrize, rows with a ResNet-50 stream marked slow: a full-size ResNet-50 takes
  seconds to build, so those run in the whole suite only (README, Contributing: the test tiers).
  With `fast` given, every row outside it is marked slow too."""
  def slow(name):
    resnet = any(s.backbone == "resnet50" for s in experiments.get(name).model.streams)
    return resnet or (fast is not None and name not in fast)
  return [pytest.param(n, marks=pytest.mark.slow) if slow(n) else n for n in names]


# Full-size VGG-16 rows whose pinned count the fast tier checks (each build takes a second or two):
# no RNN, one RNN on the FC layer, and the released three-GRU row. The whole suite checks every row.
FAST_PINS = ("table3/cnn_only", "table3/cnn_1rnn", "table3/cnn_3rnn_fc_released")


@pytest.fixture(scope="module")
def built_96():
  """Parameter count of a row's model at 96x96, built once per model config (Table VI rows reuse their base's)."""
  cache = {}

  def get(name):
    key = experiments.get(name).model  # a frozen dataclass: rows with equal configs build equal models
    if key not in cache:
      tf_keras.backend.clear_session()
      cache[key] = omg_cnnrnn.build_model(name, image_size=96).count_params()
    return cache[key]

  return get


def test_every_registered_row_has_a_pin():
  missing = sorted(set(experiments.names()) - set(PINNED_PARAMS))
  stale = sorted(set(PINNED_PARAMS) - set(experiments.names()))
  assert not missing, f"registered experiments without a pinned parameter count: {missing}"
  assert not stale, f"pinned counts for unregistered experiments: {stale}"


@pytest.mark.parametrize("name", _resnet_rows_slow(sorted(PINNED_PARAMS), fast=FAST_PINS))
def test_parameter_count_is_pinned(name, built_96):
  assert built_96(name) == PINNED_PARAMS[name]


@pytest.mark.parametrize("name", ["table3/cnn_only", "table3/cnn_rnn", "table3/cnn_1rnn", "table3/cnn_2rnn",
                                  "table3/cnn_2rnn_fc", "table3/cnn_3rnn_last_conv", "table3/cnn_1rnn_released",
                                  "table3/cnn_3rnn_last_conv_released", "table3/cnn_3rnn_fc_released",
                                  "table4/cnn_only",
                                  "table4/cnn_rnn", "table4/cnn_fc_rnn", "table5/vgg_fc_rnn_resnet_rnn"])
def test_parameter_count_matches_the_papers_layer_sizes(name):
  assert PINNED_PARAMS[name] == _paper_count(name)


def test_vgg_tap_shapes_at_96():
  model = omg_cnnrnn.build_model("table3/cnn_only")
  taps = models.feature_taps(model, "vgg16")
  out = taps(np.zeros((2, 96, 96, 3), np.float32))
  assert tuple(out["conv5_2"].shape) == (2, 6, 6, 512)
  assert tuple(out["conv5_3"].shape) == (2, 6, 6, 512)
  assert tuple(out["pool5"].shape) == (2, 3, 3, 512)
  assert tuple(out["fc1"].shape) == (2, 4096)
  assert tuple(out["fc2"].shape) == (2, 2048)
  for name in ("conv5_2", "conv5_3", "pool5"):
    assert model.get_layer("vgg16").get_layer(name).name == name


@pytest.mark.slow
def test_resnet_pooled_tap_is_2048():
  backbone = models.build_backbone("resnet50")
  out = backbone(np.zeros((1, 96, 96, 3), np.float32))
  assert tuple(out["pool5"].shape) == (1, 2048)
  assert tuple(out["block4"].shape) == (1, 3, 3, 2048)
  names = {layer.name for layer in backbone.layers}
  assert {"conv1", "conv1_bn", "block1_unit_1_shortcut", "block1_unit_3_conv2", "block4_unit_3_conv3_bn"} <= names


@pytest.fixture(scope="module")
def tiny_forward():
  """A row's tiny-input outputs, run once per model config (Table VI rows build their base row's model)."""
  cache = {}

  def get(name):
    config = tiny(experiments.get(name))
    if config.model not in cache:
      tf_keras.backend.clear_session()
      model = models.build_model(config.model, image_size=32)
      rng = np.random.default_rng(0)
      frames = rng.uniform(-1, 1, (2, 3, 32, 32, 3)).astype(np.float32)
      mask = np.array([[1, 1, 1], [1, 1, 0]], np.float32)
      cache[config.model] = model({"frames": frames, "mask": mask}, training=False).numpy()
    return cache[config.model]

  return get


@pytest.mark.parametrize("name", _resnet_rows_slow(experiments.names()))
def test_forward_every_registered_model_on_a_tiny_input(name, tiny_forward):
  """Every row builds and runs; VGG-16 streams at 1/16 width (the real sizes: the pinned counts above)."""
  out = tiny_forward(name)
  assert out.shape == (2, 3, 2)
  assert np.all(np.isfinite(out))
  # Frames are not all mapped to one value: the network responds to its input.
  assert np.std(out[:, :2]) > 0


def _inputs(rng, b=2, t=5, size=32):
  frames = rng.uniform(-1, 1, (b, t, size, size, 3)).astype(np.float32)
  mask = np.ones((b, t), np.float32)
  mask[0, 3:] = 0  # padding at the end
  mask[1, 1] = 0  # a face-less frame in the middle
  return frames, mask


@pytest.fixture(scope="module")
def masking_models():
  """Tiny models of the masking test, one per row for both of its `training` cases (built on first use)."""
  return {}


@pytest.mark.parametrize("name", _resnet_rows_slow(["testing", "table3/cnn_2rnn_fc", "table4/cnn_rnn"]))
@pytest.mark.parametrize("training", [False, True])
def test_masked_frames_do_not_change_valid_predictions(name, training, masking_models):
  # Dropout masks must repeat between the two calls: legacy dropout ops reseeded by
  # tf.random.set_seed (training.set_seed, run by other tests, switches Keras to stateful
  # tf.random.Generators that set_seed does not rewind). The layers pick one or the other when built.
  generator_was_on = tf_keras.backend.experimental.is_tf_random_generator_enabled()
  tf_keras.backend.experimental.disable_tf_random_generator()
  try:
    if name not in masking_models:
      tf_keras.backend.clear_session()
      masking_models[name] = models.build_model(tiny(experiments.get(name)).model, image_size=32)
    model = masking_models[name]
    rng = np.random.default_rng(1)
    frames, mask = _inputs(rng)
    other = frames.copy()
    other[mask == 0] = rng.uniform(-1, 1, other[mask == 0].shape)
    tf.random.set_seed(3)
    a = model({"frames": frames, "mask": mask}, training=training).numpy()
    tf.random.set_seed(3)
    b = model({"frames": other, "mask": mask}, training=training).numpy()
  finally:
    if generator_was_on:
      tf_keras.backend.experimental.enable_tf_random_generator()
  np.testing.assert_allclose(a[mask > 0], b[mask > 0], rtol=1e-5, atol=1e-6)


def test_padding_does_not_change_earlier_predictions():
  """A sequence padded to a longer T predicts its valid frames exactly as the short one does."""
  model = models.build_model(tiny(experiments.get("testing")).model, image_size=32)
  rng = np.random.default_rng(2)
  frames = rng.uniform(-1, 1, (1, 3, 32, 32, 3)).astype(np.float32)
  short = model({"frames": frames, "mask": np.ones((1, 3), np.float32)}).numpy()
  padded = np.concatenate([frames, rng.uniform(-1, 1, (1, 4, 32, 32, 3)).astype(np.float32)], axis=1)
  long = model({"frames": padded, "mask": np.array([[1, 1, 1, 0, 0, 0, 0]], np.float32)}).numpy()
  np.testing.assert_allclose(long[:, :3], short, rtol=1e-5, atol=1e-6)


def test_cnn_only_rows_run_on_single_frames():
  config = tiny(experiments.get("table4/cnn_only"))
  model = models.build_model(config.model, image_size=32)
  single = models.frame_model(model, config.model, image_size=32)
  rng = np.random.default_rng(4)
  frames = rng.uniform(-1, 1, (5, 32, 32, 3)).astype(np.float32)
  per_frame = single(frames, training=False).numpy()
  as_sequence = model({"frames": frames[:, None], "mask": np.ones((5, 1), np.float32)}, training=False).numpy()
  assert per_frame.shape == (5, 2)
  np.testing.assert_allclose(per_frame, as_sequence[:, 0], rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="CNN-only"):
    models.frame_model(model, experiments.get("table3/cnn_rnn").model)


def _numpy_gru_tf1(x, kernel, recurrent, bias, units):
  """TF1 GRUCell semantics (Keras reset_after=False): r gates h before the recurrent matmul."""
  h = np.zeros((x.shape[0], units))
  outs = []
  sig = lambda v: 1 / (1 + np.exp(-v))
  for t in range(x.shape[1]):
    xz, xr, xh = np.split(x[:, t] @ kernel + bias, 3, axis=-1)
    rz, rr = np.split(h @ recurrent[:, : 2 * units], 2, axis=-1)
    z, r = sig(xz + rz), sig(xr + rr)
    hh = np.tanh(xh + (r * h) @ recurrent[:, 2 * units:])
    h = z * h + (1 - z) * hh
    outs.append(h)
  return np.stack(outs, 1)


def test_gru_default_is_tf1_grucell_and_reset_after_switch_works():
  config = tiny(experiments.get("testing")).model
  model = models.build_model(config, image_size=32)
  gru = model.get_layer("vgg16_rnn_conv5_3_pool5_fc1_gru1")
  assert gru.reset_after is False
  kernel, recurrent, bias = (w.numpy() for w in gru.weights)
  assert bias.shape == (3 * config.rnn_units,)
  rng = np.random.default_rng(5)
  x = rng.normal(size=(2, 4, kernel.shape[0])).astype(np.float32)
  np.testing.assert_allclose(gru(x).numpy(), _numpy_gru_tf1(x, kernel, recurrent, bias, config.rnn_units),
                             rtol=1e-4, atol=1e-5)
  cudnn = models.build_model(configs.ModelConfig(streams=config.streams, rnn_units=8, gru_reset_after=True),
                             image_size=32)
  assert cudnn.get_layer("vgg16_rnn_conv5_3_pool5_fc1_gru1").reset_after is True


def test_dropout_rates_follow_the_paper():
  model = omg_cnnrnn.build_model("table3/cnn_3rnn_last_conv")
  assert model.get_layer("vgg16_fc1_dropout").rate == 0.5
  assert model.get_layer("vgg16_rnn_conv5_3_gru2").units == 128
  assert model.get_layer("vgg16_rnn_pool5_dropout1").rate == 0.2
  assert model.get_layer("output").units == 2
  assert model.get_layer("vgg16_fc1").units == 4096


@pytest.mark.parametrize("name", ["table3/cnn_3rnn_2nd_last_conv_released", "table3/cnn_3rnn_last_conv_released",
                                  "table3/cnn_3rnn_fc_released", "table3/cnn_1rnn_released"])
def test_released_rows_have_no_dropout_between_grus_and_3rnn_has_256_units(name):
  """Released code: train_script.py --h_units=256 for CNN_GRU_3RNN, DropoutWrapper(keep_prob=1) around each GRU."""
  model = models.build_model(tiny(experiments.get(name)).model, image_size=32)  # GRU sizes, not VGG-16's
  grus = [layer for layer in model.layers if "_rnn_" in layer.name and "_gru" in layer.name]
  assert (len(grus), {layer.units for layer in grus}) == ((2, {128}) if "1rnn" in name else (6, {256}))
  assert not [layer.name for layer in model.layers if "_rnn_" in layer.name and "dropout" in layer.name]
  assert model.get_layer("vgg16_fc1_dropout").rate == 0.5  # FC1's dropout stays (AffWildNet.py keeps it too)


@pytest.mark.parametrize("name", sorted(backbones.RNN_TAPS))
def test_declared_taps_are_outputs_of_their_backbone(name):
  backbone = models.build_backbone(name, image_size=32)
  assert set(backbones.rnn_taps(name)) <= set(backbone.output)
  with pytest.raises(ValueError, match="unknown backbone"):
    backbones.rnn_taps("vgg19")


def test_invalid_taps_fail_with_the_valid_names():
  bad = configs.ModelConfig(streams=(configs.StreamConfig("resnet50", (), (), (("conv5_3",),)),))
  with pytest.raises(ValueError, match="unknown RNN input taps"):
    models.build_model(bad, image_size=32)


@pytest.mark.slow
def test_resnet_batch_norm_momentum_comes_from_the_config():
  stream = experiments.RESNET_CNN_ONLY
  for momentum in (0.997, 0.9):
    model = models.build_model(configs.ModelConfig(streams=(stream,), batch_norm_momentum=momentum), image_size=32)
    bns = [layer for layer in model.get_layer("resnet50").layers if isinstance(layer, tf_keras.layers.BatchNormalization)]
    assert len(bns) == 53 and {bn.momentum for bn in bns} == {momentum}

