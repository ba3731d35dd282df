"""Frozen dataclass configs: data, model, training, post-processing, experiment.

Every number of the paper (Kollias & Zafeiriou, arXiv 1805.01452) that shapes a
model or its training lives in a field here, with a comment citing the section
or table it comes from. Experiments (one per paper-table row) are built in
`omg_cnnrnn.experiments` from these dataclasses; flags never carry
hyperparameters, only `--override key=value` on top of a registered row.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import types
import typing
from typing import Any, Mapping

# Feature taps a VGG-16 stream can feed to an RNN subnet (Sec. III-B1).
VGG_TAPS = ("conv5_2", "conv5_3", "pool5", "fc1")
# Feature taps of a ResNet-50 stream (Sec. III-B2): the pooled output and an optional FC.
RESNET_TAPS = ("pool5", "fc1")


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """What the input pipeline feeds the model."""

  # Sec. III-C: face crops resized to 96x96x3, intensities scaled to [-1, 1].
  image_size: int = 96
  # Sec. III-C: "sequence length of 80 consecutive frames".
  sequence_length: int = 80
  # Sec. III-C: "we used a batch size of 4" (CNN plus RNN networks).
  batch_size: int = 4
  # Sec. IV-1: CNN-only networks train on single frames, "optimal was found to be 80".
  frame_batch_size: int = 80
  # Sec. III-C: "each utterance was assigned the mean or median of the values of the frames".
  utterance_aggregate: str = "mean"
  # Not in the paper: shuffle buffer (in sequences) of the training pipeline.
  shuffle_buffer: int = 512
  # Not in the paper: training windows start at a random offset inside an utterance
  # (the authors cut utterances into consecutive, non-overlapping 80-frame pieces).
  random_offset: bool = True


@dataclasses.dataclass(frozen=True)
class StreamConfig:
  """One CNN(-RNN) stream: a backbone, FC layers after it, and RNN subnets on its taps.

  A fused network (Table V) has two streams; every other row has one.
  """

  # Sec. III-A / III-B2: "vgg16" (VGG-16 / VGG-Face conv stack) or "resnet50" (TF-slim resnet_v1_50).
  backbone: str = "vgg16"
  # Table I blocks 6-7 (CNN only: 4096, 2048), Table II block 2 (CNN-RNN: 4096),
  # Sec. III-B2 / Table IV (ResNet: none, or 4096 for CNN-FC-RNN).
  fc_units: tuple[int, ...] = (4096,)
  # Sec. IV-1 / IV-2: dropout probability 0.5 after FC1 (released code: FC1 only).
  fc_dropout: tuple[float, ...] = (0.5,)
  # Sec. III-B1: each inner tuple is one RNN subnet, fed the concatenation of these taps
  # (names from VGG_TAPS / RESNET_TAPS). Empty: a CNN-only stream (per-frame output).
  rnn_inputs: tuple[tuple[str, ...], ...] = (("fc1",),)

  @property
  def name(self) -> str:
    """Prefix of this stream's layer names (the backbone name)."""
    return self.backbone


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """A whole network: its streams and the shared RNN / output settings."""

  streams: tuple[StreamConfig, ...] = (StreamConfig(),)
  # Table II blocks 3-4: each RNN subnet is 2 GRU layers of 128 units.
  rnn_units: int = 128
  rnn_layers: int = 2
  # Sec. IV-2: "dropout probability equal to 0.2, between the 2 GRU layers".
  rnn_dropout: float = 0.2
  # Sec. IV-2 / IV-4: hidden FC before the output in the "-FC" rows: 64 units (0 = none).
  hidden_fc_units: int = 0
  # Table I block 8 / Table II block 5: 2 linear outputs, valence and arousal.
  num_outputs: int = 2
  # Not in the paper: TF1 GRUCell semantics (reset gate applied before the recurrent
  # matmul, Keras reset_after=False) so the authors' checkpoints map exactly; True gives
  # the cuDNN-compatible form (a speed option on GPUs).
  gru_reset_after: bool = False
  # Not in the paper: initialiser of the conv and FC kernels that start fresh. The released
  # code's tf.get_variable default is Glorot-uniform; "he_normal" trains a plain VGG-16 from
  # scratch much sooner (the paper always starts from VGG-Face / Aff-Wild weights).
  kernel_initializer: str = "glorot_uniform"

  @property
  def has_rnn(self) -> bool:
    return any(s.rnn_inputs for s in self.streams)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Optimisation settings."""

  # Sec. IV-1 and released code: Adam, learning rate 0.001.
  learning_rate: float = 1e-3
  # Sec. III-D: loss 1 - CCC ("ccc"); the released code also offers MSE ("mse").
  loss: str = "ccc"
  # Sec. III-D: f(.) computes "either the mean or the median" of a sequence's predictions.
  loss_aggregate: str = "mean"
  # Not in the paper (it gives no schedule): number of optimisation steps.
  num_steps: int = 20000
  # Not in the paper: how often to log, checkpoint and validate (in steps).
  log_every_steps: int = 100
  checkpoint_every_steps: int = 1000
  eval_every_steps: int = 2000
  # Not in the paper: checkpoints kept by tf.train.CheckpointManager.
  max_checkpoints_to_keep: int = 3
  # Sec. III-C: pretrain on Aff-Wild, then train on OMG from those weights. Name of the
  # registered experiment whose Aff-Wild run initialises this one ("" = none).
  pretrain_experiment: str = ""


@dataclasses.dataclass(frozen=True)
class PostprocessConfig:
  """Table VI post-processing (Sec. III-E)."""

  # Sec. III-E: median filter over per-frame predictions, window 81 (valence) and 3 (arousal).
  median_window_valence: int = 81
  median_window_arousal: int = 3
  # Sec. III-E: smoothing of utterance predictions within a video, "especially to those
  # that consisted of too few frames". Whether each step is kept is decided on validation.
  smooth_utterances: bool = True


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
  """One paper-table row: everything needed to build, train and evaluate it."""

  name: str
  table: str
  row: str
  # Paper's CCC x 100 on the OMG validation set (None where the paper gives no number).
  paper_ccc_valence: float | None
  paper_ccc_arousal: float | None
  model: ModelConfig = ModelConfig()
  data: DataConfig = DataConfig()
  train: TrainConfig = TrainConfig()
  postprocess: PostprocessConfig | None = None
  # Table VI rows are post-processing over another row: the row they start from.
  base_experiment: str = ""
  description: str = ""

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def _from_dict(cls, value):
  """Rebuilds a (nested) dataclass from `dataclasses.asdict` output."""
  if value is None:
    return None
  hints = typing.get_type_hints(cls)
  kwargs = {}
  for field in dataclasses.fields(cls):
    if field.name not in value:
      continue
    kwargs[field.name] = _coerce(hints[field.name], value[field.name])
  return cls(**kwargs)


def _coerce(hint, value):
  origin = typing.get_origin(hint)
  args = typing.get_args(hint)
  if dataclasses.is_dataclass(hint):
    return _from_dict(hint, value)
  if origin in (typing.Union, types.UnionType):
    non_none = [a for a in args if a is not type(None)]
    if value is None:
      return None
    return _coerce(non_none[0], value)
  if origin is tuple:
    if len(args) == 2 and args[1] is Ellipsis:
      return tuple(_coerce(args[0], v) for v in value)
    return tuple(_coerce(a, v) for a, v in zip(args, value))
  if hint is float and isinstance(value, int):
    return float(value)
  return value


def experiment_from_dict(value: Mapping[str, Any]) -> ExperimentConfig:
  """Inverse of `ExperimentConfig.to_dict` (used to reload a workdir's config.json)."""
  return _from_dict(ExperimentConfig, value)


def override(config: ExperimentConfig, overrides: Mapping[str, Any] | list[str]) -> ExperimentConfig:
  """Returns `config` with dotted-key overrides applied.

  Args:
    config: the experiment to modify.
    overrides: a mapping `{"train.num_steps": 10}` or strings `"train.num_steps=10"`;
      string values are parsed as Python literals when they are one, else kept as text.

  Returns:
    A new frozen config. Unknown keys raise `KeyError` naming the key and the valid ones.
  """
  if not isinstance(overrides, Mapping):
    parsed = {}
    for item in overrides:
      if "=" not in item:
        raise ValueError(f"override {item!r} is not of the form key=value")
      key, raw = item.split("=", 1)
      try:
        parsed[key.strip()] = ast.literal_eval(raw.strip())
      except (ValueError, SyntaxError):
        parsed[key.strip()] = raw.strip()
    overrides = parsed
  data = config.to_dict()
  for key, value in overrides.items():
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
      if not isinstance(node, dict) or part not in node:
        raise KeyError(f"unknown config key {key!r}")
      node = node[part]
      if node is None:
        raise KeyError(f"config key {key!r} is unset in this experiment")
    if not isinstance(node, dict) or parts[-1] not in node:
      valid = sorted(node) if isinstance(node, dict) else []
      raise KeyError(f"unknown config key {key!r}; valid keys here: {valid}")
    node[parts[-1]] = value
  return experiment_from_dict(data)
