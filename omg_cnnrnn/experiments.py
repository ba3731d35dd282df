"""One registered experiment per paper-table row (Tables III-VI), plus a tiny `testing` row.

Each experiment is an `ExperimentConfig` built by a function whose docstring
names its table and row, the paper's CCC (x 100, OMG validation set) and the
command that reproduces it. Names read like the paper: `table3/cnn_3rnn_last_conv`.

    python -m omg_cnnrnn.experiments --list     # name, table, row, params at 96x96, paper CCC
    python -m omg_cnnrnn.experiments --json     # the same as JSON
    python -m omg_cnnrnn.train --experiment=table3/cnn_3rnn_last_conv --workdir=... --data_dir=...
    python -m omg_cnnrnn.train --experiment=table3/cnn_3rnn_last_conv:cpu ...   # the row at CPU size
    python -m omg_cnnrnn.experiments --get=table5/vgg_fc_rnn_resnet_rnn --field=init.after   # for scripts

The experiment owns its whole recipe: its network, data, optimisation, where it starts
(`init`: the paper's weights, the rows it starts after, and for fusion rows the ways it is
trained, Sec. III-C) and its post-processing. A name may carry a variant after a colon, as
big_vision's `config.py:arg`: `<row>:cpu` (`VARIANTS`) is the same row at CPU size. The
table scripts only loop over rows and read these configs; they hold no hyperparameter.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Callable

from omg_cnnrnn import configs
from omg_cnnrnn.configs import (DataConfig, ExperimentConfig, ModelConfig, PostprocessConfig, StartConfig,
                                StreamConfig, TrainingWay)
from omg_cnnrnn.registry import Registry

EXPERIMENTS: Registry[Callable[[], ExperimentConfig]] = Registry("experiment")

# Table I / Sec. IV-1: VGG-16 CNN only: FC1 4096 (+ dropout 0.5), FC2 2048, output 2.
VGG_CNN_ONLY = StreamConfig("vgg16", fc_units=(4096, 2048), fc_dropout=(0.5,), rnn_inputs=())
# Table II: VGG-16 conv, FC1 4096 + dropout, one 2-layer GRU subnet on FC1 ("VGG-16-FC-RNN").
VGG_FC_RNN = StreamConfig("vgg16", fc_units=(4096,), fc_dropout=(0.5,), rnn_inputs=(("fc1",),))
# Sec. III-B2 / Table IV: ResNet-50 pooled features, no FC (CNN only and CNN-RNN) ...
RESNET_CNN_ONLY = StreamConfig("resnet50", fc_units=(), fc_dropout=(), rnn_inputs=())
RESNET_RNN = StreamConfig("resnet50", fc_units=(), fc_dropout=(), rnn_inputs=(("pool5",),))
# ... or FC 4096 (+ dropout 0.5, as VGG's FC1) before the RNN ("CNN-FC-RNN").
RESNET_FC_RNN = StreamConfig("resnet50", fc_units=(4096,), fc_dropout=(0.5,), rnn_inputs=(("fc1",),))
# Sec. IV-2: hidden FC before the output in the "-FC" rows: 64 units.
HIDDEN_FC = 64

CNN_ONLY_DATA = DataConfig(sequence_length=1, batch_size=80)  # Sec. IV-1: single frames, batch 80.

# Where rows start (Sec. I, III-C; released train_script.py restores AffWildNet): from the
# AffWildNet model of their backbone when the user has it, else (the staged from-scratch
# recipe) from the CNN-only row of their table, trained first.
VGG_PAPER = ("affwildnet_vggface_gru",)
RESNET_PAPER = ("affwildnet_resnet_gru",)
START_VGG_CNN_ONLY = StartConfig(paper_weights=VGG_PAPER)
START_VGG_RNN = StartConfig(paper_weights=VGG_PAPER, after=("table3/cnn_only",))
START_RESNET_CNN_ONLY = StartConfig(paper_weights=RESNET_PAPER)
START_RESNET_RNN = StartConfig(paper_weights=RESNET_PAPER, after=("table4/cnn_only",))


def register(name: str):
  """Registers an experiment builder; the config's name must match the registered name."""

  def wrap(fn: Callable[[], ExperimentConfig]):
    def build() -> ExperimentConfig:
      config = fn()
      if config.name != name:
        raise ValueError(f"experiment {name!r} builds a config named {config.name!r}")
      return config

    build.__doc__ = fn.__doc__
    build.__name__ = fn.__name__
    return EXPERIMENTS.register(name, build)

  return wrap


