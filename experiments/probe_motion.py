r"""Which features let the paper's GRU stack read motion? A probe on frozen features.

Freezes what a trained workdir's network computes per frame (its VGG-16 taps: `pool3`,
`pool4`, `pool5`, `fc1`), the same taps of a freshly initialised network, or the frames themselves
(`pixels`, resized to 16x16), and trains only the paper's RNN subnet on them (2 GRU layers
of `model.rnn_units`, dropout `model.rnn_dropout` between them, TF1 gate biases, a linear
output; Adam at 1e-3, the paper's batch of 4 sequences, the sequence-mean CCC loss) on
random `--sequence_length`-frame windows of the training utterances. It prints the CCC of
the utterance means (official global protocol) on the training and validation utterances
every quarter of the run. `--batch_size` and `--mse_weight` vary the objective's noise.

What it is for: on a set where a dimension shows only in how the face moves
(`data_prep.synthesize --preset=motion`), a GRU fed the pixels learns that dimension and a
GRU fed the features of a CNN-only run does not: the CNN-only objective (one label per
utterance on every frame) makes its features invariant to the motion inside an utterance
and memorises the training utterances' looks, which the GRU reads first (README, "Where
training starts"). The probe separates "the features hold no motion" from "the recurrent
training does not find it".

  .venv/bin/python experiments/probe_motion.py --workdir=<CNN-only workdir> \
      --data_dir=<prepared records> --features=pixels,fc1,pool5,random_pool5 --steps=800
"""

from __future__ import annotations

import time

from absl import app, flags
import numpy as np
import tensorflow as tf
import tf_keras

from omg_cnnrnn import configs, hardware, losses, metrics, models
from omg_cnnrnn import workdir as workdir_lib
from omg_cnnrnn.data import pipeline
from omg_cnnrnn.models import cnn_rnn

FEATURES = ("pixels", "pool3", "pool4", "pool5", "fc1", "random_pool5", "random_fc1")
# Taps inside the VGG-16 backbone (its layer names), read from a sub-model.
_INNER = ("pool3", "pool4")


def extract(workdir: str, data_dir: str, names: list[str]) -> dict:
  """{split: ({feature: [per-utterance (n, D) arrays]}, labels (U, 2))} over every frame."""
  model, config = workdir_lib.load_workdir_model(workdir)
  size = config.data.image_size
  taps = cnn_rnn.feature_taps(model)
  backbone = model.get_layer("vgg16")
  inner = [n for n in names if n in _INNER]
  inner_taps = tf_keras.Model(backbone.input, [backbone.get_layer(n).output for n in inner]) if inner else None
  fresh = models.build_model(config.model, image_size=size)
  random_taps = cnn_rnn.feature_taps(fresh)
  data = configs.override(config, {"data.sequence_length": 32, "data.batch_size": 8}).data
  out = {}
  for split in ("train", "validation"):
    index = pipeline.utterance_index(data_dir, split)
    feats = {name: [[] for _ in index] for name in names}
    labels = np.array([[row["valence"], row["arousal"]] for row in index], np.float32)
    for batch in pipeline.eval_dataset(data_dir, data, split):
      b, t = batch["mask"].shape
      frames = tf.reshape(batch["frames"], (-1, size, size, 3))
      values = {}
      if "pixels" in names:
        values["pixels"] = tf.image.resize(frames, (16, 16), antialias=True)
      if inner_taps is not None:
        outs = inner_taps(frames, training=False)
        values.update(zip(inner, outs if isinstance(outs, (list, tuple)) else [outs]))  # One tap: a tensor.
      if any(n in ("fc1", "pool5") for n in names):
        values.update({k: v for k, v in taps(frames, training=False).items() if k in names})
      if any(n.startswith("random_") for n in names):
        values.update({f"random_{k}": v for k, v in random_taps(frames, training=False).items()
                       if f"random_{k}" in names})
      mask = batch["mask"].numpy()
      for name, value in values.items():
        value = tf.reshape(value, (b, t, -1)).numpy()
        for j, i in enumerate(batch["index"].numpy()):
          feats[name][i].append(value[j, :int(mask[j].sum())])
    out[split] = ({k: [np.concatenate(p) for p in v] for k, v in feats.items()}, labels)
  return out, config


