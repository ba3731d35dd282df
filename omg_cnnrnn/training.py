"""Training of any registered row: the `Trainer` (CCC loss, Adam, checkpoints, resume, validation) and warm starts.

The library behind the `omg_cnnrnn.train` command line (which describes the workdir and the
flags). `configure_process` sets what is process-wide (seeds, op determinism, precision);
`resolve_run` turns a row name, workdir, overrides and start into the config a run trains with.

The workdir holds everything of a run:
- `config.json`: the resolved experiment config (a resumed run must match it);
- `checkpoints/ckpt-N`: model, optimizer, step, input-iterator and dropout-RNG state
  (tf.train.CheckpointManager), so a killed run resumes where its last checkpoint was,
  with no lost or repeated steps beyond it and, on CPU, the same weights as a run
  that was never interrupted;
- `best/model-N`: the model weights with the best validation CCC (a CheckpointManager keeping
  one: a new best is written beside the old and swapped in atomically), and `best.json`
  (its step, scores and prefix);
- `tensorboard/{train,validation}`: TensorBoard logs; `history.jsonl`: the same as JSON lines;
- `init_report.json`: what a warm start loaded, skipped and left fresh.

Warm starts (`warm_start`) only apply when the workdir has no checkpoint of its own. Layers
are matched by name (nested backbone layers included) and loaded where shapes match; new
layers start fresh. Aff-Wild pretraining then OMG training (Sec. III-C) is two runs, the
second warm-started from the first. Fusion rows (Table V) start either from two
Aff-Wild-pretrained single networks or from the two best single networks trained on OMG.
"""


from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from typing import Sequence

import numpy as np
import tensorflow as tf
import tf_keras

from omg_cnnrnn import configs, distribute, evaluation, losses, models, tf1_weights
from omg_cnnrnn import start as start_lib
from omg_cnnrnn.workdir import BEST_DIR, best_weights_prefix
from omg_cnnrnn.models.cnn_rnn import copy_matching_weights, named_layers
from omg_cnnrnn.data import pipeline
from omg_cnnrnn.data import records as record_files


def set_seed(seed: int, deterministic: bool = False) -> None:
  """Seeds Python, NumPy and TF; dropout draws from checkpointable tf.random.Generators."""
  tf_keras.utils.set_random_seed(seed)
  tf_keras.backend.experimental.enable_tf_random_generator()
  if deterministic:
    tf.config.experimental.enable_op_determinism()


def configure_process(seed: int = 0, deterministic: bool = False, precision: str = "float32") -> None:
  """The process-wide settings of a training run; the main sets them, before building a `Trainer`.

  Global seeds (Python, NumPy, TF: the model's initial weights and dropout generators draw
  from them, so set them again before each Trainer that must start like another), TF op
  determinism (`deterministic`; it stays on for the process) and the Keras dtype policy
  (`precision`, `distribute.set_precision`). A `Trainer` sets none of them itself; tests
  that change them restore them with `restoring_process_settings`.
  """
  set_seed(seed, deterministic)
  distribute.set_precision(precision)


@contextlib.contextmanager
def restoring_process_settings():
  """Puts op determinism and the Keras dtype policy back as they were after the block (tests)."""
  from tensorflow.python.framework import config as tf_config  # Only here: the public API cannot turn it off.

  was_deterministic = tf_config.is_op_determinism_enabled()
  policy = tf_keras.mixed_precision.global_policy()
  try:
    yield
  finally:
    if not was_deterministic:
      tf_config.disable_op_determinism()
    tf_keras.mixed_precision.set_global_policy(policy)


def _random_generators(model: tf_keras.Model) -> list:
  """Dropout layers' generators: checkpointed so a resumed run draws the same masks."""
  gens = []
  for layer in model.submodules:
    rng = getattr(layer, "_random_generator", None)
    gen = getattr(rng, "_generator", None)
    if gen is not None:
      gens.append(gen)
  return gens