# Released code (OMG_Challenge train_script.py line 26, `--h_units` help: "use 128 for CNN_GRU_1RNN
# network or 256 for CNN_GRU_3RNN network"): GRU units of the released CNN-3RNN.
RELEASED_3RNN_UNITS = 256
# Released code (OMG_Challenge AffWildNet.py, CNN_GRU_3RNN, line 135 and its two twins below it):
# each GRU sits in `DropoutWrapper(input_keep_prob=1, output_keep_prob=1)`: no dropout between GRUs.
RELEASED_RNN_DROPOUT = 0.0
# Rows registered as the authors' released code ran them, beside the paper's text: their names end so.
RELEASED_SUFFIX = "_released"


def is_released_code(name: str) -> bool:
  """Whether a registered row is a released-code variant (beside the paper-text row it twins)."""
  return name.endswith(RELEASED_SUFFIX) or name.endswith(RELEASED_SUFFIX + "_post")


def _vgg(name, row, ccc, rnn_inputs, hidden=0, description="", **model):
  stream = dataclasses.replace(VGG_FC_RNN, rnn_inputs=rnn_inputs)
  return ExperimentConfig(
      name=name, table="III", row=row, paper_ccc_valence=ccc[0], paper_ccc_arousal=ccc[1],
      model=ModelConfig(streams=(stream,), hidden_fc_units=hidden, **model), init=START_VGG_RNN,
      description=description)


def _vgg_3rnn_released(name, row, ccc, rnn_inputs, hidden=0):
  """A CNN-3RNN row as the released train_script.py trains CNN_GRU_3RNN: 256 GRU units, no dropout between GRUs."""
  return _vgg(name, f"{row} (released code)", ccc, rnn_inputs, hidden,
              description="Released-code variant: 256 GRU units, no dropout between the GRUs (the paper: 128, 0.2).",
              rnn_units=RELEASED_3RNN_UNITS, rnn_dropout=RELEASED_RNN_DROPOUT)


# ----------------------------------------------------------------------------- Table III (VGG-16)
@register("table3/cnn_only")
def table3_cnn_only():
  """Table III, 'CNN only': VGG-16 conv, FC 4096, FC 2048, output 2. Paper CCC 38.1 / 25.5.

  Trains on single frames in batches of 80 (Sec. IV-1).
  Run: python -m omg_cnnrnn.train --experiment=table3/cnn_only --workdir=... --data_dir=...
  """
  return ExperimentConfig(
      name="table3/cnn_only", table="III", row="CNN only", paper_ccc_valence=38.1, paper_ccc_arousal=25.5,
      model=ModelConfig(streams=(VGG_CNN_ONLY,)), data=CNN_ONLY_DATA, init=START_VGG_CNN_ONLY)


@register("table3/cnn_rnn")
def table3_cnn_rnn():
  """Table III, 'basic CNN-RNN' (Table II): VGG-16 conv, FC1 4096, 2x GRU 128, output. Paper CCC 44.7 / 26.9.

  Run: python -m omg_cnnrnn.train --experiment=table3/cnn_rnn --workdir=... --data_dir=...
  """
  return _vgg("table3/cnn_rnn", "basic CNN-RNN", (44.7, 26.9), (("fc1",),))


@register("table3/cnn_1rnn")
def table3_cnn_1rnn():
  """Table III, 'CNN-1RNN': concat[conv5_3, pool5, FC1] -> 2x GRU -> output. Paper CCC 40.74 / 30.05.

  As the paper's text (Sec. III-B1) describes it; the released code concatenates only
  [FC1, pool5]: see `table3/cnn_1rnn_released`.
  Run: python -m omg_cnnrnn.train --experiment=table3/cnn_1rnn --workdir=... --data_dir=...
  """
  return _vgg("table3/cnn_1rnn", "CNN-1RNN", (40.74, 30.05), (("conv5_3", "pool5", "fc1"),))


@register("table3/cnn_1rnn_released")
def table3_cnn_1rnn_released():
  """Table III, 'CNN-1RNN' as in the authors' released code (CNN_GRU_1RNN): concat[FC1, pool5] -> RNN.

  Same paper row and CCC (40.74 / 30.05); differs from the text by dropping conv5_3 and, as the
  released CNN-3RNN, by no dropout between the GRUs (OMG_Challenge AffWildNet.py, CNN_GRU_1RNN's
  `rnn_out_fc_max_pool`: `DropoutWrapper(input_keep_prob=1, output_keep_prob=1)`; Sec. IV-2: 0.2).
  Run: python -m omg_cnnrnn.train --experiment=table3/cnn_1rnn_released --workdir=... --data_dir=...
  """
  return _vgg("table3/cnn_1rnn_released", "CNN-1RNN (released code)", (40.74, 30.05), (("fc1", "pool5"),),
              rnn_dropout=RELEASED_RNN_DROPOUT)


