"""Convolution stacks: VGG-16 (Table I) and ResNet-50 v1 in TF-slim's `resnet_v1_50` layout.

Each builder returns a Keras functional model mapping a batch of frames
`(N, H, W, 3)` (scaled to [-1, 1]) to a dict of named feature taps, which the
heads in `cnn_rnn.py` feed to FC layers and RNN subnets:

- `vgg16`: `conv5_2`, `conv5_3` (both 6x6x512 at 96x96) and `pool5` (3x3x512),
  un-flattened; layer names `conv1_1` ... `conv5_3`, `pool1` ... `pool5`.
- `resnet50`: `pool5` (2048, global average pool) and `block4` (3x3x2048).
  Layer names follow the slim variable scopes with `/` replaced by `_`
  (`conv1`, `conv1_bn`, `block1_unit_1_conv1`, `block1_unit_1_conv1_bn`,
  `block1_unit_1_shortcut` ...) so the authors' checkpoints map by name.

Pooling follows the authors' code: VGG max pools 2x2/2 with SAME padding.
No weights are downloaded: `weights` is None or a path to a Keras weights file.
"""

from __future__ import annotations

import tf_keras

from omg_cnnrnn.registry import Registry

BACKBONES: Registry = Registry("backbone")

# Table I: (block, number of 3x3 conv layers, channels).
VGG16_BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))
# TF-slim resnet_v1_50: (scope, base depth, units, stride of the block's last unit).
RESNET50_BLOCKS = (("block1", 64, 3, 2), ("block2", 128, 4, 2), ("block3", 256, 6, 2), ("block4", 512, 3, 1))
# The taps of each backbone an RNN subnet can read (as timm's `feature_info`): VGG-16's last two
# convolutions and pool5 (Sec. III-B1: CNN-3RNN feeds conv5_2 / conv5_3 / FC1), ResNet-50's
# pooled output (Sec. III-B2). The heads add "fc1", "fc2" ... after these.
RNN_TAPS = {"vgg16": ("conv5_2", "conv5_3", "pool5"), "resnet50": ("pool5",)}
# TF-slim resnet_arg_scope batch-norm settings (decay 0.997, epsilon 1e-5, with scale).
_BN_MOMENTUM = 0.997
_BN_EPSILON = 1e-5


def _maybe_load(model: tf_keras.Model, weights: str | None) -> tf_keras.Model:
  if weights is not None:
    model.load_weights(weights)
  return model


@BACKBONES.decorator("vgg16")
def vgg16(image_size: int = 96, weights: str | None = None, name: str = "vgg16",
          kernel_initializer: str = "glorot_uniform", width: float = 1.0) -> tf_keras.Model:
  """VGG-16 / VGG-Face convolution and pooling layers (Table I blocks 1-5).

  Args:
    image_size: square input size (96 in the paper, Sec. III-C).
    weights: optional path of a Keras weights file for this model.
    name: model name (the prefix of its variables).
    kernel_initializer: initialiser of the conv kernels.
    width: channel multiplier (1 = Table I; smaller only for fast tests).

  Returns:
    A model `(N, S, S, 3) -> {"conv5_2", "conv5_3", "pool5"}`.
  """
  inputs = tf_keras.Input((image_size, image_size, 3), name="frames")
  x = inputs
  taps = {}
  for block, num_convs, channels in VGG16_BLOCKS:
    for i in range(1, num_convs + 1):
      layer_name = f"conv{block}_{i}"
      x = tf_keras.layers.Conv2D(max(1, int(round(channels * width))), 3, padding="same", activation="relu",
                                 name=layer_name,
                                 kernel_initializer=kernel_initializer)(x)
      taps[layer_name] = x
    x = tf_keras.layers.MaxPool2D(2, 2, padding="same", name=f"pool{block}")(x)
  taps["pool5"] = x
  outputs = {k: taps[k] for k in ("conv5_2", "conv5_3", "pool5")}
  return _maybe_load(tf_keras.Model(inputs, outputs, name=name), weights)


def _conv_bn(x, filters, kernel, stride, name, activation=True, initializer="glorot_uniform",
             momentum=_BN_MOMENTUM):
  """slim `conv2d` under `resnet_arg_scope` (no bias, batch norm, optional ReLU).

  Strided convolutions use slim's `conv2d_same`: explicit symmetric padding, then
  VALID, so outputs do not depend on the input size's parity the way SAME does.
  """
  if stride > 1 and kernel > 1:
    pad_total = kernel - 1
    pad_beg = pad_total // 2
    x = tf_keras.layers.ZeroPadding2D(((pad_beg, pad_total - pad_beg),) * 2, name=f"{name}_pad")(x)
    padding = "valid"
  else:
    padding = "same"
  x = tf_keras.layers.Conv2D(filters, kernel, stride, padding=padding, use_bias=False, name=name,
                             kernel_initializer=initializer)(x)
  x = tf_keras.layers.BatchNormalization(momentum=momentum, epsilon=_BN_EPSILON, name=f"{name}_bn")(x)
  if activation:
    x = tf_keras.layers.ReLU(name=f"{name}_relu")(x)
  return x


