"""The networks of Tables III-V, built from a `ModelConfig`.

One builder covers every row: a model is one stream (Tables III, IV) or two
fused streams (Table V). A stream is a backbone whose feature taps (VGG
`conv5_2`, `conv5_3`, `pool5`; ResNet `pool5`) and FC layers (`fc1`, `fc2`)
either feed a per-frame linear output (the CNN-only rows) or one or more RNN
subnets of 2 stacked GRU layers (Sec. III-B). The outputs of all RNN subnets
are concatenated, optionally passed through a hidden FC (the "-FC" rows), and
mapped to valence and arousal for every frame.

Inputs are `{"frames": (B, T, S, S, 3) float in [-1, 1], "mask": (B, T)}`;
the output is `(B, T, 2)` (valence, arousal). Masked frames (padding, frames
without a face) are zeroed before the CNN, so their content never matters,
and skipped by the GRUs (the state is carried over them), so they never
change the predictions of valid frames. CNN-only rows also run on single
frames: `frame_model(model)` gives `(N, S, S, 3) -> (N, 2)` sharing weights.

Streaming: `build_streaming_model` is the same network with the GRU states as an
extra input and output (`(B, N, U)`, layout in its docstring), so a video of any
length runs chunk by chunk with the state carried; `streaming_twin` builds it with a
trained model's weights. `copy_matching_weights` copies weights between any two
models by layer path (`named_layers`: `vgg16/conv1_1`, ...); warm starts use it too.

Layer names: `<backbone>` (the nested backbone model), `<backbone>_fc1`,
`<backbone>_fc1_dropout`, `<backbone>_rnn_<taps>_gru1` ... (one RNN subnet per
tuple of taps), `hidden_fc`, `output`. Stream-prefixed names keep fused models
loadable from single-stream checkpoints (Table V, training way b).

Departure from the released code: the authors' TF1 graph fixes batch and
sequence length in its reshapes; here both are dynamic (None).
"""

from __future__ import annotations

from typing import Iterable

import tensorflow as tf
import tf_keras

from omg_cnnrnn import configs
from omg_cnnrnn.models import backbones


class FoldTime(tf_keras.layers.Layer):
  """(B, T, ...) -> (B * T, ...): runs a per-frame network on all frames of a batch at once."""

  def call(self, x):
    shape = tf.shape(x)
    return tf.reshape(x, tf.concat([[shape[0] * shape[1]], shape[2:]], axis=0))

  def compute_output_shape(self, input_shape):
    input_shape = tf.TensorShape(input_shape)
    return tf.TensorShape([None]).concatenate(input_shape[2:])


class UnfoldTime(tf_keras.layers.Layer):
  """(B * T, ...) -> (B, T, ...), with B and T read from a reference (B, T, ...) tensor."""

  def call(self, inputs):
    x, reference = inputs
    ref_shape = tf.shape(reference)
    return tf.reshape(x, tf.concat([ref_shape[:2], tf.shape(x)[1:]], axis=0))

  def compute_output_shape(self, input_shape):
    x_shape, ref_shape = (tf.TensorShape(s) for s in input_shape)
    return ref_shape[:2].concatenate(x_shape[1:])


class MaskFrames(tf_keras.layers.Layer):
  """Zeroes masked frames, so padding and face-less frames carry no content into the CNN."""

  def call(self, inputs):
    frames, mask = inputs
    mask = tf.cast(mask, frames.dtype)
    return frames * mask[:, :, tf.newaxis, tf.newaxis, tf.newaxis]


class BoolMask(tf_keras.layers.Layer):
  """Float (B, T) frame mask -> bool, the form Keras RNN layers take."""

  def call(self, mask):
    return tf.cast(mask, tf.bool)