@register("table3/cnn_2rnn")
def table3_cnn_2rnn():
  """Table III, 'CNN-2RNN': RNN(pool5) and RNN(FC1), concatenated -> output. Paper CCC 42.74 / 28.61.

  Run: python -m omg_cnnrnn.train --experiment=table3/cnn_2rnn --workdir=... --data_dir=...
  """
  return _vgg("table3/cnn_2rnn", "CNN-2RNN", (42.74, 28.61), (("pool5",), ("fc1",)))


@register("table3/cnn_2rnn_fc")
def table3_cnn_2rnn_fc():
  """Table III, 'CNN-2RNN-FC': as CNN-2RNN plus a hidden FC of 64 units. Paper CCC 42.11 / 28.33.

  Run: python -m omg_cnnrnn.train --experiment=table3/cnn_2rnn_fc --workdir=... --data_dir=...
  """
  return _vgg("table3/cnn_2rnn_fc", "CNN-2RNN-FC", (42.11, 28.33), (("pool5",), ("fc1",)), hidden=HIDDEN_FC)


@register("table3/cnn_3rnn_2nd_last_conv")
def table3_cnn_3rnn_2nd_last_conv():
  """Table III, 'CNN-3RNN-2nd-last-conv': RNN(conv5_2), RNN(pool5), RNN(FC1) -> output. Paper CCC 45.34 / 21.5.

  Run: python -m omg_cnnrnn.train --experiment=table3/cnn_3rnn_2nd_last_conv --workdir=... --data_dir=...
  """
  return _vgg("table3/cnn_3rnn_2nd_last_conv", "CNN-3RNN-2nd-last-conv", (45.34, 21.5),
              (("conv5_2",), ("pool5",), ("fc1",)))


@register("table3/cnn_3rnn_last_conv")
def table3_cnn_3rnn_last_conv():
  """Table III, 'CNN-3RNN-last-conv': RNN(conv5_3), RNN(pool5), RNN(FC1) -> output. Paper CCC 45.6 / 24.6.

  The best valence network (paper Fig. 1).
  Run: python -m omg_cnnrnn.train --experiment=table3/cnn_3rnn_last_conv --workdir=... --data_dir=...
  """
  return _vgg("table3/cnn_3rnn_last_conv", "CNN-3RNN-last-conv", (45.6, 24.6),
              (("conv5_3",), ("pool5",), ("fc1",)))


@register("table3/cnn_3rnn_2nd_last_conv_released")
def table3_cnn_3rnn_2nd_last_conv_released():
  """Table III, 'CNN-3RNN-2nd-last-conv' as the released code trains CNN-3RNN: 256 GRU units, no GRU dropout.

  Same paper row and CCC (45.34 / 21.5); departs from the text (Table II: 128 units; Sec. IV-2:
  dropout 0.2 between the GRUs) as the authors' challenge solution does: OMG_Challenge
  train_script.py line 26 (`--h_units` help: "256 for CNN_GRU_3RNN network") and AffWildNet.py
  line 135 (`DropoutWrapper(input_keep_prob=1, output_keep_prob=1)` around every GRU). The released
  CNN_GRU_3RNN taps the last conv (AffWildNet.py lines 56-58: subnets `rnn_fc`, `rnn_last_conv`,
  `rnn_max_pool`); this twin keeps the row's conv5_2, so it differs from its paper row only in
  the released settings.
  Run: python -m omg_cnnrnn.train --experiment=table3/cnn_3rnn_2nd_last_conv_released --workdir=... --data_dir=...
  """
  return _vgg_3rnn_released("table3/cnn_3rnn_2nd_last_conv_released", "CNN-3RNN-2nd-last-conv", (45.34, 21.5),
                            (("conv5_2",), ("pool5",), ("fc1",)))


