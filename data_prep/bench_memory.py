"""Peak memory of data preparation against video length (issue 14, item 6).

For each length, writes a 30 fps video of a real face (scikit-image's astronaut photo,
`synthetic_faces`) moving and changing expression over a textured background, then prepares it as one item (a whole video, as an
Aff-Wild video is) in a fresh process, and prints that process's peak resident memory
(`ru_maxrss`): after the face pipeline has written the item's record, and after the shard
is assembled from it. Each line carries the time taken and this machine's float32 matmul
rate. Target: the 15-minute video's peak within 10% of the 1-minute video's.

  python data_prep/bench_memory.py                       # 1 and 15 minutes, 320x180
  python data_prep/bench_memory.py --minutes=1,5 --in_memory

`--in_memory` also runs the way data prep worked before (every crop kept as an array,
then the whole record built and serialized in memory), for comparison.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from absl import app
from absl import flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from omg_cnnrnn import atomic  # noqa: E402

_MINUTES = flags.DEFINE_list("minutes", ["1", "15"], "Video lengths to measure, in minutes.")
_SIZE = flags.DEFINE_list("size", ["320", "180"], "Width, height of the videos.")
_FPS = flags.DEFINE_float("fps", 30.0, "Frame rate of the videos.")
_IN_MEMORY = flags.DEFINE_bool("in_memory", False, "Also measure the old in-memory way, for comparison.")
_VIDEO_DIR = flags.DEFINE_string("video_dir", None, "Keep the videos here and reuse them on later runs "
                                  "(default: a temporary folder).")
_CHILD = flags.DEFINE_string("child", None, "Internal: measure one run (mode:video:output_dir) in this process.")


def write_video(path: str, num_frames: int, width: int, height: int, fps: float) -> None:
  """A face moving, nodding and changing expression; frames generated one at a time."""
  from data_prep import synthetic_faces

  look = synthetic_faces.Appearance.random(np.random.default_rng(0), width, height)
  writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
  for i in range(num_frames):
    t = i / fps
    centre = (width / 2 + 0.2 * width * np.sin(2 * np.pi * t / 7), height / 2 + 0.08 * height * np.sin(2 * np.pi * t / 3))
    frame, _ = synthetic_faces.render_frame(look, np.sin(t / 5), np.cos(t / 4), centre, 8 * np.sin(t), 1.0,
                                            0.9 + 0.1 * np.sin(t))
    writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
  writer.release()


def _peak_mib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


class RssSampler:
  """The largest resident memory seen from `start()` on, sampled every 0.1 s (Linux).

  `ru_maxrss` keeps the high-water mark of the whole process, which loading TensorFlow
  may set; this one sees what the work itself holds.
  """

  def __init__(self):
    self.peak = 0.0
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, daemon=True)

  @staticmethod
  def current_mib() -> float:
    with open("/proc/self/statm") as f:
      return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

  def _run(self):
    while not self._stop.is_set():
      self.peak = max(self.peak, self.current_mib())
      self._stop.wait(0.1)

  def start(self):
    self.peak = self.current_mib()
    self._thread.start()
    return self

  def stop(self) -> float:
    self._stop.set()
    self._thread.join()
    self.peak = max(self.peak, self.current_mib())
    return self.peak


def measure(mode: str, video: str, output_dir: str) -> dict:
  """One measurement in this (fresh) process: peak RSS after the item, after the shard."""
  from data_prep import common
  from omg_cnnrnn import faces
  from omg_cnnrnn.data import features, records

  item = common.Item(key="video", video="video", utterance="video", source=video, dataset="affwild", split="train",
                     row=1, order=0)
  settings = common.Settings()
  detector = faces.default_detector(settings.face)
  faces.FaceTracker(settings.face, detector).update(np.zeros((180, 320, 3), np.uint8))  # load the detector
  baseline = _peak_mib()
  loaded = RssSampler.current_mib()
  sampler = RssSampler().start()
  t0 = time.perf_counter()
  if mode == "streamed":
    row = common.process_item(item, output_dir, settings, detector)
    after_item = _peak_mib()
    common.run([item], output_dir, [], settings, progress=False, detector=detector)  # reuses the record
  else:  # the old way: every crop an array, the record built whole
    track = faces.process_video(video, settings.face, detector)
    example = features.encode_example(
        video=item.video, utterance=item.utterance, valence=0.0, arousal=0.0, crops=track.crops,
        face_found=track.face_found, detected=track.detected, boxes=track.boxes, timestamps=track.timestamps,
        fps=track.fps, dataset=item.dataset, split=item.split, source=video, frame_size=track.frame_size)
    serialized = features.serialize(example)
    row = {"status": "ok", "num_frames": len(track.face_found), "bytes": len(serialized)}
    del example, track
    os.makedirs(output_dir, exist_ok=True)
    records.write_atomic(os.path.join(output_dir, "video.pb"), serialized)
    after_item = _peak_mib()
    records.write_records(os.path.join(output_dir, records.shard_name("train", 0, 1)), [serialized])
  seconds = time.perf_counter() - t0
  working = sampler.stop()
  if row["status"] != "ok":
    raise SystemExit(f"{video}: {row.get('reason')}")
  return {"mode": mode, "frames": row["num_frames"], "record_mib": row["bytes"] / 2**20, "baseline_mib": baseline,
          "after_item_mib": after_item, "peak_mib": _peak_mib(), "loaded_rss_mib": loaded,
          "working_peak_mib": working, "seconds": seconds}


def _run_child(mode: str, video: str, output_dir: str) -> dict:
  cmd = [sys.executable, "-m", "data_prep.bench_memory", f"--child={mode}:{video}:{output_dir}"]
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  done = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
  if done.returncode != 0:
    raise SystemExit(f"measurement {mode} {video} failed:\n{done.stderr[-3000:]}")
  return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv):
  del argv
  if _CHILD.value:
    mode, video, output_dir = _CHILD.value.split(":", 2)
    print(json.dumps(measure(mode, video, output_dir)))
    return
  from omg_cnnrnn import hardware

  gflops = hardware.matmul_peak(2048)
  width, height = (int(v) for v in _SIZE.value)
  modes = ["streamed"] + (["in_memory"] if _IN_MEMORY.value else [])
  print(f"{width}x{height} at {_FPS.value:g} fps; {os.cpu_count()} CPU cores (shared: timings are noisy); "
        f"this machine: {gflops:.0f} GFLOP/s (float32 2048^2 matmul)")
  print(f"{'mode':>9} {'minutes':>7} {'frames':>7} {'record MiB':>10} {'loaded MiB':>10} {'item MiB':>9} "
        f"{'peak MiB':>9} {'RSS loaded':>10} {'RSS work':>9} {'seconds':>8} {'GFLOP/s':>8}")
  peaks = {}
  with tempfile.TemporaryDirectory() as tmp:
    for minutes in _MINUTES.value:
      video = os.path.join(_VIDEO_DIR.value or tmp, f"{minutes}min-{width}x{height}-{_FPS.value:g}fps.mp4")
      if not os.path.exists(video):
        t0 = time.perf_counter()
        os.makedirs(os.path.dirname(video), exist_ok=True)
        with atomic.atomic_output(video, suffix=".mp4") as part:  # OpenCV picks the container by the extension.
          write_video(part, int(round(float(minutes) * 60 * _FPS.value)), width, height, _FPS.value)
        print(f"  (wrote {video}: {time.perf_counter() - t0:.0f} s at {gflops:.0f} GFLOP/s)", flush=True)
      for mode in modes:
        out = os.path.join(tmp, f"out-{mode}-{minutes}")
        r = _run_child(mode, video, out)
        peaks[(mode, minutes)] = (r["peak_mib"], r["working_peak_mib"])
        print(f"{mode:>9} {minutes:>7} {r['frames']:7d} {r['record_mib']:10.1f} {r['baseline_mib']:10.0f} "
              f"{r['after_item_mib']:9.0f} {r['peak_mib']:9.0f} {r['loaded_rss_mib']:10.0f} "
              f"{r['working_peak_mib']:9.0f} {r['seconds']:8.1f} {gflops:8.0f}", flush=True)
        shutil.rmtree(out, ignore_errors=True)
      if not _VIDEO_DIR.value:
        os.remove(video)
  for mode in modes:
    lengths = [m for m in _MINUTES.value if (mode, m) in peaks]
    if len(lengths) >= 2:
      (first, first_work), (last, last_work) = peaks[(mode, lengths[0])], peaks[(mode, lengths[-1])]
      print(f"{mode}: at {lengths[-1]} min vs {lengths[0]} min: peak RSS {100 * (last / first - 1):+.1f}%, "
            f"RSS while working {100 * (last_work / first_work - 1):+.1f}% (target: within 10%)")
  print("loaded / item / peak MiB: ru_maxrss (the process's high-water mark) after loading TensorFlow and the "
        "detector, after the face pipeline wrote the item's record, after the shard was assembled.\n"
        "RSS loaded / work: resident memory after loading, and the most seen (sampled every 0.1 s) while the item "
        "was prepared and its shard assembled.")


if __name__ == "__main__":
  app.run(main)
