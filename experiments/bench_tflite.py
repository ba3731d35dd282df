"""TFLite vs SavedModel: size, frames/s and the CCC change of quantisation on a validation split.

    python experiments/demo.py --demo_dir=checkpoints/demo        # a trained workdir and records
    python experiments/bench_tflite.py --workdir=checkpoints/demo/runs/table3/cnn_rnn \\
        --data_dir=checkpoints/demo/records/omg [--split=validation] [--chunk_frames=16]

Exports the workdir's model with `omg_cnnrnn.export` (`tflite_chunk_frames=--chunk_frames`)
into a temporary folder, then runs the SavedModel, `model_float32.tflite` and
`model_dynamic_range.tflite` over every utterance of the split as `omg-predict` runs a
video: the prepared uint8 face crops of the frames with a face, in chunks of
`--feed_frames`, the GRU state carried through the utterance from zeros; the utterance value
is the mean of its frames' predictions; CCC (population moments, `metrics.ccc`) against the
split's utterance labels. Prints per model: file size, inference frames/s (network only,
after a warm-up call), CCC valence/arousal and its change from the SavedModel, and the
largest per-frame difference from the SavedModel; with the dense float32 2048^2 matmul
GFLOP/s measured in the same run beside the times. Nothing is asserted.

(`omg_cnnrnn.evaluate` scores utterances in 80-frame chunks that each start from zeros, as in
training; here the state runs through the whole utterance, as in prediction, so the CCC
differs a little from evaluate's; the change between models is the figure of interest.)
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

flags.DEFINE_string("workdir", "checkpoints/demo/runs/table3/cnn_rnn", "Trained workdir.")
flags.DEFINE_string("data_dir", "checkpoints/demo/records/omg", "Prepared records (data_prep.prepare_omg).")
flags.DEFINE_string("split", "validation", "Split to score.")
flags.DEFINE_integer("chunk_frames", 16, "Frames per call fixed in the .tflite files.")
flags.DEFINE_integer("feed_frames", 80, "Frames handed to a model per step (omg-predict's --chunk_frames).")
flags.DEFINE_integer("threads", 2, "TFLite interpreter threads (TensorFlow uses the machine's).")
FLAGS = flags.FLAGS


def read_split(data_dir: str, split: str) -> list[dict]:
  """Every utterance: uint8 crops of its frames with a face, and its labels."""
  import tensorflow as tf

  from omg_cnnrnn.data import features, pipeline

  out = []
  for record in tf.data.TFRecordDataset(pipeline.shard_files(data_dir, split)):
    ex = features.decode_numpy(record.numpy())
    found = np.asarray(ex[features.FACE_FOUND], bool)
    out.append({"crops": ex[features.FRAMES][found] if found.any() else ex[features.FRAMES][:0],
                "labels": np.array([ex[features.VALENCE], ex[features.AROUSAL]], np.float64)})
  return out


def run_model(predictor, utterances: list[dict], feed: int) -> tuple[np.ndarray, list[np.ndarray], float, int]:
  """(utterance values [U, 2] (NaN without a face), per-frame values, seconds, frames) of one model."""
  first = next(u["crops"] for u in utterances if len(u["crops"]))
  predictor.step(first[:feed], predictor.initial_state())  # warm-up (graph tracing, allocation)
  values, frames, seconds, count = [], [], 0.0, 0
  for u in utterances:
    state = predictor.initial_state()
    per_frame = []
    t0 = time.perf_counter()
    for a in range(0, len(u["crops"]), feed):
      out, state = predictor.step(u["crops"][a:a + feed], state)
      per_frame.append(out)
    seconds += time.perf_counter() - t0
    count += len(u["crops"])
    p = np.concatenate(per_frame) if per_frame else np.zeros((0, 2), np.float32)
    frames.append(p)
    values.append(p.mean(axis=0) if len(p) else np.full(2, np.nan))
  return np.array(values), frames, seconds, count


def main(argv):
  del argv
  from omg_cnnrnn import inference, metrics, serving, tflite, workdir
  from omg_cnnrnn.hardware import matmul_peak

  model, config = workdir.load_workdir_model(FLAGS.workdir)
  utterances = read_split(FLAGS.data_dir, FLAGS.split)
  labels = np.array([u["labels"] for u in utterances])
  with tempfile.TemporaryDirectory() as tmp:
    folder = serving.export_saved_model(model, config, os.path.join(tmp, "sm"),
                                       tflite_chunk_frames=FLAGS.chunk_frames)
    peak = matmul_peak(2048)
    models = {"saved_model": folder, "tflite float32": os.path.join(folder, tflite.FLOAT32_FILE),
              "tflite dynamic-range": os.path.join(folder, tflite.DYNAMIC_RANGE_FILE)}
    rows, reference = [], None
    for name, path in models.items():
      predictor = inference.load_predictor(path)
      if predictor.kind == "tflite":
        predictor._streaming = tflite.TFLiteStreaming(path, num_threads=FLAGS.threads)
        size = os.path.getsize(path)
      else:
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(os.path.join(folder, "variables"))
                   for f in fs) + os.path.getsize(os.path.join(folder, "saved_model.pb"))
      values, frames, seconds, count = run_model(predictor, utterances, FLAGS.feed_frames)
      ok = np.isfinite(values).all(axis=1)
      ccc = [metrics.ccc(values[ok, d], labels[ok, d]) for d in range(2)]
      row = {"model": name, "size_mb": size / 1e6, "frames_per_s": count / seconds, "ccc_valence": ccc[0],
             "ccc_arousal": ccc[1], "utterances": int(ok.sum()), "frames": count}
      if reference is None:
        reference = (ccc, frames)
      else:
        row["ccc_change_valence"] = ccc[0] - reference[0][0]
        row["ccc_change_arousal"] = ccc[1] - reference[0][1]
        row["max_abs_frame_diff"] = float(max(np.abs(a - b).max() for a, b in zip(frames, reference[1]) if len(a)))
      rows.append(row)
  print(f"\n{config.name} ({FLAGS.workdir}), split {FLAGS.split}: {len(utterances)} utterances; "
        f"image {config.data.image_size}px; tflite chunk {FLAGS.chunk_frames}, feed {FLAGS.feed_frames}, "
        f"{FLAGS.threads} TFLite threads; this machine: dense float32 matmul {peak:.0f} GFLOP/s (2048^2)")
  print(f"{'model':22s} {'MB':>8s} {'frames/s':>9s} {'CCC V':>7s} {'CCC A':>7s} {'dV':>8s} {'dA':>8s} {'max|diff|':>10s}")
  for r in rows:
    print(f"{r['model']:22s} {r['size_mb']:8.2f} {r['frames_per_s']:9.1f} {r['ccc_valence']:7.4f} "
          f"{r['ccc_arousal']:7.4f} {r.get('ccc_change_valence', 0):+8.4f} {r.get('ccc_change_arousal', 0):+8.4f} "
          f"{r.get('max_abs_frame_diff', 0):10.2e}")
  print(json.dumps({"matmul_gflops": peak, "rows": rows}, default=float))


if __name__ == "__main__":
  app.run(main)
