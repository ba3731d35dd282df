"""TF1 (tf.compat.v1, graph mode) re-creations of the authors' released graphs, for parity tests.

Each builder re-creates the variable scopes, cells and reshapes of one released
model (see `omg_cnnrnn.tf1_weights` for the files they were read from): VGG-Face convs
`conv_1..13` with SAME max pools, `linear_*` FC layers, `MultiRNNCell`s of two
`GRUCell`s run by `dynamic_rnn`, slim-style `resnet_v1_50` scopes written by hand
(tf_slim is not installed: `conv2d` without bias + `BatchNorm/{beta, gamma,
moving_mean, moving_variance}` in inference mode, `conv2d_same` explicit padding
for strided convs, the stride in each block's last unit, pool1 SAME). The graphs
are the evaluation graphs (no dropout; `AffWildNet_valid.py`), optionally with
the training graph's `DropoutWrapper(keep_prob=1)` cells.

Everything here must run inside `with tf.Graph().as_default():` (`run_released`
does that), so eager tests elsewhere are not affected.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

v1 = tf.compat.v1

RESNET50_BLOCKS = (("block1", 64, 3, 2), ("block2", 128, 4, 2), ("block3", 256, 6, 2), ("block4", 512, 3, 1))
VGG_CHANNELS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


def _rnn_cells():
  """TF1 GRUCell / MultiRNNCell / DropoutWrapper: tf.compat.v1.nn.rnn_cell, else tf_keras' legacy copies.

  With Keras 3 installed, `tf.compat.v1.nn.rnn_cell` refuses to load; tf_keras ships the
  same legacy classes (same variable names: gates/kernel, gates/bias, candidate/...).
  """
  try:
    cells = v1.nn.rnn_cell
    return cells.GRUCell, cells.MultiRNNCell, cells.DropoutWrapper
  except (AttributeError, ImportError):
    from tf_keras.src.layers.rnn import legacy_cell_wrappers, legacy_cells

    return legacy_cells.GRUCell, legacy_cells.MultiRNNCell, legacy_cell_wrappers.DropoutWrapper


# ----------------------------------------------------------------------------- building blocks
def vgg_face(images):
  """The released VGG-Face conv stack; returns {'conv_13': after ReLU, 'pool_5': last pool}."""
  x, k, out = images, 0, {}
  for block in VGG_CHANNELS:
    for channels in block:
      k += 1
      with v1.variable_scope(f"conv_{k}"):
        kernel = v1.get_variable("weights", [3, 3, int(x.shape[-1]), channels])
        biases = v1.get_variable("biases", [channels])
        x = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, kernel, [1, 1, 1, 1], padding="SAME"), biases))
    out["conv_13"] = x
    x = tf.nn.max_pool2d(x, [1, 2, 2, 1], [1, 2, 2, 1], padding="SAME")
  out["pool_5"] = x
  return out


def _flatten(x, rows):
  return tf.reshape(x, [rows, -1])


def linear(x, scope, units, relu):
  with v1.variable_scope(scope):
    weights = v1.get_variable("weights", [int(x.shape[-1]), units])
    biases = v1.get_variable("biases", [units])
    return (v1.nn.relu_layer if relu else v1.nn.xw_plus_b)(x, weights, biases)


def gru_rnn(x, batch, seq, units, dropout_wrapper=False):
  """MultiRNNCell of 2 GRUCells over `dynamic_rnn` (scope `rnn` inside the caller's); (B*T, units)."""
  gru, multi, dropout = _rnn_cells()
  cells = [gru(units) for _ in range(2)]
  if dropout_wrapper:
    cells = [dropout(c, input_keep_prob=1, output_keep_prob=1) for c in cells]
  feed = tf.reshape(x, [batch, seq, -1])
  outputs, _ = v1.nn.dynamic_rnn(multi(cells), feed, dtype=tf.float32)
  return tf.reshape(outputs, [batch * seq, units])


def _slim_conv(x, depth, kernel, stride, scope, relu=True):
  """slim conv2d (no bias) + BatchNorm (is_training=False) under resnet_arg_scope; conv2d_same if strided."""
  with v1.variable_scope(scope):
    if stride > 1 and kernel > 1:
      beg = (kernel - 1) // 2
      x = tf.pad(x, [[0, 0], [beg, kernel - 1 - beg], [beg, kernel - 1 - beg], [0, 0]])
      padding = "VALID"
    else:
      padding = "SAME"
    weights = v1.get_variable("weights", [kernel, kernel, int(x.shape[-1]), depth])
    x = tf.nn.conv2d(x, weights, [1, stride, stride, 1], padding=padding)
    with v1.variable_scope("BatchNorm"):
      beta = v1.get_variable("beta", [depth])
      gamma = v1.get_variable("gamma", [depth])
      mean = v1.get_variable("moving_mean", [depth], trainable=False)
      variance = v1.get_variable("moving_variance", [depth], trainable=False)
      x = tf.nn.batch_normalization(x, mean, variance, beta, gamma, 1e-5)
    return tf.nn.relu(x) if relu else x


def resnet_v1_50(images):
  """slim resnet_v1_50(num_classes=None, is_training=False): the global-average pool5 (N, 1, 1, 2048)."""
  with v1.variable_scope("resnet_v1_50"):
    x = _slim_conv(images, 64, 7, 2, "conv1")
    x = tf.nn.max_pool2d(x, [1, 3, 3, 1], [1, 2, 2, 1], padding="SAME")  # resnet_arg_scope: pool1 SAME.
    for block, base, units, stride in RESNET50_BLOCKS:
      with v1.variable_scope(block):
        for unit in range(1, units + 1):
          unit_stride = stride if unit == units else 1
          with v1.variable_scope(f"unit_{unit}"), v1.variable_scope("bottleneck_v1"):
            depth = base * 4
            if int(x.shape[-1]) == depth:
              shortcut = x if unit_stride == 1 else tf.nn.max_pool2d(x, 1, unit_stride, padding="SAME")
            else:
              shortcut = _slim_conv(x, depth, 1, unit_stride, "shortcut", relu=False)
            residual = _slim_conv(x, base, 1, 1, "conv1")
            residual = _slim_conv(residual, base, 3, unit_stride, "conv2")
            residual = _slim_conv(residual, depth, 1, 1, "conv3", relu=False)
            x = tf.nn.relu(shortcut + residual)
    return tf.reduce_mean(x, [1, 2], keepdims=True)


# ----------------------------------------------------------------------------- released models
def build_released(name, images, batch, seq, rnn_units=128, dropout_wrapper=False):
  """Builds released model `name` on `images` (B*T, S, S, 3); returns endpoints incl. 'prediction' (B*T, 2)."""
  rows = batch * seq
  if name == "affwildnet_resnet_gru":
    net = resnet_v1_50(images)
    with v1.variable_scope("rnn"):
      outputs = gru_rnn(tf.reshape(net, [batch, seq, -1]), batch, seq, rnn_units, dropout_wrapper)
      weights = v1.get_variable("weights_output", [rnn_units, 2])
      biases = v1.get_variable("biases_output", [2])
      prediction = v1.nn.xw_plus_b(outputs, weights, biases)
    return {"prediction": prediction, "pool5": tf.reshape(net, [rows, -1])}
  vgg = vgg_face(images)
  pool5 = _flatten(vgg["pool_5"], rows)
  out = {"pool5": pool5}
  if name.startswith("vggface_4096x"):
    second = 2000 if name == "vggface_4096x2000x2" else 4096
    fc1 = linear(pool5, "linear_1", 4096, True)
    fc2 = linear(fc1, "linear2_1", second, True)
    out.update(fc1=fc1, fc2=fc2, prediction=linear(fc2, "linear3_1", 2, False))
    return out
  fc1 = linear(pool5, "linear_1", 4096, True)
  out["fc1"] = fc1
  if name == "affwildnet_vggface_gru":
    with v1.variable_scope("rnn_1"):
      outputs = gru_rnn(fc1, batch, seq, rnn_units, dropout_wrapper)
      weights = v1.get_variable("weights_rnn", [rnn_units, 2])
      biases = v1.get_variable("biases_rnn", [2])
      out["prediction"] = v1.nn.xw_plus_b(outputs, weights, biases)
  elif name == "omg_cnn_gru_1rnn":
    with v1.variable_scope("rnn_out_fc_max_pool_1"):
      outputs = gru_rnn(tf.concat([fc1, pool5], 1), batch, seq, rnn_units, dropout_wrapper)
      out["prediction"] = _xw_plus_b(outputs, rnn_units)
  elif name == "omg_cnn_gru_3rnn":
    with v1.variable_scope("rnn_fc_1"):
      rnn_fc = gru_rnn(fc1, batch, seq, rnn_units, dropout_wrapper)
    with v1.variable_scope("rnn_last_conv_1"):
      rnn_conv = gru_rnn(vgg["conv_13"], batch, seq, rnn_units, dropout_wrapper)
    with v1.variable_scope("rnn_max_pool_1"):
      rnn_pool = gru_rnn(vgg["pool_5"], batch, seq, rnn_units, dropout_wrapper)
      out["prediction"] = _xw_plus_b(tf.concat([rnn_conv, rnn_pool, rnn_fc], 1), 3 * rnn_units)
  else:
    raise ValueError(f"no TF1 reference for {name!r}")
  return out


def _xw_plus_b(x, rows):
  """The OMG classes' output: `weights`, `biases` directly in the RNN scope, no activation."""
  weights = v1.get_variable("weights", [rows, 2])
  biases = v1.get_variable("biases", [2])
  return v1.nn.xw_plus_b(x, weights, biases)


# ----------------------------------------------------------------------------- weights and checkpoints
def random_value(name, shape, rng):
  """Random weights keeping activations O(1): He-scaled kernels, non-trivial biases and BN statistics."""
  shape = tuple(int(d) for d in shape)
  leaf = name.split("/")[-1]
  if leaf == "gamma":
    return rng.uniform(0.6, 1.4, shape)
  if leaf == "beta":
    return rng.normal(0, 0.1, shape)
  if leaf == "moving_mean":
    return rng.normal(0, 0.2, shape)
  if leaf == "moving_variance":
    return rng.uniform(0.5, 2.0, shape)
  if leaf in ("biases", "bias", "biases_rnn", "biases_output"):
    return rng.normal(0, 0.3 if "gru_cell" in name else 0.05, shape)
  fan_in = int(np.prod(shape[:-1]))
  scale = np.sqrt((1.0 if "gru_cell" in name else 2.0) / fan_in)
  if "/conv3/" in name:  # Keep the residual sums of 16 units from growing.
    scale *= 0.3
  return rng.normal(0, scale, shape)


def run_released(name, frames, prefix, seed=0, rnn_units=128, dropout_wrapper=False, rename=None):
  """Builds `name` in a fresh graph, fills random weights, saves a TF1 checkpoint, runs it.

  Args:
    name: released model name.
    frames: (B, T, S, S, 3) float32 in [-1, 1].
    prefix: where to save the checkpoint (tf.compat.v1.train.Saver).
    seed: NumPy seed of the weights.
    rnn_units: GRU size.
    dropout_wrapper: wrap the GRU cells as the OMG training graph does.
    rename: optional fn(name) -> name saved in the checkpoint (older TF spellings).

  Returns:
    ({endpoint: (B*T, ...) array}, {variable name: value}).
  """
  batch, seq = frames.shape[:2]
  rng = np.random.default_rng(seed)
  with tf.Graph().as_default() as graph:
    images = v1.placeholder(tf.float32, (batch * seq,) + frames.shape[2:])
    # Every value is overwritten below: cheap zero initialisers keep graph building fast.
    with v1.variable_scope(v1.get_variable_scope(), initializer=v1.zeros_initializer()):
      endpoints = build_released(name, images, batch, seq, rnn_units, dropout_wrapper)
    variables = v1.global_variables()
    with v1.Session(graph=graph) as sess:
      values = {v.op.name: random_value(v.op.name, v.shape, rng).astype(np.float32) for v in variables}
      _assign_all(sess, {v.op.name: v for v in variables}, values)
      var_list = {(rename(v.op.name) if rename else v.op.name): v for v in variables}
      v1.train.Saver(var_list=var_list).save(sess, prefix, write_meta_graph=False)
      out = sess.run(endpoints, {images: frames.reshape((batch * seq,) + frames.shape[2:])})
  return out, values


def _assign_all(sess, variables, values):
  """Sets every variable in one run (one assign op per variable, fed by placeholders)."""
  feeds, ops = {}, []
  for key, var in variables.items():
    holder = v1.placeholder(var.dtype.base_dtype, var.shape)
    ops.append(var.assign(holder))
    feeds[holder] = np.asarray(values[key], np.float32)
  sess.run(ops, feeds)


def write_checkpoint(values, prefix):
  """Writes a name-based TF1 checkpoint holding exactly `values` ({name: array})."""
  with tf.Graph().as_default() as graph:
    variables = {k: v1.get_variable(k, np.shape(v), initializer=v1.zeros_initializer()) for k, v in values.items()}
    with v1.Session(graph=graph) as sess:
      _assign_all(sess, variables, values)
      v1.train.Saver(var_list=variables).save(sess, prefix, write_meta_graph=False)
  return prefix
