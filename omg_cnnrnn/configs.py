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

@dataclasses.dataclass(frozen=True)
class DataConfig:
  """What the input pipeline feeds the model."""

  # Sec. III-C: face crops resized to 96x96x3, intensities scaled to [-1, 1].
  image_size: int = 96
  # Sec. III-C: "sequence length of 80 consecutive frames".
  sequence_length: int = 80
  # Sec. III-C: "we used a batch size of 4" (CNN plus RNN networks).
  batch_size: int = 4
  # Sec. III-C: "each utterance was assigned the mean or median of the values of the frames".
  utterance_aggregate: str = "mean"
  # Not in the paper: shuffle buffer (in training windows) of the training pipeline, after the
  # utterance mixing below; no larger than `mix_utterances`, so it holds ~one window per utterance.
  shuffle_buffer: int = 128
  # Released code (train_script.py shuffles all training frames globally): a batch mixes many
  # utterances, so the batch CCC sees the label variance between them. Utterances are shuffled
  # in a buffer of this many (prepared shards are in label-file order, grouped by video) ...
  utterance_shuffle_buffer: int = 256
  # ... and the windows of this many utterances are read in turn, one window of each, so an
  # 80-frame CNN-only batch holds frames of about 80 utterances (tests/test_pipeline.py).
  mix_utterances: int = 128
  # Not in the paper: training windows start at a random offset inside an utterance
  # (the authors cut utterances into consecutive, non-overlapping 80-frame pieces).
  random_offset: bool = True
  # Not in the paper (it names no augmentation): training-window augmentation (`data/augment.py`),
  # one draw per window shared by all its frames, so the motion inside a window is kept. Off by
  # default and not in the `ScratchRecipe`; measured in the README ("Where training starts").
  augment_flip: bool = False       # mirror the window with probability 1/2
  augment_crop_scale: float = 1.0  # crop a square of side U(this, 1) at a random place (1: off)
  augment_color: float = 0.0       # channel gains, contrast in 1 +- this, brightness +- this (0: off)

  def __post_init__(self):
    if not 0 < self.augment_crop_scale <= 1:
      raise ValueError(f"data.augment_crop_scale {self.augment_crop_scale!r} must be in (0, 1] (1: no crop)")
    if not 0 <= self.augment_color < 1:
      raise ValueError(f"data.augment_color {self.augment_color!r} must be in [0, 1) (0: no colour change)")


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
  # (the backbone's `backbones.rnn_taps`, then "fc1", "fc2" ...). Empty: a CNN-only stream
  # (per-frame output; Sec. IV-1's single frames in batches of 80 are `experiments.CNN_ONLY_DATA`).
  rnn_inputs: tuple[tuple[str, ...], ...] = (("fc1",),)
  # Not in the paper: channel multiplier of the VGG-16 backbone (1 = Table I). Only the
  # tests' tiny rows use another value, so they train in seconds.
  backbone_width: float = 1.0

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
  # Released code (TF-slim resnet_arg_scope, batch_norm_decay 0.997): decay of the ResNet-50
  # batch-norm moving statistics used at evaluation.
  batch_norm_momentum: float = 0.997
  # Released code (TF1 tf.contrib.rnn.GRUCell, as AffWildNet and the OMG models use it): the
  # gate biases (reset, update) start at 1.0 and the candidate bias at 0; Keras starts all at 0.
  gru_gate_bias: float = 1.0

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
  # Sec. III-D: f(.) computes "either the mean or the median" of a sequence's predictions
  # ("mean" | "median"); "frame" (not in the paper) takes the CCC over every valid frame.
  loss_aggregate: str = "mean"
  # Not in the paper: the objective on data whose labels are per frame (Aff-Wild, Aff-Wild2;
  # detected from the records' `dataset`). "frame": every annotated frame is a CCC sample, so
  # the loss sees the within-video variation Aff-Wild annotates (OMG gives one label per
  # utterance, so the paper's per-sequence mean is the right sample there). "" = loss_aggregate.
  per_frame_label_aggregate: str = "frame"
  # Not in the paper: adds `mse_weight` times the MSE of the same aggregates (the released code's
  # other loss) to 1 - CCC (0 = the paper's loss). The CCC over a batch of 4 sequence means is
  # a noisy signal; on frozen 16x16 frames of the motion set (`data_prep.synthesize --preset=motion`)
  # the paper's GRU stack reached validation arousal CCC 0.69 at step 300 with `mse_weight=1`, and
  # none (-0.01) with the CCC alone (README, "Where training starts"). Not in the scratch recipe:
  # end to end it did not bring the motion (measured there too).
  mse_weight: float = 0.0
  # Not in the paper (it gives no schedule): number of optimisation steps.
  num_steps: int = 20000
  # Paper: none of the following (constant lr, no clipping, every layer trains from step 1);
  # the from-scratch recipe (`ScratchRecipe`) sets them. Linear learning-rate warm-up (steps).
  warmup_steps: int = 0
  # Gradient clipping by global norm (0 = none).
  clip_global_norm: float = 0.0
  # The first steps train only the layers a warm start left fresh (0 = none): new GRUs and
  # output learn to read the loaded features before the gradients reach those features.
  freeze_loaded_steps: int = 0
  # Learning-rate multipliers in a warm-started run (1 = one rate for all, the paper's): of the
  # layers it left fresh (new GRUs, output) and of those it loaded (convolutions, FC1).
  fresh_lr_scale: float = 1.0
  loaded_lr_scale: float = 1.0
  # Not in the paper: after the freeze, the loaded layers' rate ramps linearly from 0 to
  # `loaded_lr_scale` over this many steps (0 = at once). Their Adam moments start at the
  # unfreeze while the bias correction counts every step of the run, so their first
  # updates are several times larger than Adam's usual; the ramp absorbs that.
  loaded_warmup_steps: int = 0
  # Not in the paper: how often to log, checkpoint and validate (in steps).
  log_every_steps: int = 100
  checkpoint_every_steps: int = 1000
  eval_every_steps: int = 2000
  # Not in the paper: checkpoints kept by tf.train.CheckpointManager.
  max_checkpoints_to_keep: int = 3
  # Which start this run had (written by `omg_cnnrnn.start.resolve`, recorded in config.json):
  # "paper" (the paper's weights and values) or "scratch" (random weights, or a chain that
  # began from them: the `ScratchRecipe` values replace the paper's).
  start: str = "paper"