def _resolve_source(init_from: str) -> tuple[str, str]:
  """(config.json path, checkpoint prefix) of a workdir, a checkpoint dir or a checkpoint prefix.

  A workdir gives its best-validation weights (the paper's second fusion start: "the
  networks that had the best performance"), else its latest checkpoint.
  """
  if os.path.isdir(init_from):
    workdir = init_from
    ckpt_dir = os.path.join(workdir, "checkpoints")
    prefix = (best_weights_prefix(workdir) or tf.train.latest_checkpoint(ckpt_dir)
              or tf.train.latest_checkpoint(workdir))
    if prefix is None:
      raise FileNotFoundError(f"--init_from={init_from}: no checkpoint found in "
                              f"{os.path.join(workdir, BEST_DIR)} or {ckpt_dir}")
  else:
    prefix = init_from
    if not tf.io.gfile.exists(prefix + ".index"):
      raise FileNotFoundError(f"--init_from={init_from}: neither a workdir nor a checkpoint prefix ({prefix}.index missing)")
    workdir = os.path.dirname(prefix)
  for candidate in (workdir, os.path.dirname(workdir)):
    path = os.path.join(candidate, "config.json")
    if os.path.exists(path):
      return path, prefix
  raise FileNotFoundError(f"--init_from={init_from}: no config.json beside the checkpoint {prefix}")


def warm_start(model: tf_keras.Model, model_config: configs.ModelConfig, init_from: Sequence[str],
               image_size: int) -> dict:
  """Initialises `model` from other runs, TF1 checkpoints or VGG-Face weights; returns the report.

  Each source fills the layers that earlier sources left unloaded. `tf1:[<released>@]<prefix>`
  sources go through `omg_cnnrnn.tf1_weights.load_tf1_checkpoint` (partial loads allowed) and
  `vggface:<h5>` through `tf1_weights.load_vggface_h5` (the 13 VGG convolutions); such a source
  loads every layer it matches, so give it first when combining sources. The report's
  `layers` maps every layer path to the source it came from ("fresh" if none).
  """
  pending = {path for path, _ in named_layers(model)}
  report = {"sources": [], "loaded": [], "fresh": [], "layers": {}}
  for source in init_from:
    if source.startswith(("tf1:", "vggface:")):
      if source.startswith("vggface:"):
        sub = tf1_weights.load_vggface_h5(model, source[len("vggface:"):])
        backbone = [p for p, _ in named_layers(model) if p.startswith("vgg16/")]
        loaded = [p for p in backbone if p.split("/", 1)[1] in set(sub["loaded"])]
      else:
        released, _, prefix = source[4:].rpartition("@") if "@" in source else ("", "", source[4:])
        sub = tf1_weights.load_tf1_checkpoint(model, model_config, prefix, released or None, allow_partial=True)
        loaded = sub["keras_loaded"]
      report["sources"].append({"source": source, "report": sub})
      # These loaders fill whatever they match; later sources only fill what is still pending.
      loaded = [p for p in loaded if p in pending]
      report["loaded"] += loaded
      report["layers"].update({p: source for p in loaded})
      pending -= set(loaded)
      continue
    config_path, prefix = _resolve_source(source)
    with open(config_path) as f:
      source_config = configs.experiment_from_dict(json.load(f))
    source_model = models.build_model(source_config.model, image_size=image_size)
    tf.train.Checkpoint(model=source_model).read(prefix).expect_partial()
    sub = copy_matching_weights(source_model, model, only_missing=pending)
    sub.update(source=source, checkpoint=prefix, experiment=source_config.name)
    report["sources"].append(sub)
    report["loaded"] += sub["loaded"]
    report["layers"].update({p: f"{source} ({prefix})" for p in sub["loaded"]})
  report["fresh"] = sorted(pending - set(report["loaded"]))
  report["layers"].update({p: "fresh" for p in report["fresh"]})
  return report


