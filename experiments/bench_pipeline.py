"""Input-pipeline throughput against the training step's consumption, measured in one run.

    python experiments/bench_pipeline.py --data_dir=<prepared dir> [--experiment=table3/cnn_rnn]

Times (1) the tf.data training pipeline alone (read, window, shuffle, JPEG-decode, scale,
batch) in frames/s, and (2) the training step of the row at the same shapes fed from
memory, and prints their ratio. A ratio >= 10 means the pipeline is never the bottleneck.
With no --data_dir it synthesizes and prepares a small set first.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402
from absl import app, flags  # noqa: E402

from omg_cnnrnn import experiments, losses, models  # noqa: E402
from omg_cnnrnn.data import pipeline  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "Prepared TFRecords (default: synthesize and prepare a small set).")
flags.DEFINE_string("experiment", "table3/cnn_rnn", "Row whose data config and training step are measured.")
flags.DEFINE_integer("batches", 30, "Pipeline batches to time.")
flags.DEFINE_integer("steps", 2, "Training steps to time (after one warm-up).")


def _prepare_small() -> str:
  root = tempfile.mkdtemp(prefix="bench_pipeline_")
  py = sys.executable
  subprocess.run([py, "-m", "data_prep.synthesize", f"--output_dir={root}/synth", "--seed=0"], check=True)
  subprocess.run([py, "-m", "data_prep.prepare_omg", f"--labels={root}/synth/omg/omg_TrainVideos.csv",
                  f"--videos={root}/synth/omg/videos", f"--output_dir={root}/records", "--num_workers=2",
                  "--noprogress"], check=True)
  return f"{root}/records"


def main(argv):
  del argv
  data_dir = FLAGS.data_dir or _prepare_small()
  config = experiments.get(FLAGS.experiment)
  dc = config.data
  frames_per_batch = dc.batch_size * dc.sequence_length
  ds = pipeline.train_dataset(data_dir, dc, seed=0)
  it = iter(ds)
  next(it)  # warm-up: opening files, filling the shuffle buffer
  t0 = time.perf_counter()
  for _ in range(FLAGS.batches):
    inputs, _ = next(it)
  pipe_fps = FLAGS.batches * frames_per_batch / (time.perf_counter() - t0)

  model = models.build_model(config.model, image_size=dc.image_size)
  optimizer = tf_keras.optimizers.Adam(config.train.learning_rate)
  loss_fn = losses.CCCLoss()
  labels = tf.zeros((dc.batch_size, dc.sequence_length, 2)) + tf.random.uniform((dc.batch_size, 1, 2))

  @tf.function
  def step(x, y):
    with tf.GradientTape() as tape:
      loss = loss_fn(y, model(x, training=True), sample_weight=x["mask"])
    optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
    return loss

  step(inputs, labels).numpy()
  t0 = time.perf_counter()
  for _ in range(FLAGS.steps):
    step(inputs, labels).numpy()
  train_fps = FLAGS.steps * frames_per_batch / (time.perf_counter() - t0)
  print(f"{FLAGS.experiment}: batch {dc.batch_size} x {dc.sequence_length} frames at {dc.image_size}x{dc.image_size}")
  print(f"pipeline: {pipe_fps:.0f} frames/s; training step consumes {train_fps:.1f} frames/s; "
        f"ratio {pipe_fps / train_fps:.1f}x")


if __name__ == "__main__":
  app.run(main)