@register("table3/cnn_3rnn_last_conv_released")
def table3_cnn_3rnn_last_conv_released():
  """Table III, 'CNN-3RNN-last-conv' as in the released code (CNN_GRU_3RNN): 256 GRU units, no GRU dropout.

  Same paper row and CCC (45.6 / 24.6). The released network itself: GRU subnets on conv5_3,
  pool5 and FC1, outputs concatenated [conv5_3, pool5, FC1] (OMG_Challenge AffWildNet.py
  lines 56-58), trained with `--h_units=256` (train_script.py line 26: "256 for CNN_GRU_3RNN
  network") and every GRU in `DropoutWrapper(input_keep_prob=1, output_keep_prob=1)`
  (AffWildNet.py line 135): no dropout between GRUs. The paper's text: 128 units (Table II),
  dropout 0.2 (Sec. IV-2).
  Run: python -m omg_cnnrnn.train --experiment=table3/cnn_3rnn_last_conv_released --workdir=... --data_dir=...
  """
  return _vgg_3rnn_released("table3/cnn_3rnn_last_conv_released", "CNN-3RNN-last-conv", (45.6, 24.6),
                            (("conv5_3",), ("pool5",), ("fc1",)))


@register("table3/cnn_3rnn_fc")
def table3_cnn_3rnn_fc():
  """Table III (text only), 'CNN-3RNN-FC': CNN-3RNN-last-conv plus a hidden FC of 64. No paper number.

  Run: python -m omg_cnnrnn.train --experiment=table3/cnn_3rnn_fc --workdir=... --data_dir=...
  """
  return _vgg("table3/cnn_3rnn_fc", "CNN-3RNN-FC", (None, None),
              (("conv5_3",), ("pool5",), ("fc1",)), hidden=HIDDEN_FC)


@register("table3/cnn_3rnn_fc_released")
def table3_cnn_3rnn_fc_released():
  """Table III (text only), 'CNN-3RNN-FC' with the released CNN-3RNN settings: 256 GRU units, no GRU dropout.

  No paper number, as its paper row. The released code has no hidden-FC variant; this twin
  applies the released CNN_GRU_3RNN settings (OMG_Challenge train_script.py line 26: "256 for
  CNN_GRU_3RNN network"; AffWildNet.py line 135: `DropoutWrapper` with keep_prob 1) to the
  row's network, CNN-3RNN-last-conv plus a hidden FC of 64.
  Run: python -m omg_cnnrnn.train --experiment=table3/cnn_3rnn_fc_released --workdir=... --data_dir=...
  """
  return _vgg_3rnn_released("table3/cnn_3rnn_fc_released", "CNN-3RNN-FC", (None, None),
                            (("conv5_3",), ("pool5",), ("fc1",)), hidden=HIDDEN_FC)


# ----------------------------------------------------------------------------- Table IV (ResNet-50)
def _resnet(name, row, ccc, stream, data=DataConfig()):
  init = START_RESNET_RNN if stream.rnn_inputs else START_RESNET_CNN_ONLY
  return ExperimentConfig(
      name=name, table="IV", row=row, paper_ccc_valence=ccc[0], paper_ccc_arousal=ccc[1],
      model=ModelConfig(streams=(stream,)), data=data, init=init)


@register("table4/cnn_only")
def table4_cnn_only():
  """Table IV, 'CNN only': ResNet-50, pool 2048, output 2. Paper CCC 38.4 / 21.64.

  Run: python -m omg_cnnrnn.train --experiment=table4/cnn_only --workdir=... --data_dir=...
  """
  return _resnet("table4/cnn_only", "CNN only", (38.4, 21.64), RESNET_CNN_ONLY, CNN_ONLY_DATA)


@register("table4/cnn_rnn")
def table4_cnn_rnn():
  """Table IV, 'basic CNN-RNN': ResNet-50 pool, 2x GRU 128, output. Paper CCC 44.4 / 26.7.

  Run: python -m omg_cnnrnn.train --experiment=table4/cnn_rnn --workdir=... --data_dir=...
  """
  return _resnet("table4/cnn_rnn", "basic CNN-RNN", (44.4, 26.7), RESNET_RNN)


@register("table4/cnn_fc_rnn")
def table4_cnn_fc_rnn():
  """Table IV, 'CNN-FC-RNN': ResNet-50 pool, FC 4096, 2x GRU 128, output. Paper CCC 40.7 / 26.4.

  Run: python -m omg_cnnrnn.train --experiment=table4/cnn_fc_rnn --workdir=... --data_dir=...
  """
  return _resnet("table4/cnn_fc_rnn", "CNN-FC-RNN", (40.7, 26.4), RESNET_FC_RNN)