class _Stream:
  """Builds one stream's layers once; `__call__` applies them to folded frames."""

  def __init__(self, stream: configs.StreamConfig, image_size: int, kernel_initializer: str = "glorot_uniform",
               batch_norm_momentum: float = 0.997):
    self.config = stream
    self.prefix = stream.name
    self.backbone = backbones.build_backbone(stream.backbone, image_size=image_size,
                                             kernel_initializer=kernel_initializer, width=stream.backbone_width,
                                             batch_norm_momentum=batch_norm_momentum)
    if len(stream.fc_dropout) > len(stream.fc_units):
      raise ValueError(f"stream {self.prefix}: more fc_dropout values than fc_units")
    self.fcs = []
    for i, units in enumerate(stream.fc_units, start=1):
      rate = stream.fc_dropout[i - 1] if i <= len(stream.fc_dropout) else 0.0
      dense = tf_keras.layers.Dense(units, activation="relu", name=f"{self.prefix}_fc{i}",
                                    kernel_initializer=kernel_initializer)
      drop = tf_keras.layers.Dropout(rate, name=f"{self.prefix}_fc{i}_dropout") if rate > 0 else None
      self.fcs.append((dense, drop))
    valid = set(self._tap_names())
    for taps in stream.rnn_inputs:
      unknown = [t for t in taps if t not in valid]
      if unknown or not taps:
        raise ValueError(f"stream {self.prefix}: unknown RNN input taps {unknown}; valid: {sorted(valid)}")

  def _tap_names(self):
    return list(backbones.rnn_taps(self.config.backbone)) + [f"fc{i}" for i in range(1, len(self.fcs) + 1)]

  def __call__(self, folded_frames):
    """Returns every tap as a flat per-frame feature `(B * T, D)`."""
    features = self.backbone(folded_frames)
    taps = {}
    for name in backbones.rnn_taps(self.config.backbone):
      if name in features:
        value = features[name]
        if value.shape.rank > 2:
          value = tf_keras.layers.Flatten(name=f"{self.prefix}_flatten_{name}")(value)
        taps[name] = value
    x = taps["pool5"]
    for i, (dense, drop) in enumerate(self.fcs, start=1):
      x = dense(x)
      if drop is not None:
        x = drop(x)
      taps[f"fc{i}"] = x
    return taps


def _gru_stack(x, mask, model_config: configs.ModelConfig, name: str, states=None):
  """Sec. III-B / IV-2: 2 stacked GRU layers of 128 units, dropout 0.2 between them.

  With `states` (one `(B, units)` initial state per layer) each GRU also returns its
  final state: the output is then `(x, [final state per layer])`.
  """
  finals = []
  for layer in range(1, model_config.rnn_layers + 1):
    if layer > 1 and model_config.rnn_dropout > 0:
      x = tf_keras.layers.Dropout(model_config.rnn_dropout, name=f"{name}_dropout{layer - 1}")(x)
    gru = tf_keras.layers.GRU(
        model_config.rnn_units,
        return_sequences=True,
        return_state=states is not None,
        reset_after=model_config.gru_reset_after,
        bias_initializer=GRUGateBias(model_config.gru_gate_bias),
        name=f"{name}_gru{layer}",
    )
    if states is None:
      x = gru(x, mask=mask)
    else:
      x, final = gru(x, mask=mask, initial_state=[states[layer - 1]])
      finals.append(final)
  return x if states is None else (x, finals)


@tf_keras.saving.register_keras_serializable(package="omg_cnnrnn")
class GRUGateBias(tf_keras.initializers.Initializer):
  """Keras GRU bias as TF1 `GRUCell` starts it: reset and update gates at `gate_bias`, candidate at 0.

  TF1's `GRUCell` (released code) initialises `gates/bias` to 1.0 and `candidate/bias` to 0,
  so a fresh GRU starts by keeping most of its state; Keras starts every bias at 0. Keras
  lays the bias out as [z, r, h] (`reset_after=False`: shape (3U,)); with `reset_after=True`
  it is (2, 3U), input and recurrent biases, and only the input bias carries the gate value
  (their sum is what TF1's single bias is).
  """

  def __init__(self, gate_bias: float = 1.0):
    self.gate_bias = float(gate_bias)

  def __call__(self, shape, dtype=None, **kwargs):
    shape = tuple(shape)
    units = shape[-1] // 3
    row = tf.concat([tf.fill([2 * units], self.gate_bias), tf.zeros([units])], axis=0)
    if len(shape) == 2:  # reset_after=True: [input bias, recurrent bias].
      row = tf.stack([row, tf.zeros([3 * units])])
    return tf.cast(row, dtype or tf.float32)

  def get_config(self):
    return {"gate_bias": self.gate_bias}


class SliceState(tf_keras.layers.Layer):
  """(B, N, U) stacked streaming state -> the (B, U) state of GRU layer `index`."""

  def __init__(self, index: int, **kwargs):
    super().__init__(**kwargs)
    self.index = index

  def call(self, state):
    return state[:, self.index]

  def get_config(self):
    return {**super().get_config(), "index": self.index}


class StackStates(tf_keras.layers.Layer):
  """[(B, U)] * N final GRU states -> (B, N, U), the layout `SliceState` reads."""

  def call(self, states):
    return tf.stack(states, axis=1)


def num_states(model_config: configs.ModelConfig) -> int:
  """GRU layers of a model: rows of its streaming state (0 for CNN-only rows)."""
  return sum(len(s.rnn_inputs) for s in model_config.streams) * model_config.rnn_layers


