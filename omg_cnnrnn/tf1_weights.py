"""The authors' released TF1 checkpoints and the Keras VGG-Face weights, loaded into our models.

The library behind `omg_cnnrnn.tf1` (the command line, imported by nothing) and the
`--init_from=tf1:...` / `vggface:...` warm starts of `omg_cnnrnn.train`.
`load_tf1_checkpoint` reads checkpoints with `tf.train.load_checkpoint` (no TF1 graph
is built) and assigns each Keras weight from TF1 variables found by name;
`load_vggface_h5` fills the VGG-16 backbone from the Keras VGGFace file; `convert`
writes a converted workdir: `config.json`, `checkpoints/ckpt-0` (what
`--init_from=<dir>` reads), `conversion_report.json` and `saved_model` (the serving
signatures of `omg_cnnrnn.serving`).

Released models (`RELEASED_MODELS`) and the variable names they hold, read from
the authors' code (dkollias/Aff-Wild-models, dkollias/OMG_Challenge):

- `affwildnet_vggface_gru` (`affwildnet/vggface_gru.py`, also the extension-less
  copies `affwildnet/vggface-gru`, `affwildnet/vggface_gru`): VGG-Face convs
  `conv_1` ... `conv_13/{weights,biases}` (3x3 SAME + ReLU, max pools 2x2/2 SAME
  named `pool_1..5`), `linear_1` (4096, ReLU; the flattened pool5 in NHWC
  order), then under scope `rnn_1` a `MultiRNNCell` of two `GRUCell(128)` run by
  `dynamic_rnn` (so `rnn_1/rnn/multi_rnn_cell/cell_{0,1}/gru_cell/...`) and the
  linear output `rnn_1/weights_rnn`, `rnn_1/biases_rnn` on every frame. The
  scope names come from the class's `get_unique_name_`: `<kind>_<count of
  earlier layers whose name starts with kind, plus 1>`.
- `affwildnet_resnet_gru` (`affwildnet/resnet-gru`, `eval_script.py`): slim
  `resnet_v1_50(is_training=False, num_classes=None)` under `resnet_arg_scope()`
  (batch norm decay 0.997, epsilon 1e-5, scale; pool1 SAME), then scope `rnn`
  with the same 2-layer GRU(128) and `rnn/weights_output`, `rnn/biases_output`.
- `vggface_4096x4096x2`, `vggface_4096x2000x2` (`vggface/vggface_4096x*.py`):
  the VGG-Face convs, then three FC layers. Their kinds are `linear`,
  `linear2`, `linear3`, so `get_unique_name_` names them `linear_1`,
  `linear2_1`, `linear3_1` (the issue text says `linear_1..3`; both spellings
  are accepted). The last one has no ReLU; its output is (valence, arousal).
- `omg_cnn_gru_1rnn` (OMG_Challenge `AffWildNet.py` / `AffWildNet_valid.py`,
  class `CNN_GRU_1RNN`): VGG-Face convs, `linear_1` (4096, ReLU), then scope
  `rnn_out_fc_max_pool_1`: GRUs on concat[linear_1, flattened pool_5] (in that
  order), output `rnn_out_fc_max_pool_1/{weights,biases}`.
- `omg_cnn_gru_3rnn` (same files, class `CNN_GRU_3RNN`): scopes `rnn_fc_1`
  (GRUs on linear_1), `rnn_last_conv_1` (GRUs on `self.vars[-4]`, i.e. conv_13
  after its ReLU, flattened) and `rnn_max_pool_1` (GRUs on `self.vars[-4]` at
  that point, i.e. pool_5); the output `rnn_max_pool_1/{weights,biases}` reads
  concat[last_conv, max_pool, fc] outputs (3 x h_units rows).

Inferred, not stated by the authors:
- GRU sizes of the OMG models: `train_script.py`'s `--h_units` defaults to 128
  and its help says "128 for CNN_GRU_1RNN or 256 for CNN_GRU_3RNN", while the
  classes default to the reverse (1RNN 256, 3RNN 128). The table uses the
  paper's 128 (Table II); `--rnn_units=256` converts the other setting.
- TF1 GRU variable names: the OMG code was written for TF 1.1, whose `GRUCell`
  named its variables `gates/weights`, `gates/biases`, `candidate/...`; TF >= 1.2
  renamed them `kernel`, `bias` (the Aff-Wild models were released for TF 1.8).
  Both are accepted. `DropoutWrapper` (OMG training graph) adds no scope.
- Input scaling is `(uint8 - 128) / 128` in `eval_script.py` and
  `train_script.py`, the same as our pipeline, so no input conversion is needed.
- In eval mode the released graphs run no dropout (`AffWildNet_valid.py`; the
  Aff-Wild classes comment it out), which our models match with training=False.

Mapping to our layers (`omg_cnnrnn.models`): `conv_k` -> `vgg16/conv{b}_{i}`;
`linear_1`, `linear2_1` -> `vgg16_fc1`, `vgg16_fc2`; the RNN scope on taps T ->
`<backbone>_rnn_<T>_gru{1,2}` (cell_0, cell_1); the output -> `output`; slim
`resnet_v1_50/<scope>` -> `resnet50/<scope with / -> _>` minus `bottleneck_v1`,
`.../BatchNorm/{gamma,beta,moving_mean,moving_variance}` -> `<layer>_bn`.
TF1 `GRUCell` computes `[r, u] = sigmoid([x, h] @ gates/kernel + gates/bias)`,
`c = tanh([x, r * h] @ candidate/kernel + candidate/bias)`,
`h' = u * h + (1 - u) * c`; Keras `GRU(reset_after=False)` has kernel /
recurrent_kernel / bias in gate order [z, r, h] with `h' = z * h + (1 - z) * hh`,
so z = u: the Keras kernel is `[gates[:in, u-half], gates[:in, r-half],
candidate[:in]]`, the recurrent kernel the same on the last `units` rows, and
the bias `[gates/bias u-half, r-half, candidate/bias]`. Models built with
`gru_reset_after=True` (a different cell) are refused.

Strictness: by default every Keras weight of the model must come from the
checkpoint with the exact shape; a missing variable or a shape mismatch raises
`TF1CheckpointError` naming the TF1 variable(s), before any weight is changed.
Checkpoint variables the layout does not use are reported as `unexpected`
(optimizer slots and step counters as `ignored`). With `allow_partial`, missing
variables and shape mismatches leave those layers as they are (fresh) and are
reported: a warm start where new layers start fresh.

Departure from the authors' warm start: they restored by exact TF1 names
(`slim.assign_from_checkpoint_fn(..., ignore_missing_vars=True)`), so starting
CNN-3RNN from AffWildNet loaded only `conv_*` and `linear_1`. Here the layout
maps each released scope to our layers by role, so AffWildNet's GRU on FC1
(`rnn_1/...`) also initialises our FC1 RNN subnet (same input, same size); the
output layer (128 vs 384 inputs) starts fresh. Use the report to see what loaded.

VGG-Face (`load_vggface_h5`): the Keras VGGFace release
(`rcmalli_vggface_tf_notop_vgg16.h5`, Keras `save_weights` HDF5 layout, layer
groups `conv1_1` ... `conv5_3` holding `<layer>/kernel:0` and `<layer>/bias:0`)
into the `vgg16` backbone. Departure: that model expects BGR, mean-subtracted
0-255 inputs; ours (like the authors') feed RGB in [-1, 1], and the kernels are
copied unchanged (as the authors started from VGG-Face and fine-tuned).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import tensorflow as tf
import tf_keras

from omg_cnnrnn import atomic, configs, experiments, models, serving
from omg_cnnrnn.models import backbones
from omg_cnnrnn.models.cnn_rnn import named_layers


class TF1CheckpointError(ValueError):
  """A TF1 checkpoint does not fit the model: missing variables or wrong shapes (named)."""


@dataclasses.dataclass(frozen=True)
class ReleasedModel:
  """The variable layout of one released TF1 model and the registered row it corresponds to.

  Attributes:
    name: the released model's name (`--released_model`).
    source: the authors' file(s) the layout was read from.
    experiment: the registered experiment with the same architecture.
    backbone: the stream the checkpoint fills ('vgg16' or 'resnet50').
    fc_units: FC sizes where they differ from the experiment's (None: keep).
    fc_scopes: per FC layer of the stream, the TF1 scopes that may hold it (first found wins).
    rnn_scopes: RNN subnet taps -> the TF1 scope holding its `multi_rnn_cell`.
    output_weights: TF1 names that may hold the output kernel.
    output_biases: TF1 names that may hold the output bias.
  """

  name: str
  source: str
  experiment: str
  backbone: str
  fc_units: tuple[int, ...] | None
  fc_scopes: tuple[tuple[str, ...], ...]
  rnn_scopes: dict[tuple[str, ...], str]
  output_weights: tuple[str, ...]
  output_biases: tuple[str, ...]


RELEASED_MODELS: dict[str, ReleasedModel] = {
    m.name: m for m in (
        ReleasedModel(
            "affwildnet_vggface_gru", "Aff-Wild-models affwildnet/vggface_gru.py", "table3/cnn_rnn", "vgg16",
            None, (("linear_1",),), {("fc1",): "rnn_1/rnn"},
            ("rnn_1/weights_rnn", "rnn_1/weights_output"), ("rnn_1/biases_rnn", "rnn_1/biases_output")),
        ReleasedModel(
            "affwildnet_resnet_gru", "Aff-Wild-models affwildnet/resnet-gru", "table4/cnn_rnn", "resnet50",
            None, (), {("pool5",): "rnn/rnn"},
            ("rnn/weights_output", "rnn/weights_rnn"), ("rnn/biases_output", "rnn/biases_rnn")),
        ReleasedModel(
            "vggface_4096x4096x2", "Aff-Wild-models vggface/vggface_4096x4096x2.py", "table3/cnn_only", "vgg16",
            (4096, 4096), (("linear_1",), ("linear2_1", "linear_2")), {},
            ("linear3_1/weights", "linear_3/weights"), ("linear3_1/biases", "linear_3/biases")),
        ReleasedModel(
            "vggface_4096x2000x2", "Aff-Wild-models vggface/vggface_4096x2000x2.py", "table3/cnn_only", "vgg16",
            (4096, 2000), (("linear_1",), ("linear2_1", "linear_2")), {},
            ("linear3_1/weights", "linear_3/weights"), ("linear3_1/biases", "linear_3/biases")),
        ReleasedModel(
            "omg_cnn_gru_1rnn", "OMG_Challenge AffWildNet.py CNN_GRU_1RNN", "table3/cnn_1rnn_released", "vgg16",
            None, (("linear_1",),), {("fc1", "pool5"): "rnn_out_fc_max_pool_1/rnn"},
            ("rnn_out_fc_max_pool_1/weights",), ("rnn_out_fc_max_pool_1/biases",)),
        ReleasedModel(
            "omg_cnn_gru_3rnn", "OMG_Challenge AffWildNet.py CNN_GRU_3RNN", "table3/cnn_3rnn_last_conv", "vgg16",
            None, (("linear_1",),),
            {("conv5_3",): "rnn_last_conv_1/rnn", ("pool5",): "rnn_max_pool_1/rnn", ("fc1",): "rnn_fc_1/rnn"},
            ("rnn_max_pool_1/weights",), ("rnn_max_pool_1/biases",)),
    )
}

# Optimizer slots and bookkeeping a TF1 training checkpoint holds besides the model.
_IGNORED = re.compile(
    r"(^|/)(global_step|beta1_power|beta2_power|local_step)$"
    r"|/(Adam|Adam_1|Momentum|RMSProp|RMSProp_1|Adagrad|ExponentialMovingAverage)$")
_RESNET_UNIT = re.compile(r"^(block\d)_unit_(\d+)_(shortcut|conv\d)$")


# ----------------------------------------------------------------------------- configs
def released_config(name: str, image_size: int = 96, rnn_units: int | None = None) -> configs.ExperimentConfig:
  """The ExperimentConfig of released model `name`: its registered row with the released FC sizes.

  Args:
    name: a key of `RELEASED_MODELS`.
    image_size: input size the model is built for (96 in every released model; it fixes
      the rows of `linear_1/weights` through the flattened pool5).
    rnn_units: GRU size (None: the row's 128; the OMG code was also run with 256).

  Returns:
    A config named `tf1/<name>` whose model has exactly the released layers.
  """
  released = _released(name)
  base = experiments.get(released.experiment)
  model = base.model
  if released.fc_units is not None:
    streams = tuple(dataclasses.replace(s, fc_units=released.fc_units) for s in model.streams)
    model = dataclasses.replace(model, streams=streams)
  if rnn_units is not None:
    if rnn_units <= 0:
      raise ValueError(f"rnn_units must be positive, got {rnn_units}")
    model = dataclasses.replace(model, rnn_units=rnn_units)
  if image_size <= 0:
    raise ValueError(f"image_size must be positive, got {image_size}")
  return dataclasses.replace(
      base, name=f"tf1/{name}", model=model, data=dataclasses.replace(base.data, image_size=image_size),
      description=f"The authors' released TF1 model {name} ({released.source}), as {released.experiment}.")


def _released(name: str) -> ReleasedModel:
  if name not in RELEASED_MODELS:
    raise ValueError(f"unknown released model {name!r}; known: {sorted(RELEASED_MODELS)}")
  return RELEASED_MODELS[name]


def detect_released_model(shapes: dict[str, Sequence[int]]) -> str:
  """Guesses the released model of a checkpoint from its variable names (and linear2 size).

  Args:
    shapes: the checkpoint's variable name -> shape map.

  Returns:
    A key of `RELEASED_MODELS`; raises TF1CheckpointError if no layout fits.
  """
  if "resnet_v1_50/conv1/weights" in shapes:
    return "affwildnet_resnet_gru"
  if "rnn_max_pool_1/weights" in shapes:
    return "omg_cnn_gru_3rnn"
  if "rnn_out_fc_max_pool_1/weights" in shapes:
    return "omg_cnn_gru_1rnn"
  if "rnn_1/weights_rnn" in shapes or "rnn_1/weights_output" in shapes:
    return "affwildnet_vggface_gru"
  for fc2 in ("linear2_1/weights", "linear_2/weights"):
    if fc2 in shapes:
      return "vggface_4096x2000x2" if list(shapes[fc2])[-1] == 2000 else "vggface_4096x4096x2"
  raise TF1CheckpointError(
      "cannot tell which released model this checkpoint holds (none of resnet_v1_50/conv1/weights, "
      "rnn_max_pool_1/weights, rnn_out_fc_max_pool_1/weights, rnn_1/weights_rnn, linear2_1/weights); "
      f"pass the released model name explicitly (one of {sorted(RELEASED_MODELS)})")


# ----------------------------------------------------------------------------- layer assignments
@dataclasses.dataclass
class _Source:
  """One TF1 variable a Keras layer needs: the names it may have and the shape it must have."""

  role: str
  candidates: tuple[str, ...]
  shape: tuple[int, ...]
  hint: str = ""


@dataclasses.dataclass
class _Assignment:
  """A Keras layer filled from TF1 variables: `convert({role: array}) -> layer.get_weights()` order."""

  path: str
  layer: tf_keras.layers.Layer
  sources: list[_Source]
  convert: Callable[[dict[str, np.ndarray]], list[np.ndarray]]


def _shape(weight: tf.Variable) -> tuple[int, ...]:
  return tuple(int(d) for d in weight.shape)


def _dense_like(path: str, layer: tf_keras.layers.Layer, scopes: Sequence[str], hint: str = "") -> _Assignment:
  """Conv2D / Dense with optional bias from `<scope>/weights`, `<scope>/biases`."""
  kernel = layer.kernel
  sources = [_Source("weights", tuple(f"{s}/weights" for s in scopes), _shape(kernel), hint)]
  if getattr(layer, "use_bias", False):
    sources.append(_Source("biases", tuple(f"{s}/biases" for s in scopes), _shape(layer.bias)))
  roles = [s.role for s in sources]
  return _Assignment(path, layer, sources, lambda v: [v[r] for r in roles])


def _output(path: str, layer: tf_keras.layers.Layer, weights: Sequence[str], biases: Sequence[str],
            hint: str = "") -> _Assignment:
  sources = [_Source("weights", tuple(weights), _shape(layer.kernel), hint),
             _Source("biases", tuple(biases), _shape(layer.bias))]
  return _Assignment(path, layer, sources, lambda v: [v["weights"], v["biases"]])


def _batch_norm(path: str, layer: tf_keras.layers.BatchNormalization, scope: str) -> _Assignment:
  """Keras BatchNormalization weights are [gamma, beta, moving_mean, moving_variance]."""
  if not (layer.scale and layer.center):
    raise TF1CheckpointError(f"{path}: batch norm without scale/center cannot take slim's gamma/beta")
  roles = ("gamma", "beta", "moving_mean", "moving_variance")
  sources = [_Source(r, (f"{scope}/BatchNorm/{r}",), _shape(layer.moving_mean)) for r in roles]
  return _Assignment(path, layer, sources, lambda v: [v[r] for r in roles])


def _gru(path: str, layer: tf_keras.layers.GRU, cell_scope: str, hint: str = "") -> _Assignment:
  """A Keras GRU (reset_after=False) from one TF1 `GRUCell` (see the module docstring)."""
  if layer.reset_after:
    raise TF1CheckpointError(
        f"{path}: a GRU with reset_after=True (gru_reset_after) is not the TF1 GRUCell; build the "
        "model with gru_reset_after=False to load TF1 weights")
  inputs, three_units = _shape(layer.cell.kernel)
  units = three_units // 3
  sources = []
  for part, cols in (("gates", 2 * units), ("candidate", units)):
    base = f"{cell_scope}/gru_cell/{part}"
    sources.append(_Source(f"{part}/kernel", (f"{base}/kernel", f"{base}/weights"), (inputs + units, cols), hint))
    sources.append(_Source(f"{part}/bias", (f"{base}/bias", f"{base}/biases"), (cols,), hint))

  def convert(v: dict[str, np.ndarray]) -> list[np.ndarray]:
    gates_k, gates_b = v["gates/kernel"], v["gates/bias"]
    cand_k, cand_b = v["candidate/kernel"], v["candidate/bias"]
    r_k, u_k = gates_k[:, :units], gates_k[:, units:]  # TF1 splits sigmoid(gates) into r, u.
    r_b, u_b = gates_b[:units], gates_b[units:]
    full = np.concatenate([u_k, r_k, cand_k], axis=1)  # Keras order [z, r, h], z = u.
    return [full[:inputs], full[inputs:], np.concatenate([u_b, r_b, cand_b])]

  return _Assignment(path, layer, sources, convert)


def _vgg_scopes() -> dict[str, str]:
  """`conv{b}_{i}` -> `conv_{k}`: the released classes number their 13 convs in order."""
  names = [f"conv{b}_{i}" for b, n, _ in backbones.VGG16_BLOCKS for i in range(1, n + 1)]
  return {n: f"conv_{k}" for k, n in enumerate(names, start=1)}


def _resnet_scope(layer_name: str) -> str | None:
  """Our ResNet layer name -> slim scope: `block1_unit_1_conv1` -> `resnet_v1_50/block1/unit_1/bottleneck_v1/conv1`."""
  if layer_name == "conv1":
    return "resnet_v1_50/conv1"
  m = _RESNET_UNIT.match(layer_name)
  if m:
    return f"resnet_v1_50/{m.group(1)}/unit_{m.group(2)}/bottleneck_v1/{m.group(3)}"
  return None


def _assignments(model: tf_keras.Model, model_config: configs.ModelConfig,
                 released: ReleasedModel) -> tuple[list[_Assignment], list[str]]:
  """What each Keras layer loads from under `released`'s layout, and the layers it has no variable for."""
  streams = {s.backbone: s for s in model_config.streams}
  stream = streams.get(released.backbone)
  if stream is None:
    raise TF1CheckpointError(
        f"released model {released.name} holds a {released.backbone} stream; the model's streams are "
        f"{sorted(streams)}")
  layers = dict(named_layers(model))
  found: list[_Assignment] = []
  prefix = stream.name
  fc_hint = ("the rows of linear_1/weights are the flattened pool5: ceil(image_size / 32)^2 * 512 "
             "(4608 at the released 96x96); convert with the matching image size")
  rnn_hint = ("GRU sizes follow rnn_units (the released OMG code ran h_units 128 or 256: "
              "pass the matching --rnn_units)")
  if released.backbone == "vgg16":
    for name, scope in _vgg_scopes().items():
      path = f"{prefix}/{name}"
      if path in layers:
        found.append(_dense_like(path, layers[path], (scope,)))
  else:
    for path, layer in layers.items():
      if not path.startswith(prefix + "/"):
        continue
      name = path[len(prefix) + 1:]
      if isinstance(layer, tf_keras.layers.BatchNormalization) and name.endswith("_bn"):
        scope = _resnet_scope(name[:-3])
        if scope:
          found.append(_batch_norm(path, layer, scope))
      elif isinstance(layer, tf_keras.layers.Conv2D):
        scope = _resnet_scope(name)
        if scope:
          found.append(_dense_like(path, layer, (scope,)))
  for i, scopes in enumerate(released.fc_scopes, start=1):
    path = f"{prefix}_fc{i}"
    if path in layers:
      found.append(_dense_like(path, layers[path], scopes, fc_hint if i == 1 else ""))
  for taps, scope in released.rnn_scopes.items():
    if taps not in stream.rnn_inputs:
      continue
    branch = f"{prefix}_rnn_{'_'.join(taps)}"
    for cell in range(2):  # The released RNNs are MultiRNNCells of two GRU cells.
      path = f"{branch}_gru{cell + 1}"
      if path in layers:
        found.append(_gru(path, layers[path], f"{scope}/multi_rnn_cell/cell_{cell}", rnn_hint))
  if "output" in layers:
    found.append(_output("output", layers["output"], released.output_weights, released.output_biases,
                         "the output kernel's rows are the concatenated RNN (or last FC) outputs"))
  covered = {a.path for a in found}
  uncovered = [p for p in layers if p not in covered]
  return found, uncovered


# ----------------------------------------------------------------------------- loading
def _open(prefix: str) -> Any:
  try:
    return tf.train.load_checkpoint(prefix)
  except (tf.errors.NotFoundError, tf.errors.DataLossError, ValueError) as e:
    raise FileNotFoundError(f"TF1 checkpoint {prefix!r} cannot be read (no {prefix}.index / data files?): "
                            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from e


def load_tf1_checkpoint(model: tf_keras.Model, model_config: configs.ModelConfig, prefix: str,
                        released_model: str | None = None, allow_partial: bool = False) -> dict[str, Any]:
  """Assigns the weights of a released TF1 checkpoint to `model`, by variable name.

  Args:
    model: a model built by `omg_cnnrnn.models.build_model(model_config, ...)`.
    model_config: its config (streams, RNN taps, GRU settings).
    prefix: the TF1 checkpoint prefix (`.../model.ckpt-16115`) or a directory with a
      `checkpoint` state file.
    released_model: a key of `RELEASED_MODELS` giving the layout; None guesses it from
      the variable names (`detect_released_model`).
    allow_partial: False (strict): every Keras weight must be found with its exact shape,
      else TF1CheckpointError naming the variables, and nothing is assigned. True: layers
      whose variables are missing or mis-shaped keep their current (fresh) weights.

  Returns:
    A JSON-serialisable report: `checkpoint`, `released_model`, `allow_partial`, `loaded`
    (TF1 names assigned), `missing` (TF1 names the model needed but the checkpoint lacks;
    `missing_detail` adds the accepted alternative spellings and the Keras layer),
    `shape_mismatch` (variable, checkpoint_shape, expected_shape, keras_layer), `unexpected`
    (checkpoint variables no layer used), `ignored` (optimizer slots, step counters),
    `keras_loaded` / `fresh` (Keras layer paths, e.g. `vgg16/conv1_1`).
  """
  reader = _open(prefix)
  shapes = {k: tuple(int(d) for d in v) for k, v in reader.get_variable_to_shape_map().items()}
  name = released_model or detect_released_model(shapes)
  released = _released(name)
  plan, uncovered = _assignments(model, model_config, released)

  missing, missing_detail, mismatched, ready, used = [], [], [], [], set()
  for assignment in plan:
    chosen, ok = {}, True
    for source in assignment.sources:
      present = [c for c in source.candidates if c in shapes]
      if not present:
        missing.append(source.candidates[0])
        missing_detail.append({"variable": source.candidates[0], "alternatives": list(source.candidates[1:]),
                               "keras_layer": assignment.path})
        ok = False
        continue
      var = present[0]
      used.add(var)
      if shapes[var] != source.shape:
        mismatched.append({"variable": var, "checkpoint_shape": list(shapes[var]),
                           "expected_shape": list(source.shape), "keras_layer": assignment.path,
                           "hint": source.hint})
        ok = False
        continue
      chosen[source.role] = var
    if ok:
      ready.append((assignment, chosen))
  unexpected = sorted(k for k in shapes if k not in used and not _IGNORED.search(k))
  ignored = sorted(k for k in shapes if _IGNORED.search(k))

  if not allow_partial and (missing or mismatched or uncovered):
    lines = [f"TF1 checkpoint {prefix} does not fit the model as released model {name} (strict load; "
             "allow_partial / --allow_partial loads what fits):"]
    lines += [f"  missing variable {m['variable']}" + (f" (or {', '.join(m['alternatives'])})"
                                                       if m["alternatives"] else "")
              + f" for {m['keras_layer']}" for m in missing_detail]
    lines += [f"  shape mismatch: {m['variable']} has shape {tuple(m['checkpoint_shape'])} in the checkpoint, "
              f"{m['keras_layer']} needs {tuple(m['expected_shape'])}" + (f" ({m['hint']})" if m["hint"] else "")
              for m in mismatched]
    lines += [f"  layer {p} has no variable in the {name} layout" for p in uncovered]
    raise TF1CheckpointError("\n".join(lines))

  loaded, keras_loaded = [], []
  for assignment, chosen in ready:
    values = {role: reader.get_tensor(var) for role, var in chosen.items()}
    arrays = assignment.convert(values)
    targets = assignment.layer.get_weights()
    for array, target in zip(arrays, targets):  # Guaranteed by the source shapes; kept as a safeguard.
      if array.shape != target.shape:
        raise TF1CheckpointError(f"{assignment.path}: converted shape {array.shape} != {target.shape}")
    assignment.layer.set_weights([a.astype(t.dtype) for a, t in zip(arrays, targets)])
    loaded += sorted(chosen.values())
    keras_loaded.append(assignment.path)
  all_layers = [p for p, _ in named_layers(model)]
  return {
      "checkpoint": prefix, "released_model": name, "allow_partial": bool(allow_partial),
      "loaded": sorted(loaded), "missing": missing, "missing_detail": missing_detail,
      "shape_mismatch": mismatched,
      "unexpected": unexpected, "ignored": ignored,
      "keras_loaded": keras_loaded, "fresh": [p for p in all_layers if p not in set(keras_loaded)],
  }


# ----------------------------------------------------------------------------- VGG-Face h5
def _vgg_backbone(model_or_backbone: tf_keras.Model) -> tf_keras.Model:
  names = {layer.name for layer in model_or_backbone.layers}
  if "conv1_1" in names:
    return model_or_backbone
  if "vgg16" in names:
    return model_or_backbone.get_layer("vgg16")
  raise ValueError(f"model {model_or_backbone.name!r} has neither a vgg16 backbone nor conv1_1 ... conv5_3 layers")


def _decode(values: Iterable[Any]) -> list[str]:
  return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def load_vggface_h5(model_or_backbone: tf_keras.Model, path: str) -> dict[str, Any]:
  """Loads VGG-Face conv weights from the Keras VGGFace release into the VGG-16 backbone.

  Reads the Keras HDF5 weights layout (`model.save_weights` of rcmalli's VGGFace,
  `rcmalli_vggface_tf_notop_vgg16.h5`, or a full-model file's `model_weights` group):
  layer groups `conv1_1` ... `conv5_3`, each listing `weight_names` such as
  `conv1_1/kernel:0`, `conv1_1/bias:0`. Strict: every conv layer must be there with
  the exact shapes (else ValueError naming the layer); other layers with weights (fc6 ...
  of a with-top file) are reported as unexpected. Kernels are copied unchanged (see
  the module docstring on input scaling).

  Args:
    model_or_backbone: a model with a nested `vgg16` backbone, or the backbone itself.
    path: the .h5 file.

  Returns:
    {"file", "loaded": [layer names], "unexpected": [layer names]}.
  """
  import h5py  # Lazy: only this loader needs it.

  backbone = _vgg_backbone(model_or_backbone)
  if not os.path.exists(path):
    raise FileNotFoundError(f"VGG-Face weights file {path!r} does not exist")
  names = [f"conv{b}_{i}" for b, n, _ in backbones.VGG16_BLOCKS for i in range(1, n + 1)]
  values = {}
  with h5py.File(path, "r") as f:
    root = f["model_weights"] if "model_weights" in f else f
    backend = root.attrs.get("backend", b"tensorflow")
    backend = backend.decode() if isinstance(backend, bytes) else str(backend)
    if backend == "theano":
      raise ValueError(f"{path}: Theano-ordered weights (backend=theano) are not supported; use the *_tf_* file")
    layer_names = _decode(root.attrs["layer_names"]) if "layer_names" in root.attrs else list(root.keys())
    with_weights = []
    for layer in layer_names:
      group = root[layer]
      weight_names = _decode(group.attrs.get("weight_names", []))
      if weight_names:
        with_weights.append(layer)
      if layer not in names:
        continue
      kernel = [w for w in weight_names if w.endswith("kernel:0") or w.endswith("_W:0")]
      bias = [w for w in weight_names if w.endswith("bias:0") or w.endswith("_b:0")]
      if len(kernel) != 1 or len(bias) != 1:
        raise ValueError(f"{path}: layer {layer} lists weights {weight_names}, not one kernel and one bias")
      values[layer] = (np.asarray(group[kernel[0]]), np.asarray(group[bias[0]]))
  absent = [n for n in names if n not in values]
  if absent:
    raise ValueError(f"{path}: VGG-Face layers missing from the file: {absent} (layers with weights there: "
                     f"{with_weights})")
  for name in names:
    layer = backbone.get_layer(name)
    kernel, bias = values[name]
    expected = (_shape(layer.kernel), _shape(layer.bias))
    if (kernel.shape, bias.shape) != expected:
      raise ValueError(f"{path}: layer {name} has kernel {kernel.shape} / bias {bias.shape}, the vgg16 backbone "
                       f"needs {expected[0]} / {expected[1]}")
  for name in names:
    layer = backbone.get_layer(name)
    layer.set_weights([v.astype(np.float32) for v in values[name]])
  return {"file": path, "loaded": names, "unexpected": [n for n in with_weights if n not in names]}


# ----------------------------------------------------------------------------- converted workdir
def convert(output_dir: str, released_model: str, checkpoint: str | None = None, allow_partial: bool = False,
            vggface_h5: str | None = None, image_size: int = 96, rnn_units: int | None = None,
            experiment: str | None = None, seed: int = 0) -> dict[str, Any]:
  """Builds the model, loads VGG-Face and/or the TF1 checkpoint, and writes `output_dir`.

  Writes `config.json`, `checkpoints/ckpt-0` (+ its `checkpoint` state file, so
  `train --init_from=<output_dir>` finds it), `conversion_report.json` and the
  SavedModel `saved_model` (`omg_cnnrnn.serving` signatures).

  Args:
    output_dir: where to write.
    released_model: the checkpoint's layout (a key of `RELEASED_MODELS`).
    checkpoint: the TF1 checkpoint prefix (None: only `vggface_h5`).
    allow_partial: load what fits, leave the rest fresh (see `load_tf1_checkpoint`).
    vggface_h5: VGG-Face weights loaded into the vgg16 backbone first (the checkpoint
      then overrides what it holds).
    image_size: input size of the model (the released models use 96).
    rnn_units: GRU size (None: the row's 128).
    experiment: build this registered row instead of the released model's (a warm start
      of another architecture; needs allow_partial unless the layers coincide).
    seed: seed of the layers that start fresh.

  Returns:
    The report written to `conversion_report.json`.
  """
  if checkpoint is None and vggface_h5 is None:
    raise ValueError("nothing to convert: give --checkpoint and/or --vggface_h5")
  config = released_config(released_model, image_size=image_size, rnn_units=rnn_units)
  if experiment:
    base = experiments.get(experiment)
    model_config = base.model if rnn_units is None else dataclasses.replace(base.model, rnn_units=rnn_units)
    config = dataclasses.replace(base, model=model_config,
                                 data=dataclasses.replace(base.data, image_size=image_size))
  tf_keras.utils.set_random_seed(seed)
  model = models.build_model(config.model, image_size=image_size)
  report: dict[str, Any] = {"released_model": released_model, "experiment": config.name,
                            "image_size": image_size, "rnn_units": config.model.rnn_units}
  if vggface_h5:
    report["vggface_h5"] = load_vggface_h5(model, vggface_h5)
  if checkpoint:
    report["tf1"] = load_tf1_checkpoint(model, config.model, checkpoint, released_model, allow_partial)
  os.makedirs(output_dir, exist_ok=True)
  atomic.write_atomic(os.path.join(output_dir, "config.json"), config.to_json())
  manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model), os.path.join(output_dir, "checkpoints"),
                                       max_to_keep=1)
  report["checkpoint"] = manager.save(checkpoint_number=0)
  report["saved_model"] = serving.export_saved_model(model, config, os.path.join(output_dir, "saved_model"))
  # Written last: a converted workdir is complete when its report exists.
  atomic.write_atomic(os.path.join(output_dir, "conversion_report.json"), json.dumps(report, indent=2))
  return report