# ----------------------------------------------------------------------------- Table V (fusion)
# Sec. III-C: a fused network is trained two ways, each its own run (`<root>/<row>/<way>`):
# (a) both branches from their Aff-Wild-pretrained single networks (the branch rows' pretraining
# runs, `<root>/affwild/<branch row>`; only with Aff-Wild data); (b) the row's registered start:
# the best single networks trained on OMG (`init.after`), or the paper's weights when given.
FUSION_WAYS = (TrainingWay("from_affwild", start="pretrained_branches"), TrainingWay("from_omg"))


def _fusion(name, row, ccc, resnet_stream, hidden):
  # The branch rows, one per stream (VGG-16-FC-RNN, then the ResNet-50 row of the same form).
  resnet_row = "table4/cnn_fc_rnn" if resnet_stream.fc_units else "table4/cnn_rnn"
  return ExperimentConfig(
      name=name, table="V", row=row, paper_ccc_valence=ccc[0], paper_ccc_arousal=ccc[1],
      model=ModelConfig(streams=(VGG_FC_RNN, resnet_stream), hidden_fc_units=hidden),
      init=StartConfig(paper_weights=VGG_PAPER + RESNET_PAPER, after=("table3/cnn_rnn", resnet_row),
                       ways=FUSION_WAYS),
      description="Fused streams; train from Aff-Wild-pretrained branches or from the best single OMG networks.")


@register("table5/vgg_fc_rnn_resnet_rnn")
def table5_vgg_fc_rnn_resnet_rnn():
  """Table V row 1: VGG-16-FC-RNN + ResNet-50-RNN + output layer. Paper CCC 45.47 / 27.47.

  Run: python -m omg_cnnrnn.train --experiment=table5/vgg_fc_rnn_resnet_rnn --workdir=... --data_dir=...
  """
  return _fusion("table5/vgg_fc_rnn_resnet_rnn", "VGG-16-FC-RNN + ResNet-50-RNN + output", (45.47, 27.47),
                 RESNET_RNN, 0)


@register("table5/vgg_fc_rnn_resnet_fc_rnn")
def table5_vgg_fc_rnn_resnet_fc_rnn():
  """Table V row 2: VGG-16-FC-RNN + ResNet-50-FC-RNN + output layer. Paper CCC 44.1 / 27.3.

  Run: python -m omg_cnnrnn.train --experiment=table5/vgg_fc_rnn_resnet_fc_rnn --workdir=... --data_dir=...
  """
  return _fusion("table5/vgg_fc_rnn_resnet_fc_rnn", "VGG-16-FC-RNN + ResNet-50-FC-RNN + output", (44.1, 27.3),
                 RESNET_FC_RNN, 0)


@register("table5/vgg_fc_rnn_resnet_rnn_fc")
def table5_vgg_fc_rnn_resnet_rnn_fc():
  """Table V row 3: VGG-16-FC-RNN + ResNet-50-RNN + FC 64 + output. Paper CCC 45.3 / 25.07.

  Run: python -m omg_cnnrnn.train --experiment=table5/vgg_fc_rnn_resnet_rnn_fc --workdir=... --data_dir=...
  """
  return _fusion("table5/vgg_fc_rnn_resnet_rnn_fc", "VGG-16-FC-RNN + ResNet-50-RNN + FC + output", (45.3, 25.07),
                 RESNET_RNN, HIDDEN_FC)


@register("table5/vgg_fc_rnn_resnet_fc_rnn_fc")
def table5_vgg_fc_rnn_resnet_fc_rnn_fc():
  """Table V row 4: VGG-16-FC-RNN + ResNet-50-FC-RNN + FC 64 + output. Paper CCC 45 / 24.5.

  Run: python -m omg_cnnrnn.train --experiment=table5/vgg_fc_rnn_resnet_fc_rnn_fc --workdir=... --data_dir=...
  """
  return _fusion("table5/vgg_fc_rnn_resnet_fc_rnn_fc", "VGG-16-FC-RNN + ResNet-50-FC-RNN + FC + output",
                 (45.0, 24.5), RESNET_FC_RNN, HIDDEN_FC)


# ----------------------------------------------------------------------------- Table VI (post-processing)
def _post(name, row, ccc, base):
  # Sec. III-E, the paper's procedure (`configs.PostprocessConfig` defaults): median windows 81 /
  # 3, then the within-video smoothing, each step kept only if it raises validation CCC. This
  # config is what `evaluate --postprocess_experiment=<this row>` (table6.sh) applies.
  base_config = EXPERIMENTS.lookup(base)()
  return dataclasses.replace(
      base_config, name=name, table="VI", row=row, paper_ccc_valence=ccc[0], paper_ccc_arousal=ccc[1],
      postprocess=PostprocessConfig(procedure="paper"), base_experiment=base,
      description=f"Post-processing (Sec. III-E, the paper's procedure) chosen on validation over the trained {base}.")


