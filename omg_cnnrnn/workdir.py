"""A training workdir's weights: where its best weights are, and the trained model it holds.

A library module (`train`, `evaluate`, `export`, `predict` and the API load workdirs through it;
it imports no command line). Layout of a workdir: `config.json` (the resolved experiment),
`checkpoints/` (tf.train.CheckpointManager, latest steps), `best/` (best-validation weights).
"""

from __future__ import annotations

import json
import os

import tensorflow as tf
import tf_keras

from omg_cnnrnn import configs, models


BEST_DIR = "best"


def best_weights_prefix(workdir: str) -> str | None:
  """The checkpoint prefix of a workdir's best-validation weights, or None if it has none.

  `best/` is a CheckpointManager directory (max_to_keep=1): each new best is written to a
  fresh prefix, then the `checkpoint` state file is replaced atomically, then the old prefix
  is deleted, so a kill at any point leaves one complete set of best weights. Workdirs of
  earlier versions hold a single `best/model` prefix (no state file); it is still read.
  """
  best = os.path.join(workdir, BEST_DIR)
  prefix = tf.train.latest_checkpoint(best)
  if prefix is not None and tf.io.gfile.exists(prefix + ".index"):
    return prefix
  legacy = os.path.join(best, "model")
  if os.path.exists(legacy + ".index"):
    return legacy
  return None


def load_workdir_model(workdir: str, which: str = "best") -> tuple[tf_keras.Model, configs.ExperimentConfig]:
  """The model of a training workdir: its best weights (or the latest checkpoint) and config.

  `which="best"` falls back to the latest checkpoint when the run never validated.

  Strict: every variable of the network must come from the checkpoint, so a checkpoint
  of another architecture fails (ValueError naming it) instead of leaving random weights.
  """
  with open(os.path.join(workdir, "config.json")) as f:
    config = configs.experiment_from_dict(json.load(f))
  model = models.build_model(config.model, image_size=config.data.image_size)
  if which not in ("best", "latest"):
    raise ValueError(f"which={which!r}: must be 'best' or 'latest'")
  prefix = best_weights_prefix(workdir) if which == "best" else None
  if prefix is None:
    prefix = tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints"))
  if prefix is None:
    raise FileNotFoundError(f"no trained weights in {workdir} (neither best/ nor checkpoints/)")
  try:
    tf.train.Checkpoint(model=model).read(prefix).assert_existing_objects_matched().expect_partial()
  except (AssertionError, ValueError, tf.errors.OpError) as e:
    raise ValueError(f"checkpoint {prefix} does not fit the experiment in {workdir}/config.json "
                     f"({str(e).splitlines()[0][:300]})") from None
  return model, config
