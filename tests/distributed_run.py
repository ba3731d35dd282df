"""Process entry points for tests/test_distribute.py (tf.distribute needs a process of its own).

    python tests/distributed_run.py mirrored <out.json>
        Two logical CPU devices under MirroredStrategy vs one device, same global batch:
        writes the largest loss and gradient differences of each case as JSON.
    python tests/distributed_run.py worker <data_dir> <workdir> <num_steps> <out.npz>
        One MultiWorkerMirroredStrategy worker (cluster from TF_CONFIG) training the
        `testing` row; writes its final weights and step.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

import numpy as np
import tensorflow as tf

# The package of this checkout (run as a script, sys.path[0] is tests/: an installed copy elsewhere would win).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _tiny(config, overrides=None):
  """conftest.tiny: the testing row at 1/16 VGG width (these runs are about replicas, not VGG-16)."""
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  from conftest import tiny  # pylint: disable=g-import-not-at-top

  return tiny(config, overrides)


def _logical_cpus(n: int) -> None:
  cpu = tf.config.list_physical_devices("CPU")[0]
  tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)


def _no_dropout(config):
  """The testing row without dropout, so replicas and one device draw no different masks."""
  model = config.model
  streams = tuple(dataclasses.replace(s, fc_dropout=tuple(0.0 for _ in s.fc_dropout)) for s in model.streams)
  return dataclasses.replace(config, model=dataclasses.replace(model, streams=streams, rnn_dropout=0.0))


def _split(strategy, arrays, replicas):
  """A global batch as per-replica values: replica r gets rows [r * b, (r + 1) * b)."""
  b = len(arrays[0]) // replicas

  def piece(ctx):
    r = ctx.replica_id_in_sync_group
    return tuple(tf.constant(a[r * b:(r + 1) * b]) for a in arrays)

  return strategy.experimental_distribute_values_from_function(piece)


def mirrored(out_path: str) -> None:
  from omg_cnnrnn import experiments, losses, training

  strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  rng = np.random.default_rng(0)
  result = {"replicas": strategy.num_replicas_in_sync, "loss_cases": {}, "trainer_cases": {}}

  # 1. The loss alone, on a linear per-frame model: every aggregate x loss type, per-replica batch 1 and 2.
  with strategy.scope():
    w = tf.Variable(rng.normal(size=(3, 2)).astype(np.float32))
  cases = [(aggregate, loss_type) for aggregate in losses.AGGREGATES for loss_type in losses.LOSS_TYPES]

  def loss_grad(x_, y_, m_, aggregate, loss_type):
    with tf.GradientTape() as tape:
      loss = losses.ccc_loss(y_, tf.einsum("btf,fd->btd", x_, w), m_, aggregate, loss_type)
    return loss, tape.gradient(loss, w)

  # Every case in one function (one trace per global batch, not one per case).
  @tf.function(autograph=False)
  def distributed_losses(values):
    out = []
    for aggregate, loss_type in cases:
      loss, grad = strategy.run(loss_grad, args=values, kwargs={"aggregate": aggregate, "loss_type": loss_type})
      out.append((strategy.experimental_local_results(loss), strategy.reduce("SUM", grad, axis=None)))
    return out

  for global_batch in (2, 4):
    x = rng.normal(size=(global_batch, 6, 3)).astype(np.float32)
    y = rng.uniform(-1, 1, (global_batch, 6, 2)).astype(np.float32)
    mask = (rng.uniform(size=(global_batch, 6)) > 0.3).astype(np.float32)
    mask[:, 0] = 1.0
    distributed = distributed_losses(_split(strategy, (x, y, mask), 2))
    for (aggregate, loss_type), (per_replica_losses, grad) in zip(cases, distributed):
      single_loss, single_grad = loss_grad(x, y, mask, aggregate, loss_type)
      # What averaging per-replica losses would give instead (the biased alternative).
      b = global_batch // 2
      naive = np.mean([float(loss_grad(x[i:i + b], y[i:i + b], mask[i:i + b], aggregate, loss_type)[0])
                       for i in (0, b)])
      result["loss_cases"][f"B{global_batch}_{aggregate}_{loss_type}"] = {
          "loss": float(single_loss),
          "loss_diff": max(abs(float(l) - float(single_loss)) for l in per_replica_losses),
          "grad_diff": float(np.max(np.abs(grad.numpy() - single_grad.numpy()))),
          "grad_scale": float(np.max(np.abs(single_grad.numpy()))),
          "naive_diff": abs(float(naive) - float(single_loss)),
      }

  # 2. The Trainer's own step function on the `testing` row (one sequence per replica too).
  import tempfile

  sys.path.insert(0, os.path.dirname(__file__))
  import fake_data  # pylint: disable=g-import-not-at-top

  data_dir = tempfile.mkdtemp()
  fake_data.write_split(data_dir, "train", num_videos=2, seed=0)
  # One Trainer (its input pipeline's global batch is 2, one sequence per replica); its loss and
  # gradients compared at global batches 2 and 4 (one trace each of `distributed_trainer_loss`).
  config = _no_dropout(_tiny(experiments.get("testing")))
  config = dataclasses.replace(config, data=dataclasses.replace(config.data, batch_size=2))
  training.configure_process()
  trainer = training.Trainer(config, tempfile.mkdtemp(), data_dir, eval_split=None, strategy=strategy,
                             log=lambda s: None)

  @tf.function(autograph=False)
  def distributed_trainer_loss(values):
    f, m, y = values
    loss, grads = strategy.run(lambda f, m, y: trainer.loss_and_gradients({"frames": f, "mask": m}, y),
                               args=(f, m, y))
    return strategy.experimental_local_results(loss), [strategy.reduce("SUM", g, axis=None) for g in grads]

  size, t = config.data.image_size, config.data.sequence_length
  for global_batch in (2, 4):
    frames = rng.uniform(-1, 1, (global_batch, t, size, size, 3)).astype(np.float32)
    labels = rng.uniform(-1, 1, (global_batch, t, 2)).astype(np.float32)
    mask = np.ones((global_batch, t), np.float32)
    mask[-1, t // 2:] = 0.0
    single_loss, single_grads = trainer.loss_and_gradients({"frames": frames, "mask": mask}, labels)
    per_replica_losses, grads = distributed_trainer_loss(_split(strategy, (frames, mask, labels), 2))
    result["trainer_cases"][f"B{global_batch}"] = {
        "loss": float(single_loss),
        "loss_diff": max(abs(float(l) - float(single_loss)) for l in per_replica_losses),
        "grad_diff": max(float(np.max(np.abs(a.numpy() - b.numpy()))) for a, b in zip(grads, single_grads)),
        "grad_scale": max(float(np.max(np.abs(b.numpy()))) for b in single_grads),
    }
  # And one real training step through the distributed iterator, to show it runs end to end.
  result["trainer_cases"]["B2"].update(
      step_loss=float(trainer._train_step(*next(trainer.iterator))),  # pylint: disable=protected-access
      per_replica_batch=trainer.per_replica_batch, step=int(trainer.step.numpy()))
  with open(out_path, "w") as f:
    json.dump(result, f, indent=2)


def worker(data_dir: str, workdir: str, num_steps: int, out_path: str) -> None:
  from omg_cnnrnn import experiments, training

  config = _tiny(experiments.get("testing"), {
      "train.num_steps": 6, "train.checkpoint_every_steps": 2, "train.eval_every_steps": 0,
      "data.batch_size": 4})
  training.configure_process()
  trainer = training.Trainer(config, workdir, data_dir, eval_split=None, strategy="multi_worker",
                          log=lambda s: print(s, flush=True))
  result = trainer.train(num_steps=num_steps)
  np.savez(out_path, step=int(trainer.step.numpy()), chief=trainer.is_chief,
           resumed=trainer.resumed_from or "", start=result["start_step"],
           num_replicas=trainer.strategy.num_replicas_in_sync,
           **{f"w{i}": w.numpy() for i, w in enumerate(trainer.model.weights)})


if __name__ == "__main__":
  if sys.argv[1] == "mirrored":
    _logical_cpus(2)  # Before anything (the package's imports included) starts the TF runtime.
    mirrored(sys.argv[2])
  elif sys.argv[1] == "worker":
    worker(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
  else:
    raise SystemExit(f"unknown mode {sys.argv[1]!r}")