# How a training way starts its branches (`TrainingWay.start`): from the Aff-Wild pretraining runs of the
# rows in `StartConfig.after` (needs Aff-Wild data), or from the row's registered start (`StartConfig`).
WAY_STARTS = ("pretrained_branches", "registered")


@dataclasses.dataclass(frozen=True)
class TrainingWay:
  """One of the ways a row is trained, each its own run at `<root>/<row>/<name>` (Sec. III-C)."""

  name: str
  start: str = "registered"

  def __post_init__(self):
    if self.start not in WAY_STARTS:
      raise ValueError(f"TrainingWay.start {self.start!r} must be one of {WAY_STARTS}")


@dataclasses.dataclass(frozen=True)
class StartConfig:
  """Where a row's weights come from (Sec. I, III-C; the released train_script.py).

  The paper never trains from random weights: every row starts from AffWildNet (itself
  trained from VGG-Face), whose convolutions, FC1 and GRUs load where they match; new
  layers start fresh. Without those weights a row starts from the registered row trained
  before it (`after`: the staged recipe, CNN-only before CNN-RNN), else from scratch.
  """

  # Released AffWildNet models (`omg_cnnrnn.tf1_weights` names) this row loads, one per stream:
  # "affwildnet_vggface_gru" (VGG-16 streams), "affwildnet_resnet_gru" (ResNet-50 streams).
  paper_weights: tuple[str, ...] = ()
  # Registered rows whose trained workdirs start this row when the paper weights are not
  # given (fusion rows: one per stream, Sec. III-C training way (a)/(b)).
  after: tuple[str, ...] = ()
  # Sec. III-C, fusion rows: "two ways" of training, one run each (`TrainingWay`). Empty: one run at
  # `<root>/<row>`, after the row's own Aff-Wild pretraining when there is Aff-Wild data.
  ways: tuple[TrainingWay, ...] = ()


