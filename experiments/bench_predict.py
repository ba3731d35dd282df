"""Video prediction speed and memory: inference alone, end to end with detection, long videos.

    python experiments/bench_predict.py                                  # everything, defaults below
    python experiments/bench_predict.py --parts=speed --e2e_seconds=10   # shorter
    python experiments/bench_predict.py --parts=memory --memory_minutes=1,10 --memory_fps=25

Speed (`--parts=speed`), per row of `--rows` at `--image_size` (random weights: speed does
not depend on them), through the exported SavedModel exactly as `omg-predict` runs it:
- inference alone: `Predictor.step` on chunks of `--chunk_frames` uint8 face crops, GRU
  state carried (after one warm-up chunk);
- end to end: `inference.predict_video` on a synthetic `--width`x`--height` video of
  `--e2e_seconds` at `--fps` (a real face texture, away for a tenth of the time): decoding,
  detection and tracking, cropping, the network, the median filter and `frames.csv`
  (the plot and summary after the pass are excluded). The face pipeline alone is timed
  on the same video for reference.

Memory (`--parts=memory`): for each length in `--memory_minutes`, a synthetic video is
written (frame by frame) and `inference.predict_video` runs over it in a fresh subprocess,
which reports its peak RSS (`getrusage`) and its RSS sampled over the run (/proc), so
peaks are separate per length. Flat memory: the peak and the late samples do not grow
with the length.

Prints its figures; nothing is asserted.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from omg_cnnrnn import atomic  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("parts", ["speed", "memory"], "What to measure: speed, memory.")
flags.DEFINE_list("rows", ["table3/cnn_rnn", "table3/cnn_3rnn_last_conv"], "Rows timed for speed.")
flags.DEFINE_integer("image_size", 96, "Model input size (paper: 96).")
flags.DEFINE_integer("chunk_frames", 80, "Frames per network call (omg-predict's --chunk_frames).")
flags.DEFINE_integer("inference_chunks", 3, "Timed chunks for inference alone (after one warm-up).")
flags.DEFINE_float("e2e_seconds", 20.0, "Length of the end-to-end video.")
flags.DEFINE_integer("width", 640, "Frame width of the end-to-end video.")
flags.DEFINE_integer("height", 360, "Frame height of the end-to-end video.")
flags.DEFINE_float("fps", 25.0, "Frame rate of the end-to-end video.")
flags.DEFINE_list("memory_minutes", ["1", "10"], "Video lengths for the memory comparison, minutes.")
flags.DEFINE_string("memory_row", "table3/cnn_rnn", "Row used for the memory comparison.")
flags.DEFINE_float("memory_fps", 25.0, "Frame rate of the memory videos.")
flags.DEFINE_integer("memory_width", 320, "Frame width of the memory videos.")
flags.DEFINE_integer("memory_height", 240, "Frame height of the memory videos.")
flags.DEFINE_string("workdir", None, "Where videos and models go (default: a temporary folder, removed).")
# Internal: one memory measurement in a child process.
flags.DEFINE_string("child_model", None, "(internal) model of a memory child.")
flags.DEFINE_string("child_video", None, "(internal) video of a memory child.")


def write_video(path: str, seconds: float, fps: float, width: int, height: int, seed: int = 0) -> int:
  """A synthetic face video, written frame by frame; the face is away for a tenth of it."""
  from data_prep import synthetic_faces

  rng = np.random.default_rng(seed)
  look = synthetic_faces.Appearance.random(rng, width, height)
  n = int(round(seconds * fps))
  with atomic.atomic_output(path, suffix=".mp4") as tmp:  # Atomically; OpenCV picks the container by the extension.
    writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
      raise OSError(f"{path}: cannot open a video writer")
    # Expressions and head motion repeat every 10 s: rendering costs, not the content, matter here.
    period = int(round(10 * fps))
    cache = {}
    for i in range(n):
      k = i % period
      if k not in cache:
        s = k / fps
        visible = not (0.45 * period <= k < 0.55 * period)
        cache[k] = cv2.cvtColor(synthetic_faces.render_frame(
            look, float(np.sin(s / 1.3)), float(np.cos(s / 2.1)),
            (width / 2 + width * 0.12 * np.sin(s / 1.7), height / 2 + height * 0.05 * np.sin(s / 2.3)),
            5.0 * np.sin(s / 3.1), 1.0 + 0.1 * np.sin(s / 2.7), 1.0, visible)[0], cv2.COLOR_RGB2BGR)
      writer.write(cache[k])
    writer.release()
  return n


def export_row(name: str, image_size: int, path: str) -> str:
  """The row with random weights as an `omg_cnnrnn.export` SavedModel."""
  import dataclasses

  import tf_keras

  from omg_cnnrnn import experiments, models, serving

  config = experiments.get(name)
  config = dataclasses.replace(config, data=dataclasses.replace(config.data, image_size=image_size))
  tf_keras.backend.clear_session()
  model = models.build_model(config.model, image_size=image_size)
  return serving.export_saved_model(model, config, path)


def speed(workdir: str) -> None:
  from omg_cnnrnn import faces, inference

  video = os.path.join(workdir, "e2e.mp4")
  n = write_video(video, FLAGS.e2e_seconds, FLAGS.fps, FLAGS.width, FLAGS.height)
  config = faces.FaceConfig()
  list(faces.iter_faces(video, config))  # warm-up: MTCNN loads, graphs trace
  t0 = time.perf_counter()
  found = sum(f.face_found for f in faces.iter_faces(video, config))
  face_s = time.perf_counter() - t0
  print(f"end-to-end video: {FLAGS.width}x{FLAGS.height}, {FLAGS.fps:g} fps, {n} frames, face found in {found}")
  print(f"face pipeline alone (decode, detect/track, crop): {n / face_s:.1f} frames/s\n")
  print("| row | input | chunk | inference alone frames/s | end to end frames/s |")
  print("|---|---|---|---|---|")
  rng = np.random.default_rng(0)
  for name in FLAGS.rows:
    path = export_row(name, FLAGS.image_size, os.path.join(workdir, name.replace("/", "_")))
    predictor = inference.load_predictor(path)
    crops = rng.integers(0, 256, (FLAGS.chunk_frames, FLAGS.image_size, FLAGS.image_size, 3), dtype=np.uint8)
    state = predictor.initial_state()
    _, state = predictor.step(crops, state)  # warm-up
    t0 = time.perf_counter()
    for _ in range(FLAGS.inference_chunks):
      _, state = predictor.step(crops, state)
    infer_fps = FLAGS.inference_chunks * FLAGS.chunk_frames / (time.perf_counter() - t0)
    summary = inference.predict_video(predictor, video, os.path.join(workdir, "out_" + name.replace("/", "_")),
                                    chunk_frames=FLAGS.chunk_frames)
    print(f"| {name} | {FLAGS.image_size}x{FLAGS.image_size} | {FLAGS.chunk_frames} | {infer_fps:.1f} | "
          f"{summary['frames_per_second']:.1f} |", flush=True)


def _rss_mb() -> float:
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith("VmRSS:"):
        return int(line.split()[1]) / 1024
  return float("nan")


def memory_child() -> None:
  """One run of predict_video; prints peak and sampled RSS as JSON."""
  from omg_cnnrnn import inference

  samples = []
  stop = threading.Event()

  def sample():
    t0 = time.perf_counter()
    while not stop.wait(1.0):
      samples.append((time.perf_counter() - t0, _rss_mb()))

  predictor = inference.load_predictor(FLAGS.child_model)
  before = _rss_mb()
  thread = threading.Thread(target=sample, daemon=True)
  thread.start()
  out = tempfile.mkdtemp(prefix="bench_predict_out_")
  summary = inference.predict_video(predictor, FLAGS.child_video, out, chunk_frames=FLAGS.chunk_frames)
  stop.set()
  thread.join()
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  quarter = [samples[min(len(samples) - 1, int(q * len(samples)))][1] for q in (0.25, 0.5, 0.75, 0.999)] \
      if samples else []
  print(json.dumps({"frames": summary["frames"], "seconds": summary["seconds"], "rss_after_load_mb": before,
                    "rss_quartiles_mb": quarter, "peak_rss_mb": peak}))


def memory(workdir: str) -> None:
  model = export_row(FLAGS.memory_row, FLAGS.image_size, os.path.join(workdir, "memory_model"))
  print(f"\nmemory: {FLAGS.memory_row} at {FLAGS.image_size}x{FLAGS.image_size}, chunk {FLAGS.chunk_frames}, "
        f"videos {FLAGS.memory_width}x{FLAGS.memory_height} at {FLAGS.memory_fps:g} fps")
  print("| video | frames | run s | RSS after model load MB | RSS at 25/50/75/100% of the run MB | peak RSS MB |")
  print("|---|---|---|---|---|---|")
  for minutes in (float(m) for m in FLAGS.memory_minutes):
    video = os.path.join(workdir, f"memory_{minutes:g}min.mp4")
    write_video(video, minutes * 60, FLAGS.memory_fps, FLAGS.memory_width, FLAGS.memory_height)
    done = subprocess.run([sys.executable, os.path.abspath(__file__), f"--child_model={model}",
                           f"--child_video={video}", f"--chunk_frames={FLAGS.chunk_frames}"],
                          capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if done.returncode:
      raise RuntimeError(f"memory child for {video} failed:\n{done.stderr[-3000:]}")
    r = json.loads(done.stdout.strip().splitlines()[-1])
    quartiles = " / ".join(f"{v:.0f}" for v in r["rss_quartiles_mb"])
    print(f"| {minutes:g} min | {r['frames']} | {r['seconds']:.0f} | {r['rss_after_load_mb']:.0f} | {quartiles} | "
          f"{r['peak_rss_mb']:.0f} |", flush=True)
    os.remove(video)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # SavedModel export logs a line per signature
  if FLAGS.child_model:
    memory_child()
    return
  import tensorflow as tf

  unknown = set(FLAGS.parts) - {"speed", "memory"}
  if unknown:
    raise app.UsageError(f"--parts: unknown {sorted(unknown)}; choose from speed, memory")
  print(f"TensorFlow {tf.__version__}, {len(os.sched_getaffinity(0))} CPU cores available")
  with tempfile.TemporaryDirectory(prefix="bench_predict_") as tmp:
    workdir = FLAGS.workdir or tmp
    os.makedirs(workdir, exist_ok=True)
    if "speed" in FLAGS.parts:
      speed(workdir)
    if "memory" in FLAGS.parts:
      memory(workdir)


if __name__ == "__main__":
  app.run(main)