@register("table6/vgg16_1rnn_post")
def table6_vgg16_1rnn_post():
  """Table VI row 1: VGG-16-1RNN + post-processing. Paper CCC 43.1 / 31.1 (best arousal)."""
  return _post("table6/vgg16_1rnn_post", "VGG-16-1RNN + post-processing", (43.1, 31.1), "table3/cnn_1rnn")


@register("table6/vgg16_3rnn_last_conv_post")
def table6_vgg16_3rnn_last_conv_post():
  """Table VI row 2: VGG-16-3RNN-last-conv + post-processing. Paper CCC 49.1 / 26.1 (best valence)."""
  return _post("table6/vgg16_3rnn_last_conv_post", "VGG-16-3RNN-last-conv + post-processing", (49.1, 26.1),
               "table3/cnn_3rnn_last_conv")


@register("table6/vgg16_1rnn_released_post")
def table6_vgg16_1rnn_released_post():
  """Table VI row 1 over the released-code CNN-1RNN (table3/cnn_1rnn_released). Paper CCC 43.1 / 31.1.

  The paper's post-processing over the authors' released CNN_GRU_1RNN (OMG_Challenge
  AffWildNet.py: GRUs on concat[FC1, pool5]), which the authors call their challenge solution.
  Run: experiments/table6.sh table6/vgg16_1rnn_released_post
  """
  return _post("table6/vgg16_1rnn_released_post", "VGG-16-1RNN + post-processing (released code)", (43.1, 31.1),
               "table3/cnn_1rnn_released")


@register("table6/vgg16_3rnn_last_conv_released_post")
def table6_vgg16_3rnn_last_conv_released_post():
  """Table VI row 2 over the released-code CNN-3RNN (256 GRU units, no GRU dropout). Paper CCC 49.1 / 26.1.

  The paper's post-processing over table3/cnn_3rnn_last_conv_released (OMG_Challenge
  train_script.py line 26, AffWildNet.py line 135; see that row).
  Run: experiments/table6.sh table6/vgg16_3rnn_last_conv_released_post
  """
  return _post("table6/vgg16_3rnn_last_conv_released_post",
               "VGG-16-3RNN-last-conv + post-processing (released code)", (49.1, 26.1),
               "table3/cnn_3rnn_last_conv_released")


@register("table6/resnet_rnn_post")
def table6_resnet_rnn_post():
  """Table VI row 3: classic ResNet-RNN + post-processing. Paper CCC 46.2 / 28.1."""
  return _post("table6/resnet_rnn_post", "ResNet-RNN + post-processing", (46.2, 28.1), "table4/cnn_rnn")


@register("table6/fusion_post")
def table6_fusion_post():
  """Table VI row 4: VGG-16-FC-RNN + ResNet-50-RNN + output, + post-processing. Paper CCC 48.45 / 28.86."""
  return _post("table6/fusion_post", "VGG-16-FC-RNN + ResNet-50-RNN + output + post-processing", (48.45, 28.86),
               "table5/vgg_fc_rnn_resnet_rnn")


# ----------------------------------------------------------------------------- testing
@register("testing")
def testing():
  """A tiny row for tests and smoke runs: VGG-16 conv at 32x32, FC 16, one GRU subnet of 8 on [conv5_3, pool5, fc1].

  Not a paper row. Exercises every code path of the CNN-1RNN form in seconds on a CPU.
  """
  stream = StreamConfig("vgg16", fc_units=(16,), fc_dropout=(0.5,), rnn_inputs=(("conv5_3", "pool5", "fc1"),))
  return ExperimentConfig(
      name="testing", table="-", row="testing", paper_ccc_valence=None, paper_ccc_arousal=None,
      model=ModelConfig(streams=(stream,), rnn_units=8),
      data=DataConfig(image_size=32, sequence_length=4, batch_size=2, shuffle_buffer=8),
      train=configs.TrainConfig(num_steps=2, log_every_steps=1, checkpoint_every_steps=1, eval_every_steps=2),
      postprocess=PostprocessConfig(median_window_valence=3, median_window_arousal=3))