@dataclasses.dataclass(frozen=True)
class ScratchRecipe:
  """Values that replace the paper's for a run whose chain began from random weights.

  Not in the paper (its rows always start from VGG-Face / AffWildNet weights): a plain
  VGG-16 without batch norm trained from random weights with the paper's lr 1e-3 and
  Glorot initialisation diverges or dies (loss stuck at 1.0), and fresh GRUs fed the tiny
  FC1 features of a CNN-only run from scratch learn slowly. Measured in the README ("Where
  training starts: the paper's weights, or the from-scratch recipe").
  """

  # He initialisation keeps a 13-conv ReLU stack's activations at scale (Glorot shrinks them).
  kernel_initializer: str = "he_normal"
  # ResNet-50's moving statistics at slim's 0.997 are still ~70% their initial values after a
  # hundred steps, so a short run from scratch evaluates garbage (measured: CCC ~0 after 100
  # steps whatever the training loss); 0.9 follows the batches within a few dozen steps.
  batch_norm_momentum: float = 0.9
  # A cold start (every layer fresh, e.g. the CNN-only row): Adam at 1e-4 (1e-3 diverges).
  learning_rate: float = 1e-4
  warmup_steps: int = 50
  clip_global_norm: float = 1.0
  # A warm start (e.g. CNN-RNN after CNN-only): the loaded layers stay frozen for the first
  # steps while the new GRUs and output learn to read them at 10x (the paper's 1e-3), then
  # train at 0.3x (3e-5). Measured (README, "Where training starts"): the loaded layers at 1e-4
  # next to GRUs at 1e-3 die within ~20 steps of the unfreeze (FC1 of a CNN-only run from
  # scratch is tiny, RMS ~0.03, so one Adam step moves its pre-activations past zero); at 1e-4
  # for all, fresh GRUs learn slowly.
  freeze_loaded_steps: int = 50
  fresh_lr_scale: float = 10.0
  loaded_lr_scale: float = 0.3
  # ... reached over 50 steps after the freeze. Measured on the demo's set (CNN-RNN after the
  # CNN-only stage, 100 steps validated every 10): 0.738 / 0.905 at step 100 with the ramp,
  # 0.687 / 0.609 without it; the same up to the unfreeze.
  loaded_warmup_steps: int = 50

  def overrides(self) -> dict[str, Any]:
    """Dotted config keys this recipe sets."""
    return {"model.kernel_initializer": self.kernel_initializer,
            "model.batch_norm_momentum": self.batch_norm_momentum, "train.learning_rate": self.learning_rate,
            "train.warmup_steps": self.warmup_steps, "train.clip_global_norm": self.clip_global_norm,
            "train.freeze_loaded_steps": self.freeze_loaded_steps, "train.fresh_lr_scale": self.fresh_lr_scale,
            "train.loaded_lr_scale": self.loaded_lr_scale, "train.loaded_warmup_steps": self.loaded_warmup_steps,
            "train.start": "scratch"}


# Post-processing procedures (`omg_cnnrnn.postprocess`): "paper" (Sec. III-E) or "search" (not in the paper).
POSTPROCESS_PROCEDURES = ("paper", "search")


@dataclasses.dataclass(frozen=True)
class PostprocessConfig:
  """Table VI post-processing (Sec. III-E)."""

  # Sec. III-E: median filter over per-frame predictions, window 81 (valence) and 3 (arousal).
  median_window_valence: int = 81
  median_window_arousal: int = 3
  # Sec. III-E: smoothing of utterance predictions within a video, "especially to those
  # that consisted of too few frames". Whether each step is kept is decided on validation.
  smooth_utterances: bool = True
  # Sec. III-E: "paper" fixes the settings here and only keeps or drops each step (median
  # filter, then smoothing), per dimension, where it raises validation CCC. "search" (not in
  # the paper) also searches windows 1..161, both edge modes and smoothing strengths up to
  # 2560 frames on the split it then reports: more optimistic, not comparable with Table VI.
  procedure: str = "paper"
  # Not in the paper (it names no strength): the smoothing's k in frames, `p' = (n p + k m) / (n + k)`
  # (`postprocess.smooth_within_video`). 80 = one training sequence (Sec. III-C): an utterance
  # shorter than a sequence ("too few frames") leans more on its video's mean than on itself.
  smoothing_k: float = 80.0
  # Not in the paper (it does not say how the filter treats an utterance's ends): "reflect"
  # mirrors the utterance at its ends (`postprocess.EDGE_MODES`).
  median_edge_mode: str = "reflect"

  def __post_init__(self):
    if self.procedure not in POSTPROCESS_PROCEDURES:
      raise ValueError(f"postprocess.procedure {self.procedure!r} must be one of {POSTPROCESS_PROCEDURES}")


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
  # Where the weights come from, and the recipe used when the chain starts from scratch.
  init: StartConfig = StartConfig()
  scratch_recipe: ScratchRecipe = ScratchRecipe()
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
