"""Throughput of every registered row: forward and training-step frames/s, FLOP efficiency.

    python experiments/bench_models.py                      # every row, paper shapes (T=80, B=4, 96x96)
    python experiments/bench_models.py --rows=table3/cnn_rnn,table4/cnn_rnn --steps=2

For each row it builds the model at the paper's shapes, compiles one training step
(CCC loss, Adam) inside `tf.function`, and times `--steps` forward passes and
training steps after one warm-up each. FLOPs are counted analytically from the
layer shapes (2 per multiply-add; a training step counted as 3x the forward
pass: forward, input gradients, weight gradients), and the achieved GFLOP/s is
printed as a ratio of the dense float32 matmul peak measured in the same run
(square matmuls in a `tf.function` loop), so the ratio does not depend on the
machine's speed. Table VI rows share their base row's model and are skipped.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402
from absl import app, flags  # noqa: E402

from omg_cnnrnn import experiments, losses, models  # noqa: E402
from omg_cnnrnn.hardware import matmul_peak  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("rows", [], "Rows to benchmark (default: every registered row except Table VI).")
flags.DEFINE_integer("steps", 2, "Timed steps per measurement (after one warm-up).")
flags.DEFINE_integer("batch_size", 4, "Sequences per batch (paper: 4).")
flags.DEFINE_integer("sequence_length", 80, "Frames per sequence (paper: 80).")
flags.DEFINE_integer("image_size", 96, "Face crop size (paper: 96).")
flags.DEFINE_integer("matmul_size", 2048, "Size of the square matmuls that measure the peak.")
flags.DEFINE_bool("forward", True, "Also time the forward pass.")
flags.DEFINE_bool("jit_compile", False, "XLA-compile the forward pass and the training step.")


def forward_flops(model: tf_keras.Model, frames_per_sequence: int) -> float:
  """Forward FLOPs per frame: convs, dense layers and GRUs, from the built layer shapes."""
  total = 0.0

  def visit(m):
    nonlocal total
    for layer in m.layers:
      if isinstance(layer, tf_keras.Model):
        visit(layer)
      elif isinstance(layer, tf_keras.layers.Conv2D):
        h, w = layer.output.shape[1:3]
        kh, kw = layer.kernel_size
        total += 2.0 * h * w * kh * kw * layer.input.shape[-1] * layer.filters
      elif isinstance(layer, tf_keras.layers.Dense):
        total += 2.0 * layer.kernel.shape[0] * layer.kernel.shape[1]
      elif isinstance(layer, tf_keras.layers.GRU):
        kernel, recurrent = layer.cell.kernel, layer.cell.recurrent_kernel
        total += 2.0 * (kernel.shape[0] * kernel.shape[1] + recurrent.shape[0] * recurrent.shape[1])

  visit(model)
  del frames_per_sequence
  return total


def bench_row(name: str) -> dict:
  tf_keras.backend.clear_session()
  config = experiments.get(name)
  cnn_only = not config.model.has_rnn
  # CNN-only rows train on single frames (Sec. IV-1): B*T frames as a batch of length-1 sequences.
  b, t = (FLAGS.batch_size * FLAGS.sequence_length, 1) if cnn_only else (FLAGS.batch_size, FLAGS.sequence_length)
  size = FLAGS.image_size
  model = models.build_model(config.model, image_size=size)
  optimizer = tf_keras.optimizers.Adam(config.train.learning_rate)
  loss_fn = losses.CCCLoss()
  rng = np.random.default_rng(0)
  inputs = {"frames": tf.constant(rng.uniform(-1, 1, (b, t, size, size, 3)), tf.float32),
            "mask": tf.ones((b, t))}
  labels = tf.constant(rng.uniform(-1, 1, (b, t, 2)), tf.float32)

  @tf.function(jit_compile=FLAGS.jit_compile)
  def forward(x):
    return model(x, training=False)

  @tf.function(jit_compile=FLAGS.jit_compile)
  def train_step(x, y):
    with tf.GradientTape() as tape:
      loss = loss_fn(y, model(x, training=True), sample_weight=x["mask"])
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return loss

  def timed(fn, *args):
    fn(*args).numpy()  # warm-up: tracing and first-run allocations
    t0 = time.perf_counter()
    for _ in range(FLAGS.steps):
      fn(*args).numpy()
    return (time.perf_counter() - t0) / FLAGS.steps

  frames = b * t
  fwd_s = timed(forward, inputs) if FLAGS.forward else float("nan")
  train_s = timed(train_step, inputs, labels)
  flops = forward_flops(model, t) * frames
  return {"name": name, "params": model.count_params(), "frames": frames,
          "forward_fps": frames / fwd_s, "train_fps": frames / train_s,
          "forward_gflops": flops / fwd_s / 1e9, "train_gflops": 3 * flops / train_s / 1e9,
          "gflop_per_frame": flops / frames / 1e9}


def main(argv):
  del argv
  rows = FLAGS.rows or [n for n in experiments.names() if not n.startswith("table6/")]
  print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPU cores, intra-op threads "
        f"{tf.config.threading.get_intra_op_parallelism_threads() or 'default'}")
  peak = matmul_peak(FLAGS.matmul_size)
  print(f"dense float32 matmul peak ({FLAGS.matmul_size}^2): {peak:.1f} GFLOP/s")
  print(f"shapes: B={FLAGS.batch_size} T={FLAGS.sequence_length} {FLAGS.image_size}x{FLAGS.image_size} "
        f"(CNN-only rows: {FLAGS.batch_size * FLAGS.sequence_length} single frames); {FLAGS.steps} timed steps; "
        f"XLA {'on' if FLAGS.jit_compile else 'off'}\n")
  header = ("| row | params | GFLOP/frame (fwd) | forward frames/s | forward GFLOP/s | train frames/s "
            "| train GFLOP/s | train / peak |")
  print(header)
  print("|" + "---|" * 8)
  for name in rows:
    r = bench_row(name)
    print(f"| {name} | {r['params']:,} | {r['gflop_per_frame']:.2f} | {r['forward_fps']:.1f} | "
          f"{r['forward_gflops']:.1f} | {r['train_fps']:.2f} | {r['train_gflops']:.1f} | "
          f"{r['train_gflops'] / peak:.0%} |", flush=True)


if __name__ == "__main__":
  app.run(main)