# ----------------------------------------------------------------------------- CPU-size variants
# VGG-16 width of the smoke variant (and of the tests' tiny rows, tests/conftest.py): 1/16 of Table I's.
TINY_BACKBONE_WIDTH = 0.0625


def _smoke_overrides(config: ExperimentConfig) -> list[str]:
  """`<row>:smoke`: two steps at tiny shapes (the table scripts' SMOKE=1: proof that a script runs end to
  end on a CPU; the numbers mean nothing). Everything else is the registered row.

  Tiny shapes: 32x32 crops, 4-frame windows, batches of 2, and each VGG-16 stream at 1/16 of Table I's widths
  (`backbone_width`, conv1 4 ... conv5 32 channels, every layer and tap still there, as the tests' tiny rows)
  with its FC layers at 1/16 of their units (4096 -> 256); ResNet-50 streams (no width multiplier) as they are.
  """
  width = TINY_BACKBONE_WIDTH
  streams = [{**s, "backbone_width": width, "fc_units": tuple(max(1, int(u * width)) for u in s["fc_units"])}
             if s["backbone"] == "vgg16" else s for s in config.to_dict()["model"]["streams"]]
  return ["data.image_size=32", "data.sequence_length=4", "data.batch_size=2", "data.shuffle_buffer=8",
          "train.num_steps=2", "train.log_every_steps=1", "train.checkpoint_every_steps=1",
          "train.eval_every_steps=2", f"model.streams={streams!r}"]


def _cpu_overrides(config: ExperimentConfig) -> list[str]:
  """`<row>:cpu`: the row at a size a CPU trains in minutes (the demo's runs, `experiments/demo.py`).

  32x32 crops (paper 96); recurrent rows on 8-frame sequences (paper 80), 4 a batch (the paper's),
  for 60 steps; CNN-only rows on batches of 40 frames (paper 80) for 170 steps; validated twice.
  Everything else is the registered row. The CNN-only stage sees 6,800 frames instead of 130 x 80 =
  10,400 so the demo fits 10 minutes on a 2-core AVX2 machine (issue 11), and per frame batches of 40
  learn faster. Measured on the demo's set, validation valence / arousal CCC of the CNN-only row, then
  of the CNN-RNN after it (the better of its two validations): 130 x 80 frames (seed 0) 0.82 / 0.90,
  then 0.86 / 0.93; 130 x 40 (seed 0) 0.73 / 0.90, then 0.72 / 0.84; 130 x 40 (seed 1) 0.63 / 0.88,
  then 0.64 / 0.83; 170 x 40 (seed 1) 0.79 / 0.89, then 0.79 / 0.91.
  """
  steps = 60 if config.model.has_rnn else 170
  extra = ["data.sequence_length=8"] if config.model.has_rnn else ["data.batch_size=40"]
  return (["data.image_size=32", "train.log_every_steps=25", "train.checkpoint_every_steps=50"] + extra
          + [f"train.num_steps={steps}", f"train.eval_every_steps={max(1, steps // 2)}"])


# Variant name -> the config overrides (dotted `key=value`) it applies to a row, derived from the row.
VARIANTS: dict[str, Callable[[ExperimentConfig], list[str]]] = {"cpu": _cpu_overrides, "smoke": _smoke_overrides}


def split_name(name: str) -> tuple[str, str]:
  """`"<row>[:<variant>]"` -> (row, variant or "")."""
  row, _, variant = name.partition(":")
  return row, variant


def variant_overrides(name: str) -> list[str]:
  """The overrides (dotted `key=value`) the variant in `name` applies to its row ([] without one)."""
  row, variant = split_name(name)
  if not variant:
    return []
  if variant not in VARIANTS:
    raise KeyError(f"unknown variant {variant!r} in {name!r}; variants: {', '.join(VARIANTS)}")
  return VARIANTS[variant](EXPERIMENTS.lookup(row)())


def get(name: str) -> ExperimentConfig:
  """Returns the config of the registered experiment `name` (unknown -> KeyError listing all).

  `name` is a registered row, or `<row>:<variant>` (`VARIANTS`): the row with the variant's
  overrides (its name stays the row's, so its runs are found and reported as the row's).
  """
  row, variant = split_name(name)
  config = EXPERIMENTS.lookup(row)()
  return configs.override(config, variant_overrides(name)) if variant else config


def names() -> list[str]:
  return EXPERIMENTS.names()