def build_model(
    model_config: configs.ModelConfig,
    image_size: int = 96,
    sequence_length: int | None = None,
    name: str = "cnn_rnn",
) -> tf_keras.Model:
  """Builds the Keras functional model of `model_config`.

  Args:
    model_config: the architecture (streams, taps, RNN and output settings).
    image_size: square face-crop size (96 in the paper).
    sequence_length: fixed T, or None for any length.
    name: model name.

  Returns:
    A model `{"frames": (B, T, S, S, 3), "mask": (B, T)} -> (B, T, num_outputs)`.
  """
  return _build(model_config, image_size, sequence_length, name, streaming=False)


def build_streaming_model(
    model_config: configs.ModelConfig,
    image_size: int = 96,
    name: str = "cnn_rnn_streaming",
) -> tf_keras.Model:
  """The same network with its GRU states as inputs and outputs, for chunk-by-chunk inference.

  Layer names, weights and per-frame computation are those of `build_model`; copy a
  trained model's weights in with `streaming_twin`. Feeding a video in consecutive
  chunks, each chunk's output state into the next, gives the predictions of the whole
  sequence at once (masked frames carry the state over, as in `build_model`; a chunk
  whose frames are all masked returns its input state unchanged).

  State layout: `(B, num_states(model_config), rnn_units)` float32, one row per GRU
  layer: RNN branches in config order (streams in order, then each stream's
  `rnn_inputs` in order), within a branch `gru1`, `gru2`, ...; row index =
  `branch * rnn_layers + layer - 1`. Zeros are the initial state (as in training).

  Returns:
    A model `{"frames": (B, T, S, S, 3), "mask": (B, T), "state": (B, N, U)} ->
    {"predictions": (B, T, num_outputs), "state": (B, N, U)}`.

  Raises:
    ValueError: for CNN-only rows (no GRU, no state: use `build_model` chunk by chunk).
  """
  if not model_config.has_rnn:
    raise ValueError("a CNN-only model has no recurrent state; run build_model on each chunk instead")
  return _build(model_config, image_size, None, name, streaming=True)


def _build(model_config: configs.ModelConfig, image_size: int, sequence_length: int | None, name: str,
           streaming: bool) -> tf_keras.Model:
  """`build_model` (streaming=False) or `build_streaming_model` (streaming=True)."""
  if not model_config.streams:
    raise ValueError("a model needs at least one stream")
  names = [s.name for s in model_config.streams]
  if len(set(names)) != len(names):
    raise ValueError(f"stream backbones must differ (layer-name prefixes): {names}")
  frames = tf_keras.Input((sequence_length, image_size, image_size, 3), name="frames")
  mask = tf_keras.Input((sequence_length,), name="mask")
  inputs = {"frames": frames, "mask": mask}
  if streaming:
    state_in = tf_keras.Input((num_states(model_config), model_config.rnn_units), name="state")
    inputs["state"] = state_in
  mask_bool = BoolMask(name="mask_bool")(mask)
  masked = MaskFrames(name="mask_frames")([frames, mask])
  folded = FoldTime(name="fold_time")(masked)

  per_frame_outputs, rnn_outputs, final_states = [], [], []
  for stream_config in model_config.streams:
    stream = _Stream(stream_config, image_size, model_config.kernel_initializer, model_config.batch_norm_momentum)
    taps = stream(folded)
    if not stream_config.rnn_inputs:
      # CNN only (Table I / Table IV row 1): the last FC (or the pooled features) is the head.
      last = f"fc{len(stream.fcs)}" if stream.fcs else "pool5"
      per_frame_outputs.append(UnfoldTime(name=f"{stream.prefix}_unfold_{last}")([taps[last], frames]))
      continue
    for tap_names in stream_config.rnn_inputs:
      branch = f"{stream.prefix}_rnn_{'_'.join(tap_names)}"
      parts = [taps[t] for t in tap_names]
      x = parts[0] if len(parts) == 1 else tf_keras.layers.Concatenate(name=f"{branch}_concat")(parts)
      x = UnfoldTime(name=f"{branch}_unfold")([x, frames])
      if streaming:
        first = len(final_states)
        states = [SliceState(first + i, name=f"{branch}_gru{i + 1}_state_in")(state_in)
                  for i in range(model_config.rnn_layers)]
        x, finals = _gru_stack(x, mask_bool, model_config, branch, states)
        final_states += finals
        rnn_outputs.append(x)
      else:
        rnn_outputs.append(_gru_stack(x, mask_bool, model_config, branch))

  outputs = per_frame_outputs + rnn_outputs
  x = outputs[0] if len(outputs) == 1 else tf_keras.layers.Concatenate(name="concat_streams")(outputs)
  if model_config.hidden_fc_units:
    x = tf_keras.layers.Dense(model_config.hidden_fc_units, activation="relu", name="hidden_fc")(x)
  # float32 even under a mixed-precision policy: the CCC moments need the precision.
  predictions = tf_keras.layers.Dense(model_config.num_outputs, name="output", dtype="float32")(x)
  if not streaming:
    return tf_keras.Model(inputs, predictions, name=name)
  state_out = StackStates(name="state_out", dtype="float32")(final_states)
  return tf_keras.Model(inputs, {"predictions": predictions, "state": state_out}, name=name)