class WarmupSchedule(tf_keras.optimizers.schedules.LearningRateSchedule):
  """Linear warm-up from 0 to `learning_rate` over `warmup_steps`, then constant (the paper's rate)."""

  def __init__(self, learning_rate: float, warmup_steps: int):
    self.learning_rate = float(learning_rate)
    self.warmup_steps = int(warmup_steps)

  def __call__(self, step):
    fraction = tf.minimum(tf.cast(step + 1, tf.float32) / float(max(self.warmup_steps, 1)), 1.0)
    return self.learning_rate * fraction

  def get_config(self):
    return {"learning_rate": self.learning_rate, "warmup_steps": self.warmup_steps}


def make_optimizer(train_config: configs.TrainConfig) -> tf_keras.optimizers.Optimizer:
  """Adam (Sec. IV-1) with the config's warm-up and global-norm clipping (none in the paper)."""
  lr = train_config.learning_rate
  if train_config.warmup_steps > 0:
    lr = WarmupSchedule(lr, train_config.warmup_steps)
  return tf_keras.optimizers.Adam(lr, global_clipnorm=train_config.clip_global_norm or None)


class Trainer:
  """Owns the model, optimizer, step counter, input iterator and their checkpoints.

  Distribution (`strategy`, see `omg_cnnrnn.distribute`): the model and optimizer
  live in the strategy's scope; `data.batch_size` is the GLOBAL batch, split
  evenly over the replicas; the CCC loss is computed over the global batch
  (all-reduced moment sums), so one step equals a single-device step on the same
  batch. With several workers, worker i reads every n-th training window
  (`pipeline.train_dataset(shard=...)`); the chief writes checkpoints, logs,
  validation and `best/`, the others save into a scratch directory they delete
  (tf.distribute's multi-worker checkpointing pattern), and every worker resumes
  from the chief's latest checkpoint.

  Resumption: with the default strategy the input iterator and the dropout
  generators are checkpointed too (a resumed run continues the same stream). Under
  mirrored/multi-worker strategies model, optimizer and step are restored and the
  input stream restarts with the seed `seed + step` (distributed iterators are
  per worker, and a chief-written iterator state cannot restore another worker's).

  No process-wide effect: `seed` seeds the input pipeline only; global seeds, op determinism
  and the mixed-precision policy are `configure_process`'s, which the main calls first.
  """

  def __init__(self, config: configs.ExperimentConfig, workdir: str, data_dir: str, seed: int = 0,
               train_split: str = "train", eval_split: str | None = "validation",
               init_from: Sequence[str] = (), log=print,
               strategy: str | tf.distribute.Strategy = "default", jit_compile: bool = False):
    self.config = config
    self.workdir = workdir
    self.data_dir = data_dir
    self.train_split = train_split
    self.log = log
    self.strategy = distribute.make_strategy(strategy) if isinstance(strategy, str) else strategy
    self.is_chief, self.worker_index, self.num_workers = distribute.worker_info(self.strategy)
    self.distributed = self.strategy.num_replicas_in_sync > 1 or self.num_workers > 1
    self.eval_split = eval_split if self.is_chief else None
    self.per_replica_batch = distribute.per_replica_batch(config.data.batch_size, self.strategy)
    os.makedirs(workdir, exist_ok=True)
    self._check_or_write_config()
    # Seeds, op determinism and the dtype policy are the process's (`configure_process`, run by
    # the main): the model is built under the policy in force, mixed_float16 with loss scaling.
    precision = tf_keras.mixed_precision.global_policy().name

    size = config.data.image_size
    with self.strategy.scope():
      self.model = models.build_model(config.model, image_size=size)
      self.optimizer = make_optimizer(config.train)
      if precision == "mixed_float16":  # float16 gradients underflow without loss scaling.
        self.optimizer = tf_keras.mixed_precision.LossScaleOptimizer(self.optimizer)
      self.optimizer.build(self.model.trainable_variables)
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
      # One call creates the dropout generators, so they exist before a restore reads them.
      self.model({"frames": tf.zeros((1, 1, size, size, 3)), "mask": tf.ones((1, 1))}, training=True)
    self.dataset_kind = pipeline.dataset_kind(data_dir, train_split)
    aggregate = config.train.loss_aggregate
    if self.dataset_kind in pipeline.PER_FRAME_LABEL_DATASETS and config.train.per_frame_label_aggregate:
      aggregate = config.train.per_frame_label_aggregate
    self.loss_fn = losses.CCCLoss(aggregate=aggregate, loss_type=config.train.loss,
                                  mse_weight=config.train.mse_weight)
    if not self.distributed:
      self.iterator = iter(pipeline.train_dataset(data_dir, config.data, split=train_split, seed=seed))
      self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer, step=self.step,
                                            iterator=self.iterator, rng=_random_generators(self.model))
    else:
      self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer, step=self.step)
    chief_dir = os.path.join(workdir, "checkpoints")
    self._scratch = None if self.is_chief else os.path.join(workdir, f".worker-{self.worker_index}")
    self.manager = tf.train.CheckpointManager(self.checkpoint, self._scratch or chief_dir,
                                              max_to_keep=config.train.max_checkpoints_to_keep)
    self.resumed_from = None
    latest = tf.train.latest_checkpoint(chief_dir)
    if latest:
      status = self.checkpoint.restore(latest)
      if self.distributed:
        status.expect_partial()  # A default-strategy checkpoint also holds an iterator.
      else:
        status.assert_existing_objects_matched()
      self.resumed_from = latest
      self.log(f"resumed from {self.resumed_from} at step {int(self.step.numpy())}")
    if self.distributed:
      self.iterator = iter(self.strategy.distribute_datasets_from_function(
          lambda ctx: pipeline.train_dataset(
              data_dir, config.data, split=train_split, seed=seed + int(self.step.numpy()),
              batch_size=ctx.get_per_replica_batch_size(config.data.batch_size),
              shard=(ctx.num_input_pipelines, ctx.input_pipeline_id))))
    report_path = os.path.join(workdir, "init_report.json")
    if not latest and init_from:
      report = warm_start(self.model, config.model, init_from, config.data.image_size)
      record_files.write_atomic(report_path, json.dumps(report, indent=2))
      self.log(f"warm start from {list(init_from)}: {len(report['loaded'])} layers loaded, "
               f"{len(report['fresh'])} fresh: {report['fresh']}")
    # What a warm start loaded and left fresh (a resumed run reads it from its init_report.json):
    # the loaded layers stay frozen for the first `freeze_loaded_steps` steps, and with per-layer
    # rates the fresh ones move `fresh_lr_scale` times, the loaded ones `loaded_lr_scale` times
    # the configured rate.
    report = {"loaded": [], "fresh": []}
    if os.path.exists(report_path):
      with open(report_path) as f:
        report = json.load(f)
    tc = config.train
    loaded = set(report["loaded"]) if tc.freeze_loaded_steps > 0 else set()
    frozen_ids = {id(v) for path, layer in named_layers(self.model) if path in loaded
                  for v in layer.trainable_weights}
    self._frozen = [id(v) in frozen_ids for v in self.model.trainable_variables]
    # (variable, rate multiplier, whether it was loaded): loaded layers also ramp up from 0 over
    # `loaded_warmup_steps` after the freeze (`_step_fn`).
    self._update_scales = []
    self._ramp_loaded = tc.loaded_warmup_steps > 0 and tc.freeze_loaded_steps > 0
    ramp = self._ramp_loaded
    if (tc.fresh_lr_scale != 1.0 or tc.loaded_lr_scale != 1.0 or ramp) and report["loaded"]:
      scale = {**{p: tc.fresh_lr_scale for p in report["fresh"]}, **{p: tc.loaded_lr_scale for p in report["loaded"]}}
      loaded_paths = set(report["loaded"])
      self._update_scales = [(v, scale[path], path in loaded_paths) for path, layer in named_layers(self.model)
                             for v in layer.trainable_weights
                             if scale.get(path, 1.0) != 1.0 or (ramp and path in loaded_paths)]
    self.best_path = os.path.join(workdir, "best.json")
    self._best_manager = None  # Created on the first new best (the chief only validates).
    self.writers = {k: (tf.summary.create_file_writer(os.path.join(workdir, "tensorboard", k))
                        if self.is_chief else tf.summary.create_noop_writer())
                    for k in ("train", "validation")}
    # XLA: the whole step on one device; the per-replica computation under a strategy.
    # autograph=False: the step's Python branches and loops are on Python values (config fields,
    # the `frozen` flag, lists of variables), so there is nothing to convert; skipping the
    # conversion makes each trace cheaper (the ramp test in tests/test_start.py, five traces:
    # 13.9 -> 12.7 s at ~340 GFLOP/s). A tensor-valued `if` in a step would now fail at trace time.
    self._replica_fn = tf.function(self._replica_step, autograph=False, jit_compile=True) if (
        jit_compile and self.distributed) else self._replica_step
    self._train_step = tf.function(self._step_fn, autograph=False,
                                   jit_compile=bool(jit_compile and not self.distributed))
    # The inference pass of every validation of this run, traced at its first (evaluation.frame_predictor).
    self._predictor = evaluation.frame_predictor(self.model, config.data)

  def _check_or_write_config(self):
    path = os.path.join(self.workdir, "config.json")
    if os.path.exists(path):
      with open(path) as f:
        saved = configs.experiment_from_dict(json.load(f))
      if saved != self.config:
        raise ValueError(f"{path} holds a different config than this run's ({saved.name} vs {self.config.name}, "
                         "or different overrides); use a new --workdir or the same settings to resume")
      return
    record_files.write_atomic(path, self.config.to_json())  # Unique temp: workers may write it at once.

  def loss_and_gradients(self, inputs, labels, training: bool = True, variables=None):
    """One replica's loss (over the GLOBAL batch) and its share of the gradients.

    Summed over replicas (as `apply_gradients` does), the shares are the gradient of
    the single-device loss on the global batch: no 1 / num_replicas scaling here,
    the loss is already the global one (`distribute.cross_replica_sum`).
    `variables`: the gradients of these only (default: every trainable variable); the
    backward pass then skips what none of them depends on.
    """
    variables = self.model.trainable_variables if variables is None else variables
    # Only `variables` are watched, so the tape records no op that none of them feeds.
    with tf.GradientTape(watch_accessed_variables=False) as tape:
      tape.watch(variables)
      predictions = self.model(inputs, training=training)
      loss = self.loss_fn(labels, predictions, sample_weight=inputs["mask"])
      scaling = isinstance(self.optimizer, tf_keras.mixed_precision.LossScaleOptimizer)
      scaled = self.optimizer.get_scaled_loss(loss) if scaling else loss
    grads = tape.gradient(scaled, variables)
    if scaling:
      grads = self.optimizer.get_unscaled_gradients(grads)
    return loss, grads

  def _replica_step(self, inputs, labels, frozen: bool = False):
    variables = self.model.trainable_variables
    if not frozen:
      loss, grads = self.loss_and_gradients(inputs, labels)
    else:
      # While the loaded layers are frozen only the others' gradients are taken, so the backward
      # pass stops where the loaded layers begin (a warm-started CNN-RNN's whole backbone: in the
      # demo's CNN-RNN run a frozen step took 0.45 s, a thawed one 1.5-1.85 s). The frozen ones
      # get zeros: Adam's moments and the weights stay as they are, exactly as a zero gradient
      # leaves them.
      free = [v for v, f in zip(variables, self._frozen) if not f]
      loss, free_grads = self.loss_and_gradients(inputs, labels, variables=free)
      free_grads = iter(free_grads)
      grads = [tf.zeros_like(v) if f else next(free_grads) for v, f in zip(variables, self._frozen)]
    self.optimizer.apply_gradients(zip(grads, variables))
    return loss

  def _step_fn(self, inputs, labels, frozen: bool = False):
    """One training step; `frozen` (a Python bool: one trace each way): the loaded layers are frozen."""
    before = [tf.identity(v) for v, _, _ in self._update_scales]
    loss = self.strategy.run(self._replica_fn, args=(inputs, labels), kwargs={"frozen": frozen})
    # Per-layer learning rates on one Adam: a layer's update is scaled after it is applied
    # (Adam's update does not scale with the gradient, so scaling gradients would not).
    tc = self.config.train
    ramp = tf.constant(1.0)
    if self._ramp_loaded:
      thawed_for = tf.cast(self.step - tc.freeze_loaded_steps + 1, tf.float32)
      ramp = tf.clip_by_value(thawed_for / tc.loaded_warmup_steps, 0.0, 1.0)
    for (v, scale, loaded), b in zip(self._update_scales, before):
      factor = scale * ramp if loaded else tf.constant(scale)
      v.assign_add((factor - 1.0) * (v - b))
    self.step.assign_add(1)
    return self.strategy.reduce(tf.distribute.ReduceOp.MEAN, loss, axis=None)

  def steps_per_epoch(self) -> int:
    """Windows per epoch / batch: every utterance gives ceil(frames / T) windows."""
    index = pipeline.utterance_index(self.data_dir, self.train_split)
    t = self.config.data.sequence_length
    windows = sum(max(1, math.ceil(row["num_frames"] / t)) for row in index)
    return max(1, windows // self.config.data.batch_size)

  def evaluate(self) -> dict:
    return self.evaluate_split(self.eval_split)

  def evaluate_split(self, split: str) -> dict:
    """The official-protocol metrics of the current weights on `split` of the data dir."""

    records = evaluation.predict_split(self.model, self.config, self.data_dir, split, predictor=self._predictor)
    return evaluation.score_records(records, self.config.data.utterance_aggregate)

  def train(self, num_steps: int | None = None, stop_after: int | None = None) -> dict:
    """Runs until `num_steps` (default: the config's); returns the last metrics.

    Args:
      num_steps: total steps of the run (a resumed run continues up to it).
      stop_after: stop after this many steps of THIS call (simulates a kill, for tests).
    """
    total = num_steps or self.config.train.num_steps
    tc = self.config.train
    epoch_steps = self.steps_per_epoch() if self.eval_split else 0
    eval_every = tc.eval_every_steps if tc.eval_every_steps > 0 else epoch_steps
    best = self._read_best()
    start = int(self.step.numpy())
    done_here = 0
    last = {}
    t0, frames = time.time(), 0
    frames_per_step = self.config.data.batch_size * self.config.data.sequence_length
    while int(self.step.numpy()) < total:
      inputs, labels = next(self.iterator)
      frozen = any(self._frozen) and int(self.step.numpy()) < tc.freeze_loaded_steps
      loss = float(self._train_step(inputs, labels, frozen).numpy())
      if not math.isfinite(loss):
        raise FloatingPointError(f"non-finite loss {loss} at step {int(self.step.numpy())}")
      step = int(self.step.numpy())
      frames += frames_per_step
      done_here += 1
      if self.is_chief and (step % tc.log_every_steps == 0 or step == total):
        rate = frames / max(time.time() - t0, 1e-9)
        self.log(f"step {step}/{total} loss {loss:.4f} ({rate:.1f} frames/s)")
        with self.writers["train"].as_default():
          tf.summary.scalar("loss", loss, step=step)
          tf.summary.scalar("frames_per_second", rate, step=step)
        self._history({"step": step, "split": "train", "loss": loss, "frames_per_second": rate})
      if step % tc.checkpoint_every_steps == 0 or step == total:
        self.manager.save(checkpoint_number=step)  # Every worker saves; non-chiefs into scratch.
      if self.eval_split and eval_every and (step % eval_every == 0 or step == total):
        last = self.evaluate()
        score = float(np.mean([last["valence_ccc"], last["arousal_ccc"]]))
        self.log(f"step {step} validation CCC valence {last['valence_ccc']:.4f} arousal {last['arousal_ccc']:.4f}")
        with self.writers["validation"].as_default():
          for k, v in last.items():
            if isinstance(v, (int, float)):
              tf.summary.scalar(k, v, step=step)
        self._history({"step": step, "split": self.eval_split, **last})
        if best is None or score > best["score"]:
          best = {"step": step, "score": score, **last}
          best["weights"] = os.path.basename(self._save_best())
          record_files.write_atomic(self.best_path, json.dumps(best, indent=2))
      if stop_after is not None and done_here >= stop_after:
        break
    for w in self.writers.values():
      w.flush()
    if self._scratch:
      shutil.rmtree(self._scratch, ignore_errors=True)
    if self.num_workers > 1:
      # A barrier (one all-reduce): no worker exits while the chief still validates, which
      # the coordination service would otherwise report as a crashed task.
      tf.function(lambda: self.strategy.reduce(
          tf.distribute.ReduceOp.SUM, self.strategy.run(lambda: tf.constant(1.0)), axis=None))()
    return {"start_step": start, "end_step": int(self.step.numpy()), "last_eval": last, "best": best}

  def _save_best(self) -> str:
    """Writes the model to a fresh `best/model-N` prefix and swaps it in; returns the prefix.

    N is one more than any best prefix written before (never the step: a resumed run that
    re-validates a step must not rewrite the only copy in place). The manager writes the new
    prefix, then atomically replaces `best/checkpoint`, then deletes the old prefix.
    """
    best_dir = os.path.join(self.workdir, BEST_DIR)
    if self._best_manager is None:
      self._best_manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=self.model), best_dir,
                                                      max_to_keep=1, checkpoint_name="model")
    numbers = [0]
    for name in os.listdir(best_dir) if os.path.isdir(best_dir) else ():
      head, _, tail = name.partition(".")
      if head.startswith("model-") and head[6:].isdigit():
        numbers.append(int(head[6:]))
    prefix = self._best_manager.save(checkpoint_number=max(numbers) + 1)
    # Whatever else is in best/ is superseded: an earlier version's fixed `model` prefix, or a
    # prefix (or its `_temp` folder) that a killed run left half written and never recorded.
    keep = os.path.basename(prefix)
    for name in os.listdir(best_dir):
      head = name.partition(".")[0]
      if name != "checkpoint" and head != keep and name.startswith("model"):
        path = os.path.join(best_dir, name)
        shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.remove(path)
    return prefix

  def _read_best(self):
    if os.path.exists(self.best_path):
      with open(self.best_path) as f:
        return json.load(f)
    return None

  def _history(self, row: dict):
    with open(os.path.join(self.workdir, "history.jsonl"), "a") as f:
      f.write(json.dumps(row) + "\n")


def resolve_run(experiment: str, workdir: str, overrides: Sequence[str] = (), init_from: Sequence[str] = (),
                paper: start_lib.PaperWeights = start_lib.PaperWeights(),
                root: str | None = None) -> tuple[configs.ExperimentConfig, start_lib.Start]:
  """The config and start of a run: the row, its start's recipe, then the user's overrides.

  A workdir that already has checkpoints resumes with the start its config.json recorded.
  """
  from omg_cnnrnn import experiments  # Lazy: the registry is only needed to resolve names.

  base = experiments.get(experiment)
  saved = os.path.join(workdir, "config.json")
  if tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints")) and os.path.exists(saved):
    with open(saved) as f:
      kind = configs.experiment_from_dict(json.load(f)).train.start
    resolved = start_lib.Start(kind, (), (f"resuming {workdir}: {kind} start recorded in its config.json",))
  else:
    resolved = start_lib.resolve(base, workdir, init_from, paper, root)
  return configs.override(start_lib.apply(base, resolved), list(overrides)), resolved