def field(name: str, key: str) -> str:
  """A config value as the table scripts read it (`--get=ROW --field=KEY`).

  A string or number as itself; a tuple one item a line, each item's fields space-separated
  when it is a dataclass (`init.ways`: "from_affwild pretrained_branches"), else the items
  space-separated on one line (`init.after`: "table3/cnn_rnn table4/cnn_rnn").
  """
  value = get(name)
  for part in key.split("."):
    if not dataclasses.is_dataclass(value) or part not in {f.name for f in dataclasses.fields(value)}:
      raise KeyError(f"unknown config key {key!r}")
    value = getattr(value, part)
  if isinstance(value, tuple):
    if value and dataclasses.is_dataclass(value[0]):
      return "\n".join(" ".join(str(v) for v in dataclasses.astuple(item)) for item in value)
    return " ".join(str(v) for v in value)
  return str(value)


def describe(name: str) -> str:
  """The first docstring line of a registered experiment."""
  return (EXPERIMENTS.lookup(name).__doc__ or "").strip().splitlines()[0]


def define_flags(flag_values=None):
  """Defines `--experiment` and `--override`, shared by train/evaluate/export (STYLE habit 2).

  `--experiment` lists every registered row in `--help`; an unknown name fails with the list.

  Args:
    flag_values: the absl FlagValues to define them on (default: the global FLAGS).
  """
  from absl import flags

  flag_values = flag_values if flag_values is not None else flags.FLAGS
  rows = "\n".join(f"  {n}: {describe(n)}" for n in names())
  flags.DEFINE_string("experiment", None, f"Registered experiment (paper-table row), optionally with a variant "
                      f"(<row>:{'|'.join(VARIANTS)}, the row at CPU size):\n{rows}", flag_values=flag_values)

  def known(name):
    if name is None:
      return True
    row, variant = split_name(name)
    if row not in EXPERIMENTS:
      raise flags.ValidationError(f"unknown experiment {row!r}; registered experiments:\n  " + "\n  ".join(names()))
    if variant and variant not in VARIANTS:
      raise flags.ValidationError(f"unknown variant {variant!r}; variants: {', '.join(VARIANTS)}")
    return True

  flags.register_validator("experiment", known, flag_values=flag_values)
  flags.DEFINE_multi_string("override", [], "Config override key=value (e.g. train.num_steps=10), repeatable.",
                            flag_values=flag_values)


def from_flags(flag_values) -> ExperimentConfig:
  """The experiment named by `--experiment` with `--override`s applied."""
  return configs.override(get(flag_values.experiment), flag_values.override)


def summary(name: str, count_params: bool = True) -> dict:
  """A row of `--list`: name, table, row, parameter count at the paper's 96x96, paper CCC."""
  config = get(name)
  params = None
  if count_params:
    from omg_cnnrnn import models  # Lazy: listing names needs no TensorFlow.

    params = models.build_model(config.model, image_size=96).count_params()
  return {
      "name": name, "table": config.table, "row": config.row, "params": params,
      "paper_ccc_valence": config.paper_ccc_valence, "paper_ccc_arousal": config.paper_ccc_arousal,
  }


def _fmt(value):
  return "-" if value is None else f"{value:g}"


def main(argv):
  from absl import flags

  del argv
  if flags.FLAGS.get:
    print(field(flags.FLAGS.get, flags.FLAGS.field))
    return
  rows = [summary(n, count_params=not flags.FLAGS.no_params) for n in names()]
  if flags.FLAGS.json:
    print(json.dumps(rows, indent=2))
    return
  header = f"{'name':42} {'table':5} {'row':58} {'params@96':>12} {'paper V':>8} {'paper A':>8}"
  print(header)
  print("-" * len(header))
  for r in rows:
    params = "-" if r["params"] is None else f"{r['params']:,}"
    print(f"{r['name']:42} {r['table']:5} {r['row']:58} {params:>12} "
          f"{_fmt(r['paper_ccc_valence']):>8} {_fmt(r['paper_ccc_arousal']):>8}")


if __name__ == "__main__":
  from absl import app, flags

  flags.DEFINE_bool("list", True, "Print every registered row as a table (the default).")
  flags.DEFINE_bool("json", False, "Print the rows as a JSON list instead.")
  flags.DEFINE_bool("no_params", False, "Skip building models to count parameters.")
  flags.DEFINE_string("get", "", "Print one config value of this row[:variant] instead (with --field; the table "
                      "scripts read the rows' recipes this way).")
  flags.DEFINE_string("field", "name", "Dotted config key printed by --get, e.g. init.after, init.ways, "
                      "base_experiment.")
  app.run(main)
