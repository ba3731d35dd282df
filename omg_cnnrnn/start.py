"""Where a run's weights come from, and which recipe that start calls for.

The paper never trains a row from random weights (Sec. I: AffWildNet "to initialize the
training procedure"; the released `train_script.py` restores the AffWildNet checkpoint,
convolutions and FC1, `ignore_missing_vars`). Each registered row says where it starts
(`ExperimentConfig.init`); `resolve` turns that into the warm-start sources of one run:

1. `--init_from` given: exactly those sources (a workdir, a checkpoint prefix,
   `tf1:[<released>@]<prefix>` or `vggface:<h5>`).
2. else the paper's weights, when the user has them (`PaperWeights`: AffWildNet TF1
   checkpoints, or the Keras VGG-Face h5 for VGG streams): one source per stream.
3. else the trained workdirs of the rows registered before it (`init.after`, e.g.
   `table3/cnn_only` before `table3/cnn_rnn`), found as `<runs_root>/<row>`: the staged
   from-scratch recipe.
4. else nothing: random weights.

The start is "paper" when every source is the paper's weights or a run whose own chain
began from them, and "scratch" otherwise (random weights, or a chain that began from
them). A scratch start gets the row's `ScratchRecipe` values in place of the paper's
(`apply`), and `train.start` records which applied in the workdir's config.json.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Sequence

from omg_cnnrnn import configs

# Released AffWildNet model (omg_cnnrnn.tf1 name) -> the backbone its weights fit.
PAPER_WEIGHT_BACKBONES = {"affwildnet_vggface_gru": "vgg16", "affwildnet_resnet_gru": "resnet50"}


@dataclasses.dataclass(frozen=True)
class PaperWeights:
  """Files of the paper's starting weights the user has ("" = not available)."""

  affwildnet_vgg: str = ""  # TF1 prefix of affwildnet-vggface-gru (model.ckpt-N)
  affwildnet_resnet: str = ""  # TF1 prefix of affwildnet-resnet-gru
  vggface_h5: str = ""  # Keras VGG-Face weights (rcmalli_vggface_tf_notop_vgg16.h5): VGG convolutions only

  def source_for(self, released: str) -> str:
    """The warm-start source of one released model, or "" when the user lacks it."""
    if released == "affwildnet_vggface_gru":
      if self.affwildnet_vgg:
        return f"tf1:{released}@{self.affwildnet_vgg}"
      return f"vggface:{self.vggface_h5}" if self.vggface_h5 else ""
    if released == "affwildnet_resnet_gru":
      return f"tf1:{released}@{self.affwildnet_resnet}" if self.affwildnet_resnet else ""
    raise ValueError(f"unknown released model {released!r}; known: {sorted(PAPER_WEIGHT_BACKBONES)}")


@dataclasses.dataclass(frozen=True)
class Start:
  """The resolved start of one run."""

  kind: str  # "paper" or "scratch"
  sources: tuple[str, ...]  # warm-start sources, in loading order
  chain: tuple[str, ...]  # human-readable lines: how it was decided

  def describe(self) -> str:
    return f"start: {self.kind}\n" + "\n".join(f"  {line}" for line in self.chain)


def runs_root(workdir: str, experiment: str) -> str:
  """Where the rows' workdirs live: `<root>/<experiment>[/<way>]` -> `<root>`.

  The table scripts put each row's run at `<root>/<row name>` (fusion rows one level
  deeper, `<root>/<row>/from_omg`); otherwise the workdir's parent.
  """
  path = os.path.normpath(os.path.abspath(workdir))
  for candidate in (path, os.path.dirname(path)):
    if candidate.endswith(os.sep + os.path.normpath(experiment)):
      return candidate[: -len(os.path.normpath(experiment)) - 1]
  return os.path.dirname(path)


def source_kind(source: str) -> str:
  """'paper' for the paper's weights or a run whose start was 'paper'; else 'scratch'."""
  if source.startswith(("tf1:", "vggface:")):
    return "paper"
  path = source if os.path.isdir(source) else os.path.dirname(source)
  for candidate in (path, os.path.dirname(path)):
    config_path = os.path.join(candidate, "config.json")
    if os.path.exists(config_path):
      with open(config_path) as f:
        return configs.experiment_from_dict(json.load(f)).train.start
  return "scratch"  # No recorded start: assume nothing about it.


def has_trained_weights(workdir: str) -> bool:
  """Whether a workdir holds weights to start from: best-validation (`best/`, any prefix) or a checkpoint.

  The file-level twin of `workdir.best_weights_prefix` / `training._resolve_source` (this module
  stays free of TensorFlow).
  """
  for sub in ("best", "checkpoints"):
    folder = os.path.join(workdir, sub)
    if os.path.isdir(folder) and any(name.endswith(".index") for name in os.listdir(folder)):
      return True
  return False


def _chain(sources: Sequence[str], labels: Sequence[str]) -> tuple[str, list[str]]:
  """The start of a run warm-started from `sources` ('paper' only if all are) and one line per source."""
  kinds = [source_kind(s) for s in sources]
  kind = "paper" if all(k == "paper" for k in kinds) else "scratch"
  return kind, [f"{label}: {s} ({k} start)" for label, s, k in zip(labels, sources, kinds)]


def resolve(config: configs.ExperimentConfig, workdir: str, init_from: Sequence[str] = (),
            paper: PaperWeights = PaperWeights(), root: str | None = None) -> Start:
  """The start of a run of `config` in `workdir` (see the module docstring for the order).

  Args:
    config: the registered row (its `init` says where it starts).
    workdir: the run's workdir (locates the runs of `init.after` when `root` is None).
    init_from: explicit warm-start sources (`--init_from`); they override the rest.
    paper: the paper's weights the user has.
    root: where the rows' workdirs live (default: `runs_root(workdir, config.name)`).
  """
  if init_from:
    kind, lines = _chain(init_from, ["--init_from"] * len(init_from))
    return Start(kind, tuple(init_from), tuple(lines))
  if config.init.paper_weights:
    sources = [paper.source_for(r) for r in config.init.paper_weights]
    if all(sources):
      return Start("paper", tuple(sources), tuple(
          f"paper weights {r}: {s}" for r, s in zip(config.init.paper_weights, sources)))
    missing = [r for r, s in zip(config.init.paper_weights, sources) if not s]
    lines = [f"paper weights {', '.join(missing)} not given (--affwildnet_vgg / --affwildnet_resnet / "
             "--vggface_h5, or AFFWILDNET_VGG / AFFWILDNET_RESNET / VGGFACE_H5)"]
  else:
    lines = []
  if config.init.after:
    root = root or runs_root(workdir, config.name)
    found = [os.path.join(root, row) for row in config.init.after]
    if all(has_trained_weights(w) for w in found):
      kind, found_lines = _chain(found, [f"after {row}" for row in config.init.after])
      return Start(kind, tuple(found), tuple(lines + found_lines))
    lines += [f"after {row}: no trained run at {w}" for row, w in zip(config.init.after, found)
              if not has_trained_weights(w)]
  return Start("scratch", (), tuple(lines + ["random weights"]))


def apply(config: configs.ExperimentConfig, start: Start) -> configs.ExperimentConfig:
  """`config` with the scratch recipe's values where the start is 'scratch', and the start recorded."""
  if start.kind == "scratch":
    return configs.override(config, config.scratch_recipe.overrides())
  return configs.override(config, {"train.start": "paper"})