def _bottleneck(x, depth, depth_bottleneck, stride, name, init, momentum=_BN_MOMENTUM):
  """slim `resnet_v1.bottleneck`: the stride sits in the 3x3 conv; identity or 1x1 shortcut."""
  depth_in = x.shape[-1]
  if depth == depth_in:
    shortcut = x
    if stride > 1:
      shortcut = tf_keras.layers.MaxPool2D(1, stride, name=f"{name}_shortcut_subsample")(x)
  else:
    shortcut = _conv_bn(x, depth, 1, stride, f"{name}_shortcut", activation=False, initializer=init, momentum=momentum)
  residual = _conv_bn(x, depth_bottleneck, 1, 1, f"{name}_conv1", initializer=init, momentum=momentum)
  residual = _conv_bn(residual, depth_bottleneck, 3, stride, f"{name}_conv2", initializer=init, momentum=momentum)
  residual = _conv_bn(residual, depth, 1, 1, f"{name}_conv3", activation=False, initializer=init, momentum=momentum)
  x = tf_keras.layers.Add(name=f"{name}_add")([shortcut, residual])
  return tf_keras.layers.ReLU(name=f"{name}_out")(x)


@BACKBONES.decorator("resnet50")
def resnet50(image_size: int = 96, weights: str | None = None, name: str = "resnet50",
             kernel_initializer: str = "glorot_uniform", batch_norm_momentum: float = _BN_MOMENTUM) -> tf_keras.Model:
  """ResNet-50 v1 (He et al.), laid out as TF-slim `resnet_v1_50` (Sec. III-B2).

  7x7/2 conv with 64 maps, 3x3/2 max pool, then 4 bottleneck blocks (3, 4, 6, 3
  units of 1x1, 3x3, 1x1 convs), global average pool to 2048 (slim's `pool5`).

  Args:
    image_size: square input size.
    weights: optional path of a Keras weights file for this model.
    name: model name.
    kernel_initializer: initialiser of the conv kernels.
    batch_norm_momentum: decay of the moving statistics (slim's 0.997 by default).

  Returns:
    A model `(N, S, S, 3) -> {"block4", "pool5"}`.
  """
  inputs = tf_keras.Input((image_size, image_size, 3), name="frames")
  x = _conv_bn(inputs, 64, 7, 2, "conv1", initializer=kernel_initializer, momentum=batch_norm_momentum)
  x = tf_keras.layers.MaxPool2D(3, 2, padding="same", name="pool1")(x)
  for block, base, units, stride in RESNET50_BLOCKS:
    for unit in range(1, units + 1):
      unit_stride = stride if unit == units else 1
      x = _bottleneck(x, base * 4, base, unit_stride, f"{block}_unit_{unit}", kernel_initializer,
                      batch_norm_momentum)
  block4 = x
  pool5 = tf_keras.layers.GlobalAveragePooling2D(name="pool5")(x)
  return _maybe_load(tf_keras.Model(inputs, {"block4": block4, "pool5": pool5}, name=name), weights)


def rnn_taps(name: str) -> tuple[str, ...]:
  """The feature taps of backbone `name` that an RNN subnet may read (`RNN_TAPS`)."""
  if name not in RNN_TAPS:
    raise ValueError(f"unknown backbone {name!r}; known: {sorted(RNN_TAPS)}")
  return RNN_TAPS[name]


def build_backbone(name: str, image_size: int = 96, weights: str | None = None,
                   kernel_initializer: str = "glorot_uniform", width: float = 1.0,
                   batch_norm_momentum: float = _BN_MOMENTUM) -> tf_keras.Model:
  """Builds the registered backbone `name` ('vgg16' or 'resnet50'); `width` != 1 only for VGG-16."""
  builder = BACKBONES.lookup(name)
  if name == "resnet50":
    return builder(image_size=image_size, weights=weights, kernel_initializer=kernel_initializer,
                   batch_norm_momentum=batch_norm_momentum)
  if width != 1.0:
    if name != "vgg16":
      raise ValueError(f"backbone {name!r} has no width multiplier (only vgg16 does); got {width}")
    return builder(image_size=image_size, weights=weights, kernel_initializer=kernel_initializer, width=width)
  return builder(image_size=image_size, weights=weights, kernel_initializer=kernel_initializer)