def probe(train_x, train_y, val_x, val_y, model_config: configs.ModelConfig, steps: int, length: int,
          seed: int, batch_size: int = 4, mse_weight: float = 0.0,
          input_dropout: float = 0.0) -> list[tuple[int, np.ndarray, np.ndarray]]:
  """Trains the RNN subnet on frozen, standardised features; (step, train CCC, val CCC) rows.

  `input_dropout`: dropout on the features, a new mask every frame (as the row's FC1 dropout).
  """
  mean = np.concatenate(train_x).mean(0)
  std = np.concatenate(train_x).std(0) + 1e-6
  train_x = [(x - mean) / std for x in train_x]
  val_x = [(x - mean) / std for x in val_x]
  tf_keras.utils.set_random_seed(seed)
  inputs = tf_keras.Input((None, train_x[0].shape[1]))
  x = tf_keras.layers.Dropout(input_dropout)(inputs) if input_dropout else inputs
  for layer in range(model_config.rnn_layers):
    if layer and model_config.rnn_dropout:
      x = tf_keras.layers.Dropout(model_config.rnn_dropout)(x)
    x = tf_keras.layers.GRU(model_config.rnn_units, return_sequences=True, reset_after=model_config.gru_reset_after,
                            bias_initializer=cnn_rnn.GRUGateBias(model_config.gru_gate_bias))(x)
  net = tf_keras.Model(inputs, tf_keras.layers.Dense(2)(x))
  optimizer = tf_keras.optimizers.Adam(1e-3)
  loss_fn = losses.CCCLoss(aggregate="mean", mse_weight=mse_weight)

  @tf.function
  def step(x, y, m):
    with tf.GradientTape() as tape:
      loss = loss_fn(y, net(x, training=True), sample_weight=m)
    optimizer.apply_gradients(zip(tape.gradient(loss, net.trainable_variables), net.trainable_variables))

  def score(xs, ys):
    means = np.array([net(x[None], training=False).numpy()[0].mean(0) for x in xs])
    return np.array([metrics.ccc_official(means[:, d], ys[:, d]) for d in range(2)])

  rng = np.random.default_rng(seed)
  rows = []
  for s in range(1, steps + 1):
    ids = rng.integers(0, len(train_x), batch_size)
    xb, mb = [], []
    for i in ids:
      x = train_x[i]
      offset = rng.integers(0, max(len(x) - length, 0) + 1)
      w = x[offset:offset + length]
      mb.append(np.r_[np.ones(len(w)), np.zeros(length - len(w))])
      xb.append(np.concatenate([w, np.zeros((length - len(w), w.shape[1]))]))
    labels = np.repeat(train_y[ids][:, None], length, 1)
    step(np.stack(xb).astype(np.float32), labels.astype(np.float32), np.stack(mb).astype(np.float32))
    if s % max(steps // 4, 1) == 0 or s == steps:
      rows.append((s, score(train_x, train_y), score(val_x, val_y)))
  return rows


def main(argv):
  del argv
  names = FLAGS.features
  unknown = sorted(set(names) - set(FEATURES))
  if unknown:
    raise app.UsageError(f"--features: unknown {unknown}; known: {list(FEATURES)}")
  peak = hardware.matmul_peak(2048)
  start = time.time()
  data, config = extract(FLAGS.workdir, FLAGS.data_dir, names)
  print(f"features of {FLAGS.workdir} ({config.name}) extracted in {time.time() - start:.0f} s "
        f"(float32 2048^2 matmul {peak:.0f} GFLOP/s)")
  print("| features | step | train valence | train arousal | validation valence | validation arousal |")
  print("|---|---|---|---|---|---|")
  for name in names:
    (train_f, train_y), (val_f, val_y) = data["train"], data["validation"]
    for s, tr, va in probe(train_f[name], train_y, val_f[name], val_y, config.model, FLAGS.steps,
                           FLAGS.sequence_length, FLAGS.seed, FLAGS.batch_size, FLAGS.mse_weight,
                           FLAGS.input_dropout):
      print(f"| {name} | {s} | {tr[0]:.3f} | {tr[1]:.3f} | {va[0]:.3f} | {va[1]:.3f} |", flush=True)
  print(f"total {time.time() - start:.0f} s at {peak:.0f} GFLOP/s")


if __name__ == "__main__":
  flags.DEFINE_string("workdir", None, "A trained workdir (its best weights give the trained features).")
  flags.DEFINE_string("data_dir", None, "Prepared records with train and validation splits.")
  flags.DEFINE_list("features", ["pixels", "fc1"], f"Frozen features to probe, of {list(FEATURES)}.")
  flags.DEFINE_integer("steps", 800, "Optimisation steps of each probe (batches of 4 windows).")
  flags.DEFINE_integer("sequence_length", 16, "Frames per training window.")
  flags.DEFINE_integer("batch_size", 4, "Windows per step (the paper's 4).")
  flags.DEFINE_float("mse_weight", 0.0, "Share of the MSE added to 1 - CCC (train.mse_weight; 0 = the paper's loss).")
  flags.DEFINE_float("input_dropout", 0.0, "Dropout on the frozen features, a mask per frame (the row's FC1 "
                     "dropout is 0.5).")
  flags.DEFINE_integer("seed", 0, "Seed of the GRU initialisation and the window draws.")
  flags.mark_flags_as_required(["workdir", "data_dir"])
  FLAGS = flags.FLAGS
  app.run(main)