def named_layers(model: tf_keras.Model, prefix: str = "") -> Iterable[tuple[str, tf_keras.layers.Layer]]:
  """(path, layer) for every layer with weights, descending into nested models (`vgg16/conv1_1`)."""
  for layer in model.layers:
    path = f"{prefix}{layer.name}"
    if isinstance(layer, tf_keras.Model):
      yield from named_layers(layer, path + "/")
    elif layer.weights:
      yield path, layer


def copy_matching_weights(source: tf_keras.Model, target: tf_keras.Model, only_missing: set | None = None) -> dict:
  """Copies weights layer by layer where names and shapes match.

  Args:
    source: the model to copy from.
    target: the model to copy into.
    only_missing: if given, the target layer paths still to fill (updated in place).

  Returns:
    {"loaded": [...], "shape_mismatch": [...], "not_in_source": [...]} of target layer paths.
  """
  src = dict(named_layers(source))
  report = {"loaded": [], "shape_mismatch": [], "not_in_source": []}
  for path, layer in named_layers(target):
    if only_missing is not None and path not in only_missing:
      continue
    other = src.get(path)
    if other is None:
      report["not_in_source"].append(path)
      continue
    shapes = [tuple(w.shape) for w in layer.weights]
    if shapes != [tuple(w.shape) for w in other.weights]:
      report["shape_mismatch"].append(path)
      continue
    layer.set_weights(other.get_weights())
    report["loaded"].append(path)
    if only_missing is not None:
      only_missing.discard(path)
  return report


def streaming_twin(model: tf_keras.Model, model_config: configs.ModelConfig, image_size: int = 96) -> tf_keras.Model:
  """`build_streaming_model` with the weights of a trained `build_model` model, copied by layer name.

  Raises:
    ValueError: a layer with weights of either model has no same-named, same-shaped
      counterpart in the other (the model is not of `model_config`).
  """
  twin = build_streaming_model(model_config, image_size, name=f"{model.name}_streaming")
  report = copy_matching_weights(model, twin)
  only_in_model = sorted({p for p, _ in named_layers(model)} - {p for p, _ in named_layers(twin)})
  if only_in_model or report["not_in_source"] or report["shape_mismatch"]:
    raise ValueError(f"model {model.name!r} does not match its config: layers only in the model {only_in_model}, "
                     f"only in the config {report['not_in_source']}, with other weight shapes "
                     f"{report['shape_mismatch']}")
  return twin


def frame_model(model: tf_keras.Model, model_config: configs.ModelConfig, image_size: int = 96) -> tf_keras.Model:
  """Single-frame view `(N, S, S, 3) -> (N, 2)` of a CNN-only model, sharing its weights.

  The CNN-only rows train on single frames in batches of 80 (Sec. IV-1); the sequence
  model with T = 1 does the same computation, and this view serves per-image inference.
  """
  if model_config.has_rnn or len(model_config.streams) != 1:
    raise ValueError("frame_model applies to single-stream CNN-only rows")
  stream = model_config.streams[0]
  inputs = tf_keras.Input((image_size, image_size, 3), name="frames")
  x = model.get_layer(stream.name)(inputs)["pool5"]
  if x.shape.rank > 2:
    x = model.get_layer(f"{stream.name}_flatten_pool5")(x)
  for i in range(1, len(stream.fc_units) + 1):
    x = model.get_layer(f"{stream.name}_fc{i}")(x)
  if model_config.hidden_fc_units:
    x = model.get_layer("hidden_fc")(x)
  return tf_keras.Model(inputs, model.get_layer("output")(x), name=f"{model.name}_frames")


def feature_taps(model: tf_keras.Model, backbone: str = "vgg16") -> tf_keras.Model:
  """A model exposing a stream's per-frame taps (flattened) of a built model, for inspection."""
  sub = model.get_layer(backbone)
  outputs = dict(sub.output)
  for i in range(1, 4):
    try:
      dense = model.get_layer(f"{backbone}_fc{i}")
    except ValueError:
      break
    source = outputs["pool5"] if i == 1 else outputs[f"fc{i - 1}"]
    if source.shape.rank > 2:
      source = tf_keras.layers.Flatten()(source)
    outputs[f"fc{i}"] = dense(source)
  return tf_keras.Model(sub.input, outputs, name=f"{backbone}_taps")
