"""Valence and arousal over time for any video, with a trained model.

    omg-predict --model=<SavedModel dir or training workdir> --video=<file> --output_dir=<dir> \\
        [--utterances=<CSV with start,end seconds>] [--annotated_video] [--chunk_frames=80]
    omg-predict --model=... --videos=<folder, glob or list file> --output_dir=<dir> [--num_workers=2]
        (one folder per video and index.csv; resumable: `omg_cnnrnn.batch`)
    omg-predict --model=... --video=<file> --faces=all --output_dir=<dir>
        (every person a track: frames.csv rows per (frame, track), plot_track<id>.png; `predict_all_faces`)
    omg-predict --model=... --video=<file> --target=largest|left|right|center|x,y --output_dir=<dir>
    omg-predict --model=... --video=<camera index or stream URL> --output_dir=<dir>   (`omg_cnnrnn.live`)
    omg-predict --model=... --video=<file> --live --output_dir=<dir>   (a file played at its frame rate)
    omg-predict --model=<dir>/model_float32.tflite ...   (`omg_cnnrnn.export --tflite`, `omg_cnnrnn.tflite`)
    python -m omg_cnnrnn.predict ...   (the same)

Trust: a SavedModel is a program (its graph may read and write files when loaded and run):
give `--model` only SavedModels from a trusted source. For weights from an untrusted source
give the training workdir instead (`config.json` + checkpoint tensors: the network is built
by this package and only numbers are read; no graph is loaded).

Writes to `--output_dir`:
- `frames.csv`: one row per decoded frame: `frame` (index), `time` (seconds), `face_found`
  (0/1), the face box `x0,y0,x1,y1` (source pixels), `valence`, `arousal` (the network, raw:
  its output is linear and may leave [-1, 1]), `valence_post`, `arousal_post` (median-filtered,
  below, then clipped: valence to [-1, 1], arousal to the training labels' range,
  `--arousal_range`, OMG's [0, 1] by default); the box and the values are empty where no face
  was found;
- `utterances.csv` (with `--utterances`): per segment `video, utterance, start, end,
  frames, faces_found, valence, arousal` (mean or median of the segment's frames with a
  face, as in evaluation; empty without any) and `valence_post, arousal_post` (the Table VI
  post-processing of `postprocess.apply`: median filter within the segment, smoothing
  toward the video's mean, face-less segments filled);
- `plot.png`: `valence_post` and `arousal_post` over time, and the trajectory in the
  valence-arousal plane (how many frames' raw values were clipped is written on it);
- `summary.json`: model, video, counts, speed, the post-processing used and where it came from;
- `annotated.mp4` (with `--annotated_video`): the video with the face box and
  valence/arousal gauges.

How it runs (memory does not grow with the video's length): frames are decoded and the
face tracked one at a time (`faces.FaceTracker`, the data preparation's pipeline and
settings; crops of `--crop_size` resized by area to the model's input size, as the
training input pipeline does), `--chunk_frames` frames at a time go through the
streaming form of the network (`export.ServingModule.serve_streaming`, also the
SavedModel's `serve_streaming` signature) with the GRU state carried from chunk to chunk,
and finished rows are appended to `frames.csv`. The predictions equal those of the whole
video in one sequence (to float rounding; tested to 1e-5). The plot and the utterance
table read back four numeric columns of `frames.csv` at the end.

Frames without a face: the row says `face_found=0` with empty values. They are not fed to
the network at all, which is exactly the model's own semantics for masked frames (the
GRUs skip them): the state is neither advanced nor reset, and the next frame with a face
continues from the state of the last one, however long the gap (a new video, i.e. a new
run, starts from zeros). So a face that leaves and returns is predicted as if the
face-less stretch were cut out. The post-processed columns apply the median filter
(windows from the model's `postprocess.json`, else the paper's 81 valence / 3 arousal
frames, `configs.PostprocessConfig`) to the frames with a face as one sequence, as
evaluation does within an utterance, restarting after a gap of more than the longest
window without a face (so a row waits at most that long for its filtered value).
Evaluation's within-video smoothing applies to utterance values only
(`utterances.csv`).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import sys
import time
from typing import Callable, Iterable, Iterator

import cv2
import numpy as np
import pandas as pd

from omg_cnnrnn import configs, faces, metrics, postprocess

FRAME_COLUMNS = ("frame", "time", "face_found", "x0", "y0", "x1", "y1", "valence", "arousal",
                 "valence_post", "arousal_post")
UTTERANCE_COLUMNS = ("video", "utterance", "start", "end", "frames", "faces_found", "valence", "arousal",
                     "valence_post", "arousal_post")
# What users read is kept in the labels' range (issue 15): the network's output is linear (as in
# the paper), and an untrained or out-of-domain model can say |valence| > 2. The raw `valence`
# and `arousal` columns keep the network's values; the `_post` columns are clipped.
VALENCE_RANGE = (-1.0, 1.0)
# SPEC "Inputs": OMG arousal labels lie in [0, 1] (Aff-Wild's in [-1, 1]); every registered row
# trains on OMG, so that is the default; a model trained on Aff-Wild labels takes (-1, 1).
OMG_AROUSAL_RANGE = (0.0, 1.0)
FACELESS_POLICY = ("frames without a face are not fed to the network: the GRU state is carried over them "
                   "unchanged (never advanced, never reset within a video), as the model's masking does; "
                   "their rows have face_found=0 and empty values")


class ModelError(Exception):
  """A model that cannot be used; `str()` names the path and the reason."""

  def __init__(self, path: str, reason: str):
    super().__init__(f"{path}: {reason}")
    self.path = str(path)
    self.reason = reason


class UtterancesError(ValueError):
  """An unusable `--utterances` file; `str()` names the file (and the line) and the reason."""


# ------------------------------------------------------------------------------------ model
@dataclasses.dataclass
class Predictor:
  """A trained network served chunk by chunk: `step` carries the GRU state.

  Attributes:
    config: the experiment the model was trained as.
    path: the model directory.
    kind: "saved_model", "workdir" or "tflite".
    choice: the post-processing applied to the `_post` columns.
    choice_source: where `choice` came from (a postprocess.json, or the paper's defaults).
    ranges: (valence (lo, hi), arousal (lo, hi)): the `_post` values are clipped to them.
    range_source: why those ranges.
  """

  config: configs.ExperimentConfig
  path: str
  kind: str
  choice: postprocess.PostprocessChoice
  choice_source: str
  _streaming: Callable = dataclasses.field(repr=False)
  _initial_state: Callable = dataclasses.field(repr=False)
  ranges: tuple[tuple[float, float], tuple[float, float]] = (VALENCE_RANGE, OMG_AROUSAL_RANGE)
  range_source: str = ""

  @property
  def image_size(self) -> int:
    return self.config.data.image_size

  def initial_state(self, batch_size: int = 1) -> np.ndarray:
    """Zeros `(batch_size, N, U)`: the state at the start of a video."""
    return self._initial_state(batch_size)

  def step(self, crops: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predictions of consecutive face crops of one video, and the state after them.

    Args:
      crops: uint8 `(T, S, S, 3)` RGB face crops at the model's input size, in order.
      state: from `initial_state` or the previous `step`.

    Returns:
      (float32 `(T, 2)` valence and arousal, the next state).
    """
    frames = np.asarray(crops, np.uint8)[np.newaxis]
    mask = np.ones(frames.shape[:2], np.float32)
    out = self._streaming(frames, mask, np.asarray(state, np.float32))
    return np.asarray(out["per_frame"])[0], np.asarray(out["state"])


def _read_config(path: str, config_path: str) -> configs.ExperimentConfig:
  try:
    with open(config_path) as f:
      return configs.experiment_from_dict(json.load(f))
  except (OSError, ValueError, TypeError, KeyError) as e:
    raise ModelError(path, f"unreadable experiment config {os.path.basename(config_path)} ({e})") from None


def _postprocess_choice(path: str, config: configs.ExperimentConfig) -> tuple[postprocess.PostprocessChoice, str]:
  """The model's tuned choice (postprocess.json), else the paper's median windows."""
  choice_path = os.path.join(path, "postprocess.json")
  if os.path.exists(choice_path):
    try:
      return postprocess.load_choice(choice_path), choice_path
    except ValueError as e:
      raise ModelError(path, str(e)) from None
  paper = config.postprocess or configs.PostprocessConfig()
  choice = postprocess.PostprocessChoice(
      median_window=(paper.median_window_valence, paper.median_window_arousal), smoothing_k=(0.0, 0.0),
      aggregate=config.data.utterance_aggregate)
  source = ("no postprocess.json beside the model: the paper's median windows (configs.PostprocessConfig: "
            f"valence {choice.median_window[0]}, arousal {choice.median_window[1]} frames), no smoothing")
  return choice, source


def _load_saved_model(path: str):
  import tensorflow as tf

  from omg_cnnrnn import export

  try:
    loaded = tf.saved_model.load(path)
  except Exception as e:  # noqa: BLE001 - TensorFlow raises many kinds for a bad directory.
    raise ModelError(path, f"not a loadable SavedModel ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
  signatures = getattr(loaded, "signatures", {})
  missing = [s for s in (export.STREAMING_SIGNATURE, export.INITIAL_STATE_SIGNATURE) if s not in signatures]
  if missing:
    raise ModelError(path, f"wrong model signature: the SavedModel lacks {missing} (has {sorted(signatures)}); "
                     "export it again with this version: python -m omg_cnnrnn.export --workdir=... --export_dir=...")
  streaming = signatures[export.STREAMING_SIGNATURE]
  specs = streaming.structured_input_signature[1]
  frames = specs.get("frames")
  if (sorted(specs) != ["frames", "mask", "state"] or frames.dtype != tf.uint8 or frames.shape.rank != 5
      or frames.shape[-1] != 3 or frames.shape[2] != frames.shape[3]):
    raise ModelError(path, f"wrong model signature: {export.STREAMING_SIGNATURE} takes {specs}, expected uint8 "
                     "frames (B, T, S, S, 3), float mask (B, T) and state (B, N, U)")
  config_path = os.path.join(path, "config.json")
  if not os.path.exists(config_path):
    raise ModelError(path, "no config.json beside the SavedModel (omg_cnnrnn.export writes one)")
  config = _read_config(path, config_path)
  if frames.shape[2] != config.data.image_size:
    raise ModelError(path, f"config.json says image_size {config.data.image_size}, the signature takes "
                     f"{frames.shape[2]}x{frames.shape[3]} frames")
  initial = signatures[export.INITIAL_STATE_SIGNATURE]

  def run(f, m, s):
    return streaming(frames=tf.constant(f), mask=tf.constant(m), state=tf.constant(s))

  def zeros(b):
    return initial(batch_size=tf.constant(b, tf.int32))["state"].numpy()

  return config, run, zeros


def _load_tflite(path: str):
  from omg_cnnrnn import tflite

  folder = os.path.dirname(os.path.abspath(path))
  config_path = os.path.join(folder, "config.json")
  if not os.path.exists(config_path):
    raise ModelError(path, "no config.json beside the .tflite file (omg_cnnrnn.export --tflite writes one)")
  config = _read_config(path, config_path)
  try:
    runner = tflite.TFLiteStreaming(path)
  except tflite.TFLiteError as e:
    raise ModelError(path, e.reason) from None
  if runner.image_size != config.data.image_size:
    raise ModelError(path, f"config.json says image_size {config.data.image_size}, the model takes "
                     f"{runner.image_size}x{runner.image_size} frames")
  return config, runner, runner.initial_state


def _load_workdir(path: str, which: str):
  import tensorflow as tf

  from omg_cnnrnn import export, workdir

  _read_config(path, os.path.join(path, "config.json"))  # Names the file if it is unreadable.
  try:
    model, config = workdir.load_workdir_model(path, which)
  except FileNotFoundError:
    raise ModelError(path, "no trained weights in the workdir (neither best/ nor checkpoints/)") from None
  except ValueError as e:
    raise ModelError(path, str(e)) from None
  module = export.ServingModule(model, config)

  def run(f, m, s):
    return {k: v.numpy() for k, v in module.serve_streaming(f, m, s).items()}

  def zeros(b):
    return module.initial_state(tf.constant(b, tf.int32))["state"].numpy()

  return config, run, zeros


def value_ranges(arousal_range: tuple[float, float] | str | None = None
                 ) -> tuple[tuple[tuple[float, float], tuple[float, float]], str]:
  """(valence range, arousal range) the `_post` values are clipped to, and why.

  Args:
    arousal_range: the arousal labels' range of the training data, `(lo, hi)` or "lo,hi";
      None: OMG's [0, 1] (every registered row trains on OMG).

  Raises:
    ValueError: not two finite numbers with lo < hi; names the value.
  """
  if arousal_range is None:
    return (VALENCE_RANGE, OMG_AROUSAL_RANGE), (
        "valence: the labels' [-1, 1]; arousal: OMG's training labels [0, 1] (SPEC; every registered row trains on "
        "OMG; a model trained on Aff-Wild labels takes --arousal_range=-1,1)")
  text = arousal_range
  try:
    if isinstance(arousal_range, str):
      arousal_range = [float(v) for v in arousal_range.split(",")]
    lo, hi = (float(v) for v in arousal_range)
  except (TypeError, ValueError):
    raise ValueError(f"arousal range {text!r} is not two numbers lo,hi") from None
  if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
    raise ValueError(f"arousal range {text!r} needs finite lo < hi")
  return (VALENCE_RANGE, (lo, hi)), f"valence: the labels' [-1, 1]; arousal: [{lo:g}, {hi:g}] as given"


def load_predictor(path: str, which: str = "best",
                   arousal_range: tuple[float, float] | str | None = None) -> Predictor:
  """The model at `path`: an `omg_cnnrnn.export` SavedModel directory, a training workdir,
  or a `.tflite` file of `omg_cnnrnn.export --tflite` (with its config.json beside it).

  Args:
    path: the directory.
    which: for a workdir, "best" (best-validation weights, else the latest checkpoint) or
      "latest".
    arousal_range: the training labels' arousal range (`value_ranges`), for the `_post` values.

  Raises:
    ModelError: missing path, neither kind of directory, no weights, weights of another
      network, a SavedModel without the streaming signature; names the path.
  """
  path = os.fspath(path)
  ranges, range_source = value_ranges(arousal_range)
  if not os.path.exists(path):
    raise ModelError(path, "model not found")
  if os.path.isfile(path) and path.lower().endswith(".tflite"):
    config, run, zeros = _load_tflite(path)
    choice, source = _postprocess_choice(os.path.dirname(os.path.abspath(path)), config)
    return Predictor(config=config, path=path, kind="tflite", choice=choice, choice_source=source,
                     _streaming=run, _initial_state=zeros, ranges=ranges, range_source=range_source)
  if not os.path.isdir(path):
    raise ModelError(path, "not a directory or a .tflite file: --model takes a SavedModel directory, a training "
                     "workdir or a .tflite file")
  if os.path.exists(os.path.join(path, "saved_model.pb")):
    kind = "saved_model"
    config, run, zeros = _load_saved_model(path)
  elif os.path.exists(os.path.join(path, "config.json")):
    kind = "workdir"
    config, run, zeros = _load_workdir(path, which)
  else:
    raise ModelError(path, "neither a SavedModel (no saved_model.pb) nor a training workdir (no config.json)")
  choice, source = _postprocess_choice(path, config)
  return Predictor(config=config, path=path, kind=kind, choice=choice, choice_source=source,
                   _streaming=run, _initial_state=zeros, ranges=ranges, range_source=range_source)


# ------------------------------------------------------------------------------- streaming
@dataclasses.dataclass
class FrameResult:
  """One frame's row of `frames.csv`."""

  frame: int
  time: float
  face_found: bool
  box: np.ndarray  # float32 [4], NaN where no face
  prediction: np.ndarray  # float [2] valence, arousal; NaN where no face
  post: np.ndarray = dataclasses.field(default_factory=lambda: np.full(2, np.nan))
  post_ready: bool = False  # `post` holds its final value (face-less rows: NaN, ready at once)

  def row(self) -> tuple:
    return (self.frame, self.time, int(self.face_found), *self.box.tolist(), *self.prediction.tolist(),
            *self.post.tolist())


def resize_crop(crop: np.ndarray, image_size: int) -> np.ndarray:
  """A face crop at the model's input size: area resizing, as the training pipeline does."""
  if crop.shape[0] == image_size and crop.shape[1] == image_size:
    return crop
  return cv2.resize(crop, (image_size, image_size), interpolation=cv2.INTER_AREA)


def stream_predictions(predictor: Predictor, frames: Iterable[tuple[float, bool, np.ndarray, np.ndarray]],
                       chunk_frames: int = 80) -> Iterator[FrameResult]:
  """Per-frame predictions of one video, chunk by chunk, the GRU state carried.

  Args:
    predictor: from `load_predictor`.
    frames: `(time, face_found, box, crop)` per frame in order (e.g. from a `FaceTracker`).
    chunk_frames: frames collected before the network runs (its batch); memory is
      proportional to it, the results do not depend on it.

  Yields:
    One `FrameResult` per frame, in order; frames without a face never reach the network
    (module docstring) and get NaN predictions.
  """
  if chunk_frames < 1:
    raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
  state = predictor.initial_state()
  pending: list[FrameResult] = []
  crops: list[np.ndarray] = []

  def flush():
    nonlocal state
    if crops:
      values, state = predictor.step(np.stack(crops), state)
      with_face = (r for r in pending if r.face_found)
      for r, v in zip(with_face, values):
        r.prediction = v.astype(np.float64)
    out = list(pending)
    pending.clear()
    crops.clear()
    return out

  for index, (t, found, box, crop) in enumerate(frames):
    pending.append(FrameResult(index, float(t), bool(found), np.asarray(box, np.float32), np.full(2, np.nan)))
    if found:
      crops.append(resize_crop(crop, predictor.image_size))
    if len(pending) >= chunk_frames:
      yield from flush()
  yield from flush()


class StreamingMedianFilter:
  """`postprocess.median_filter_frames` of a sequence that arrives in pieces.

  A value is final once `max(windows) // 2` later values have arrived (or at `finish`);
  memory holds about a window of values. Results equal filtering the whole sequence at
  once, edge modes included.
  """

  def __init__(self, windows: tuple[int, ...], edge_modes: tuple[str, ...]):
    self.windows, self.edge_modes = tuple(windows), tuple(edge_modes)
    self.half = max(self.windows) // 2
    self._reset()

  def _reset(self) -> None:
    self._values: list[np.ndarray] = []
    self._start = 0  # index in the sequence of _values[0]
    self._done = 0  # values before this index were returned

  @property
  def pending(self) -> int:
    """Values pushed whose filtered value was not returned yet."""
    return self._start + len(self._values) - self._done

  def push(self, values: np.ndarray) -> np.ndarray:
    """Adds values `[k, D]`; returns the filtered values that became final, in order."""
    self._values.extend(np.asarray(values, np.float64).reshape(-1, len(self.windows)))
    return self._emit(final=False)

  def finish(self) -> np.ndarray:
    """The remaining filtered values (the sequence ends here); the filter starts afresh."""
    out = self._emit(final=True)
    self._reset()
    return out

  def _emit(self, final: bool) -> np.ndarray:
    total = self._start + len(self._values)
    stop = total if final else total - self.half
    if stop <= self._done:
      return np.zeros((0, len(self.windows)))
    # Rows in [done, stop) see neither padded end that the buffer adds and the whole
    # sequence would not: `half` values before them are kept (or the sequence starts
    # there), and `half` after them have arrived (or the sequence ends there).
    filtered = postprocess.median_filter_frames(np.stack(self._values), None, self.windows, self.edge_modes)
    out = filtered[self._done - self._start:stop - self._start]
    self._done = stop
    keep = max(self._start, stop - self.half)
    del self._values[:keep - self._start]
    self._start = keep
    return out


def clip_values(values: np.ndarray, ranges) -> np.ndarray:
  """`[..., 2]` valence, arousal clipped to `ranges` ((lo, hi) each); NaN stays NaN."""
  values = np.asarray(values, np.float64)
  lo = np.array([r[0] for r in ranges], np.float64)
  hi = np.array([r[1] for r in ranges], np.float64)
  return np.clip(values, lo, hi)


def postprocess_stream(results: Iterable[FrameResult], choice: postprocess.PostprocessChoice,
                       max_gap: int | None = None, ranges=None) -> Iterator[FrameResult]:
  """Fills `post` with the median filter of the frames with a face, keeping frame order.

  Args:
    results: from `stream_predictions`.
    choice: its `median_window` and `edge_mode` per dimension are used.
    max_gap: face-less frames after which the filter restarts (default: the longest
      window), which bounds how long a row waits for its value.
    ranges: ((lo, hi) valence, (lo, hi) arousal) the filtered values are clipped to
      (`Predictor.ranges`); None: not clipped. A median filter commutes with clipping, so
      this equals filtering the clipped values.
  """
  median = StreamingMedianFilter(choice.median_window, choice.edge_mode)
  max_gap = max(choice.median_window) if max_gap is None else max_gap
  queue: collections.deque[FrameResult] = collections.deque()
  waiting: collections.deque[FrameResult] = collections.deque()
  gap = 0

  def assign(values):
    if ranges is not None and len(values):
      values = clip_values(values, ranges)
    for v in values:
      r = waiting.popleft()
      r.post, r.post_ready = v, True

  def ready():
    while queue and (not queue[0].face_found or queue[0].post_ready):
      yield queue.popleft()

  for r in results:
    queue.append(r)
    if r.face_found:
      gap = 0
      waiting.append(r)
      assign(median.push(r.prediction[np.newaxis]))
    else:
      gap += 1
      if gap > max_gap and median.pending:
        assign(median.finish())
    yield from ready()
  assign(median.finish())
  yield from ready()
  assert not queue and not waiting


def is_capture(video) -> bool:
  """Whether `video` is an opened-capture-like object (`cv2.VideoCapture`: `read()`, `get()`)."""
  return callable(getattr(video, "read", None)) and callable(getattr(video, "get", None))


def source_info(video) -> dict:
  """`faces.probe_video` of a file, or the same keys for a `cv2.VideoCapture`.

  A capture's frame rate is what it reports (a camera or stream may report 0: then
  `fps` is None and times count frames at 25/s, as `capture_fps_source` says); its
  frame count is unknown (0); nothing is read from it here.

  Raises:
    faces.VideoError: an unusable file, or a capture that is not opened.
  """
  if not is_capture(video):
    return faces.probe_video(os.fspath(video))
  name = capture_name(video)
  if callable(getattr(video, "isOpened", None)) and not video.isOpened():
    raise faces.VideoError(name, "the capture is not opened (OpenCV could not open the camera, stream or file)")
  fps = float(video.get(cv2.CAP_PROP_FPS) or 0.0)
  ok = np.isfinite(fps) and 0 < fps < 1000
  return {"fps": fps if ok else None, "num_frames": max(0, int(video.get(cv2.CAP_PROP_FRAME_COUNT) or 0)),
          "width": int(video.get(cv2.CAP_PROP_FRAME_WIDTH) or 0), "height": int(video.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0),
          "duration": None}


DEFAULT_CAPTURE_FPS = 25.0


def capture_name(video) -> str:
  return getattr(video, "name", None) or f"<{type(video).__name__}>"


def read_capture(capture, fps: float | None) -> Iterator[tuple[float, np.ndarray]]:
  """`(time, RGB frame)` from a capture until it ends; the caller keeps (and releases) it."""
  rate = fps or DEFAULT_CAPTURE_FPS
  index = 0
  while True:
    ok, frame = capture.read()
    if not ok or frame is None:
      break
    yield index / rate, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    index += 1
  if index == 0:
    raise faces.VideoError(capture_name(capture), "the capture gave no frames")


def track_faces(frames: Iterable[tuple[float, np.ndarray]], face_config: faces.FaceConfig,
                detector: faces.Detector | None = None) -> Iterator[tuple[float, bool, np.ndarray, np.ndarray]]:
  """`(time, face_found, box, crop)` of `(time, RGB frame)` pairs, through one `faces.FaceTracker`."""
  tracker = faces.FaceTracker(face_config, detector)
  for t, frame in frames:
    found, box, crop = tracker.update(frame)
    yield t, found, box, crop


def face_frames(video, face_config: faces.FaceConfig, detector: faces.Detector | None = None,
                info: dict | None = None) -> Iterator[tuple[float, bool, np.ndarray, np.ndarray]]:
  """`(time, face_found, box, crop)` per decoded frame: the data preparation's face pipeline.

  `video` is a file or a `cv2.VideoCapture` (read to its end, not released).
  """
  if is_capture(video):
    info = info or source_info(video)
    yield from track_faces(read_capture(video, info["fps"]), face_config, detector)
    return
  for face in faces.iter_faces(video, face_config, detector):
    yield face.timestamp, face.face_found, face.box, face.crop


# ---------------------------------------------------------------------------- utterances
def read_utterances(path: str, video: str) -> pd.DataFrame:
  """Segments of one video from a CSV with `start` and `end` seconds (the OMG layout works).

  Args:
    path: the CSV. Columns `start`, `end` (seconds) are required; `utterance` names the
      segments (default `segment_<n>`); with a `video` column holding several videos,
      only the rows of `video` are kept.
    video: the video's name (the file name without extension, OMG's `video` column).

  Returns:
    DataFrame `video, utterance, start, end` in file order.

  Raises:
    UtterancesError: missing or unreadable file, missing columns, bad numbers (naming the
      line), end <= start, no row for the video, duplicate names.
  """
  if not os.path.isfile(path):
    raise UtterancesError(f"{path}: utterance file not found" if not os.path.exists(path)
                          else f"{path}: not a file")
  try:
    table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
  except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
    raise UtterancesError(f"{path}: not a readable CSV ({str(e).strip()})") from None
  table.columns = [str(c).strip() for c in table.columns]
  missing = [c for c in ("start", "end") if c not in table.columns]
  if missing:
    raise UtterancesError(f"{path}: missing columns {missing} (found {list(table.columns)})")
  table = table.apply(lambda c: c.str.strip())
  table["_line"] = np.arange(len(table)) + 2
  if "video" in table.columns and table["video"].nunique() > 1:
    table = table[table["video"] == video]
    if table.empty:
      raise UtterancesError(f"{path}: no row for video {video!r} (the file lists several videos; its "
                            "'video' column must name this one, the video file's name without extension)")
  if table.empty:
    raise UtterancesError(f"{path}: no utterance rows")
  out = pd.DataFrame({"video": video, "line": table["_line"].to_numpy()})
  for column in ("start", "end"):
    values = pd.to_numeric(table[column], errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
      line = int(out["line"].to_numpy()[bad][0])
      raise UtterancesError(f"{path}, line {line}: {column} {table[column].to_numpy()[bad][0]!r} is not a "
                            "number of seconds")
    out[column] = values
  bad = (out["end"] <= out["start"]) | (out["start"] < 0)
  if bad.any():
    row = out[bad].iloc[0]
    raise UtterancesError(f"{path}, line {row['line']}: segment [{row['start']}, {row['end']}) s is empty or "
                          "starts before 0")
  names = (table["utterance"].to_numpy() if "utterance" in table.columns
           else np.array([f"segment_{i}" for i in range(1, len(table) + 1)]))
  out["utterance"] = names
  duplicated = out["utterance"].duplicated()
  if duplicated.any():
    raise UtterancesError(f"{path}: utterance names repeat for video {video!r}: "
                          f"{sorted(set(out['utterance'][duplicated]))[:5]}")
  return out[["video", "utterance", "start", "end"]].reset_index(drop=True)


def utterance_table(frames: pd.DataFrame, segments: pd.DataFrame, fps: float,
                    choice: postprocess.PostprocessChoice, ranges=None) -> pd.DataFrame:
  """Per-segment values from the per-frame table (columns of `utterances.csv`).

  A segment `[start, end)` holds the frames shown at or after `start` and before `end`, by
  each frame's decoded `time` (`faces.at_or_after`), the frames data preparation cuts for it;
  for a constant-rate video that is `ceil(start fps) <= frame < ceil(end fps)`, and a
  variable-rate one is cut at the same frames as `prepare_omg` cuts it. `valence`/`arousal` are
  the network's (raw); the `_post` values are clipped to `ranges` (None: not clipped).
  """
  times = frames["time"].to_numpy(np.float64)
  found = frames["face_found"].to_numpy() > 0
  values = frames[list(metrics.DIMENSIONS)].to_numpy(np.float64)
  records, rows = [], []
  for seg in segments.itertuples(index=False):
    inside = faces.at_or_after(times, seg.start, fps) & ~faces.at_or_after(times, seg.end, fps)
    p, m = values[inside], found[inside]
    raw = metrics.utterance_value(p, m, choice.aggregate) if len(p) else np.full(2, np.nan)
    records.append({"video": seg.video, "utterance": seg.utterance, "frame_predictions": p.reshape(-1, 2),
                    "mask": m.astype(np.float64)})
    rows.append({"video": seg.video, "utterance": seg.utterance, "start": seg.start, "end": seg.end,
                 "frames": int(inside.sum()), "faces_found": int(m.sum()), "valence": raw[0], "arousal": raw[1]})
  table = pd.DataFrame(rows, columns=UTTERANCE_COLUMNS[:-2])
  post = postprocess.apply(choice, records)
  if ranges is not None:
    post = clip_values(post, ranges)
  table["valence_post"], table["arousal_post"] = post[:, 0], post[:, 1]
  return table


# ---------------------------------------------------------------------------- outputs
def plot(frames: pd.DataFrame, path: str, title: str = "", segments: pd.DataFrame | None = None,
         ranges=(VALENCE_RANGE, OMG_AROUSAL_RANGE)) -> None:
  """Valence and arousal over time, and the trajectory in the valence-arousal plane (PNG).

  Draws the `_post` columns (median-filtered, clipped to `ranges`): the raw network values
  can lie far outside the labels' range (a linear output), where the axes would hide the
  rest; how many frames' raw values were clipped is written on the figure.
  """
  import matplotlib

  matplotlib.use("Agg")
  from matplotlib import pyplot as plt

  fig, (ax, plane) = plt.subplots(1, 2, figsize=(14, 4.8), gridspec_kw={"width_ratios": [2.4, 1]})
  t = frames["time"].to_numpy()
  colours = {"valence": "tab:blue", "arousal": "tab:red"}
  notes = []
  for dim, (lo, hi) in zip(metrics.DIMENSIONS, ranges):
    ax.plot(t, frames[f"{dim}_post"], color=colours[dim], linewidth=1.6,
            label=f"{dim} (median-filtered, in [{lo:g}, {hi:g}])")
    raw = frames[dim].to_numpy(np.float64)
    outside = int(((raw < lo) | (raw > hi)).sum())
    if outside:
      notes.append(f"{dim}: {outside} frames' network values outside [{lo:g}, {hi:g}] "
                   f"(min {np.nanmin(raw):+.2f}, max {np.nanmax(raw):+.2f}), clipped")
  if notes:
    ax.text(0.01, 0.02, "\n".join(notes), transform=ax.transAxes, fontsize=7, color="0.3", va="bottom")
  missing = frames["face_found"].to_numpy() == 0
  if missing.any():
    ax.fill_between(t, 0, 1, where=missing, color="0.85", transform=ax.get_xaxis_transform(), step="mid",
                    label="no face", linewidth=0)
  if segments is not None:
    for seg in segments.itertuples(index=False):
      ax.axvline(seg.start, color="0.4", linewidth=0.6, linestyle=":")
  ax.axhline(0, color="0.6", linewidth=0.5)
  ax.set_xlabel("time (s)")
  ax.set_ylabel("prediction")
  ax.set_xlim(t[0] if len(t) else 0, t[-1] if len(t) > 1 else 1)
  ax.set_ylim(min(r[0] for r in ranges) - 0.05, max(r[1] for r in ranges) + 0.05)
  # Below the axes: clipped values sit on the range's edges, where a legend inside would hide them.
  ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), fontsize=8, ncol=3, frameon=False)
  ax.set_title(title, fontsize=9)

  valid = ~missing
  v = frames["valence_post"].to_numpy()[valid]
  a = frames["arousal_post"].to_numpy()[valid]
  plane.plot(v, a, color="0.7", linewidth=0.5, zorder=1)
  points = plane.scatter(v, a, c=t[valid], cmap="viridis", s=6, zorder=2, rasterized=True)
  fig.colorbar(points, ax=plane, label="time (s)")
  plane.axhline(0, color="0.6", linewidth=0.5)
  plane.axvline(0, color="0.6", linewidth=0.5)
  plane.set_xlim(ranges[0][0], ranges[0][1])
  plane.set_ylim(min(-1.0, ranges[1][0]), max(1.0, ranges[1][1]))
  plane.set_aspect("equal")
  plane.set_xlabel("valence (median-filtered, clipped)")
  plane.set_ylabel("arousal (median-filtered, clipped)")
  plane.set_title("valence-arousal trajectory", fontsize=9)
  fig.tight_layout()
  tmp = path + ".tmp.png"
  fig.savefig(tmp, dpi=110)
  plt.close(fig)
  os.replace(tmp, path)


def _gauge(image: np.ndarray, origin: tuple[int, int], width: int, value: float, label: str, colour) -> None:
  """A horizontal bar from the centre of [-1, 1] to `value`, with its label."""
  x, y = origin
  h = max(8, width // 12)
  cv2.rectangle(image, (x, y), (x + width, y + h), (40, 40, 40), -1)
  centre = x + width // 2
  if np.isfinite(value):
    end = int(round(centre + np.clip(value, -1, 1) * width / 2))
    cv2.rectangle(image, (min(centre, end), y), (max(centre, end), y + h), colour, -1)
    text = f"{label} {value:+.2f}"
  else:
    text = f"{label}  --"
  cv2.line(image, (centre, y - 2), (centre, y + h + 2), (255, 255, 255), 1)
  cv2.putText(image, text, (x + width + 6, y + h), cv2.FONT_HERSHEY_SIMPLEX, max(0.35, h / 25), (255, 255, 255),
              1, cv2.LINE_AA)


def write_annotated_video(video: str, frames_csv: str, path: str, fps: float) -> None:
  """The video with the face box and valence/arousal gauges (median-filtered values), as mp4.

  A second pass over the video, reading `frames.csv` alongside: nothing is held but
  one frame and a block of rows.
  """
  writer = None
  tmp = path + ".tmp.mp4"
  rows = pd.read_csv(frames_csv, chunksize=1024)
  block = iter(())
  try:
    for _, frame in faces.read_frames(video):
      row = next(block, None)
      if row is None:
        block = next(rows, pd.DataFrame()).itertuples(index=False)
        row = next(block, None)
        if row is None:
          raise faces.VideoError(video, f"decodes to more frames than {frames_csv} lists (changed meanwhile?)")
      image = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
      h, w = image.shape[:2]
      if writer is None:
        writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        if not writer.isOpened():
          raise OSError(f"{path}: cannot open a video writer (mp4v)")
      if row.face_found:
        cv2.rectangle(image, (int(row.x0), int(row.y0)), (int(row.x1), int(row.y1)), (80, 220, 80), 2)
      width = max(60, w // 4)
      _gauge(image, (10, h - 2 * (width // 12 + 10) - 4), width, row.valence_post, "valence", (230, 160, 40))
      _gauge(image, (10, h - (width // 12 + 10) - 4), width, row.arousal_post, "arousal", (60, 60, 230))
      writer.write(image)
  finally:
    if writer is not None:
      writer.release()
  if writer is None:
    raise faces.VideoError(video, "no decodable frames")
  os.replace(tmp, path)


def _counted(stream, bar):
  for item in stream:
    yield item
    bar.update(1)


def _stat(column: pd.Series, which: str) -> float | None:
  """Mean or population sd of a column's finite values (None without any)."""
  values = column.to_numpy(np.float64)
  values = values[np.isfinite(values)]
  if not len(values):
    return None
  return float(values.mean() if which == "mean" else values.std())


def _write_json(path: str, value: dict) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(value, f, indent=2, default=float)
    f.write("\n")
  os.replace(tmp, path)


def predict_video(predictor: Predictor, video, output_dir: str, utterances: str | None = None,
                  annotated_video: bool = False, chunk_frames: int = 80,
                  face_config: faces.FaceConfig = faces.FaceConfig(), detector: faces.Detector | None = None,
                  utterance_video: str | None = None, progress=False,
                  face_stream: Iterable[tuple[float, bool, np.ndarray, np.ndarray]] | None = None) -> dict:
  """Runs the model over a video and writes the outputs of the module docstring.

  Args:
    predictor: from `load_predictor`.
    video: any file OpenCV reads, or an opened `cv2.VideoCapture` (read to its end; not
      with `annotated_video`, which reads the video twice).
    output_dir: created if needed; existing outputs are replaced (each atomically).
    utterances: optional segment CSV (`read_utterances`).
    annotated_video: also write `annotated.mp4`.
    chunk_frames: frames per network call (memory, not results).
    face_config: detection, tracking and crop settings (data preparation's defaults).
    detector: a `faces.Detector` (None: MTCNN).
    utterance_video: the video's name in `utterances` (default: the file name without
      extension).
    progress: show a tqdm bar; or an object with `update(n)` (a shared bar) told of
      each frame.
    face_stream: the video's `face_frames` computed elsewhere (e.g. in a worker thread,
      `batch.predict_videos`); None: computed here.

  Returns:
    The summary written to `summary.json`.

  Raises:
    faces.VideoError: the video cannot be read (names the file).
    UtterancesError: a bad `utterances` file (names it); checked before the video runs.
  """
  capture = is_capture(video)
  if capture and annotated_video:
    raise ValueError(f"{capture_name(video)}: annotated_video needs a video file (it reads the video twice), "
                     "not a capture")
  video = video if capture else os.fspath(video)
  label = capture_name(video) if capture else video
  info = source_info(video)
  name = utterance_video or (os.path.splitext(os.path.basename(label))[0])
  fps = info["fps"] or DEFAULT_CAPTURE_FPS
  segments = read_utterances(utterances, name) if utterances else None
  os.makedirs(output_dir, exist_ok=True)
  frames_csv = os.path.join(output_dir, "frames.csv")
  tmp = frames_csv + ".tmp"
  began = time.perf_counter()
  stream = face_frames(video, face_config, detector, info) if face_stream is None else face_stream
  if callable(getattr(progress, "update", None)):
    stream = _counted(stream, progress)
  elif progress:
    from tqdm import tqdm

    stream = tqdm(stream, total=info["num_frames"] or None, unit="frame", desc=os.path.basename(label))
  results = postprocess_stream(stream_predictions(predictor, stream, chunk_frames), predictor.choice,
                               ranges=predictor.ranges)
  count = found = 0
  sums = np.zeros(2)
  try:
    with open(tmp, "w", newline="") as f:
      pd.DataFrame(columns=FRAME_COLUMNS).to_csv(f, index=False)
      block = []
      for r in results:
        block.append(r.row())
        count += 1
        if r.face_found:
          found += 1
          sums += r.prediction
        if len(block) >= chunk_frames:
          pd.DataFrame(block, columns=FRAME_COLUMNS).to_csv(f, header=False, index=False, float_format="%.8g")
          block.clear()
      pd.DataFrame(block, columns=FRAME_COLUMNS).to_csv(f, header=False, index=False, float_format="%.8g")
    os.replace(tmp, frames_csv)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  seconds = time.perf_counter() - began

  table = pd.read_csv(frames_csv, usecols=["frame", "time", "face_found", "valence", "arousal", "valence_post",
                                           "arousal_post"])
  outputs = {"frames": frames_csv, "plot": os.path.join(output_dir, "plot.png")}
  if segments is not None:
    outputs["utterances"] = os.path.join(output_dir, "utterances.csv")
    per_utterance = utterance_table(table, segments, fps, predictor.choice, predictor.ranges)
    per_utterance.to_csv(outputs["utterances"] + ".tmp", index=False, float_format="%.8g")
    os.replace(outputs["utterances"] + ".tmp", outputs["utterances"])
  plot(table, outputs["plot"], title=f"{os.path.basename(label)}  |  {predictor.config.name}", segments=segments,
       ranges=predictor.ranges)
  if annotated_video:
    outputs["annotated_video"] = os.path.join(output_dir, "annotated.mp4")
    write_annotated_video(video, frames_csv, outputs["annotated_video"], info["fps"])
  summary = {
      "video": label if capture else os.path.abspath(video), "fps": fps,
      "fps_source": "the video" if info["fps"] else f"the capture reports none: {DEFAULT_CAPTURE_FPS:g} assumed",
      "frame_size": [info["width"], info["height"]],
      "frames": count, "faces_found": found, "duration_s": count / fps,
      "mean_valence": sums[0] / found if found else None, "mean_arousal": sums[1] / found if found else None,
      # Of the values users read (median-filtered, clipped): the --videos index shows them.
      "post_stats": {dim: {"mean": _stat(table[f"{dim}_post"], "mean"), "sd": _stat(table[f"{dim}_post"], "sd")}
                     for dim in metrics.DIMENSIONS},
      "model": os.path.abspath(predictor.path), "model_kind": predictor.kind, "experiment": predictor.config.name,
      "image_size": predictor.image_size, "chunk_frames": chunk_frames,
      "face_config": dataclasses.asdict(face_config), "faceless_frames": FACELESS_POLICY,
      "postprocess": postprocess.choice_to_dict(predictor.choice) | {"search": None},
      "postprocess_source": predictor.choice_source,
      "value_ranges": {dim: list(r) for dim, r in zip(metrics.DIMENSIONS, predictor.ranges)},
      "value_ranges_source": predictor.range_source,
      "raw_outside_range": {dim: int(((table[dim] < lo) | (table[dim] > hi)).sum())
                            for dim, (lo, hi) in zip(metrics.DIMENSIONS, predictor.ranges)},
      "seconds": seconds, "frames_per_second": count / seconds if seconds > 0 else None,
      "outputs": outputs,
  }
  _write_json(os.path.join(output_dir, "summary.json"), summary)
  return summary


# ------------------------------------------------------------------------------- every face
TRACK_FRAME_COLUMNS = ("frame", "time", "track") + FRAME_COLUMNS[2:]


def _frames_of(video, info: dict) -> Iterator[tuple[float, np.ndarray]]:
  return read_capture(video, info["fps"]) if is_capture(video) else faces.read_frames(video)


def track_post(table: pd.DataFrame, choice: postprocess.PostprocessChoice, ranges,
               max_gap: int | None = None) -> np.ndarray:
  """`_post` values of `TRACK_FRAME_COLUMNS` rows: each track's frames filtered as one face's.

  Per track, the median filter runs over its frames in order, restarting after more than
  `max_gap` frames (default the longest window) without it, as `postprocess_stream` does
  for one face; then clipped to `ranges`. NaN for rows without a face.
  """
  max_gap = max(choice.median_window) if max_gap is None else max_gap
  post = np.full((len(table), 2), np.nan)
  found = table["face_found"].to_numpy() > 0
  for _, rows in table[found].groupby("track", sort=False):
    rows = rows.sort_values("frame")
    index = rows.index.to_numpy()
    frames = rows["frame"].to_numpy()
    values = rows[list(metrics.DIMENSIONS)].to_numpy(np.float64)
    starts = np.flatnonzero(np.diff(frames) > max_gap + 1) + 1
    for part in np.split(np.arange(len(rows)), starts):
      filtered = postprocess.median_filter_frames(values[part], None, choice.median_window, choice.edge_mode)
      post[table.index.get_indexer(index[part])] = clip_values(filtered, ranges)
  return post


def predict_all_faces(predictor: Predictor, video, output_dir: str, chunk_frames: int = 80,
                      face_config: faces.FaceConfig = faces.FaceConfig(), detector: faces.Detector | None = None,
                      progress=False) -> dict:
  """Every person in the video, each a track with its own GRU state (`--faces=all`).

  Faces are tracked by `tracking.MultiFaceTracker` (a stable id per person, re-identified on
  return). Each track is a sequence of its own: its crops go through the streaming network
  with its state (zeros at its first frame, carried over the frames it is absent, as for
  one face), chunk by chunk. Writes to `output_dir`:
  - `frames.csv`: one row per (frame, track) with a face, `TRACK_FRAME_COLUMNS` (`track` the
    id), and one row with an empty `track` and `face_found=0` for a frame without any face;
    `_post` per track as `track_post` says;
  - `plot_track<id>.png` per track; `summary.json` with per-track counts and statistics.
  The raw rows stream to disk chunk by chunk; the per-track filter reads back the numeric
  columns at the end (as the plot does).

  Raises:
    faces.VideoError: an unusable video (names it).
  """
  from omg_cnnrnn import tracking

  if chunk_frames < 1:
    raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
  capture = is_capture(video)
  video = video if capture else os.fspath(video)
  label = capture_name(video) if capture else video
  info = source_info(video)
  os.makedirs(output_dir, exist_ok=True)
  frames_csv = os.path.join(output_dir, "frames.csv")
  raw_csv = frames_csv + ".raw.tmp"
  began = time.perf_counter()
  stream = tracking.track_all(_frames_of(video, info), face_config, detector)
  if callable(getattr(progress, "update", None)):
    stream = _counted(stream, progress)
  elif progress:
    from tqdm import tqdm

    stream = tqdm(stream, total=info["num_frames"] or None, unit="frame", desc=os.path.basename(label))
  states: dict[int, np.ndarray] = {}
  rows: list[list] = []
  crops: dict[int, list[tuple[int, np.ndarray]]] = {}

  def flush(f):
    for track, items in crops.items():
      state = states[track] if track in states else predictor.initial_state()
      values, states[track] = predictor.step(np.stack([c for _, c in items]), state)
      for (i, _), v in zip(items, values):
        rows[i][-2:] = v.tolist()
    pd.DataFrame(rows, columns=TRACK_FRAME_COLUMNS[:-2]).to_csv(f, header=False, index=False, float_format="%.8g")
    rows.clear()
    crops.clear()

  count = 0
  try:
    with open(raw_csv, "w", newline="") as f:
      pd.DataFrame(columns=TRACK_FRAME_COLUMNS[:-2]).to_csv(f, index=False)
      for index, (t, found) in enumerate(stream):
        count += 1
        if not found:
          rows.append([index, t, None, 0] + [np.nan] * 6)
        for track, box, crop in found:
          crops.setdefault(track, []).append((len(rows), resize_crop(crop, predictor.image_size)))
          rows.append([index, t, track, 1, *box.tolist(), np.nan, np.nan])
        if count % chunk_frames == 0:
          flush(f)
      flush(f)
    table = pd.read_csv(raw_csv, dtype={"track": "Int64"})
    post = track_post(table, predictor.choice, predictor.ranges)
    table["valence_post"], table["arousal_post"] = post[:, 0], post[:, 1]
    table.to_csv(frames_csv + ".tmp", index=False, float_format="%.8g")
    os.replace(frames_csv + ".tmp", frames_csv)
  finally:
    for path in (raw_csv, frames_csv + ".tmp"):
      if os.path.exists(path):
        os.remove(path)
  seconds = time.perf_counter() - began
  tracks, outputs = [], {"frames": frames_csv}
  for track, part in table[table["face_found"] > 0].groupby("track"):
    plot_path = os.path.join(output_dir, f"plot_track{track}.png")
    plot(part, plot_path, title=f"{os.path.basename(label)}  |  track {track}  |  {predictor.config.name}",
         ranges=predictor.ranges)
    outputs[f"plot_track{track}"] = plot_path
    tracks.append({"track": int(track), "frames": len(part), "first_time": float(part["time"].min()),
                   "last_time": float(part["time"].max()),
                   **{f"{dim}_{k}": _stat(part[f"{dim}_post"], k) for dim in metrics.DIMENSIONS
                      for k in ("mean", "sd")}})
  fps = info["fps"] or DEFAULT_CAPTURE_FPS
  summary = {
      "video": label if capture else os.path.abspath(video), "fps": fps, "frames": count,
      "frames_with_a_face": int(table.loc[table["face_found"] > 0, "frame"].nunique()),
      # The --videos index reads these two: frames with any face, and statistics over every track's rows.
      "faces_found": int(table.loc[table["face_found"] > 0, "frame"].nunique()),
      "post_stats": {dim: {"mean": _stat(table[f"{dim}_post"], "mean"), "sd": _stat(table[f"{dim}_post"], "sd")}
                     for dim in metrics.DIMENSIONS},
      "tracks": tracks, "model": os.path.abspath(predictor.path), "model_kind": predictor.kind,
      "experiment": predictor.config.name, "chunk_frames": chunk_frames, "faces": "all",
      "face_config": dataclasses.asdict(face_config),
      "tracking": "tracking.MultiFaceTracker: detector on every frame, Hungarian assignment on motion, size and "
                  "appearance, lost tracks re-identified by appearance; a GRU state per track",
      "postprocess": postprocess.choice_to_dict(predictor.choice) | {"search": None},
      "postprocess_source": predictor.choice_source,
      "value_ranges": {dim: list(r) for dim, r in zip(metrics.DIMENSIONS, predictor.ranges)},
      "seconds": seconds, "frames_per_second": count / seconds if seconds > 0 else None, "outputs": outputs,
  }
  _write_json(os.path.join(output_dir, "summary.json"), summary)
  return summary


# ------------------------------------------------------------------------------------ CLI
def define_flags() -> None:
  """The command's flags (defined on first use, not at import)."""
  from absl import flags

  d = faces.FaceConfig()
  flags.DEFINE_string("model", None, "SavedModel directory (omg_cnnrnn.export), training workdir, or .tflite file "
                      "(omg_cnnrnn.export --tflite; config.json beside it). A SavedModel "
                      "is a program (its graph may read and write files): load only one from a trusted source. "
                      "For untrusted weights pass a training workdir (config.json + checkpoint tensors, no graph).")
  flags.DEFINE_string("video", None, "The video: any file OpenCV reads; or a live source: a camera index (0) or a "
                      "stream URL (rtsp://..., http://...), processed as frames arrive (omg_cnnrnn.live).")
  flags.DEFINE_bool("live", False, "Play --video (a file) at its real frame rate as a live source: frames the "
                    "model has no time for are dropped and counted, rows are printed and appended as computed.")
  flags.DEFINE_integer("max_frames", None, "Live: stop after this many processed frames.")
  flags.DEFINE_float("max_seconds", None, "Live: stop after this many seconds.")
  flags.DEFINE_bool("print_rows", True, "Live: print each frame's values as they are computed.")
  flags.DEFINE_string("videos", None, "Many videos instead of --video: a folder, a glob pattern or a list file "
                      "(one path a line). One folder per video in --output_dir and index.csv; videos already done "
                      "are skipped (resumable); a bad video is reported in the index while the others go through.")
  flags.DEFINE_integer("num_workers", 0, "With --videos: threads running the face pipeline of upcoming videos "
                       "ahead of the network (0: in line).")
  flags.DEFINE_string("output_dir", None, "Where frames.csv, plot.png, summary.json ... go.")
  flags.DEFINE_string("utterances", None, "Optional CSV of segments (start,end seconds; OMG layout works): "
                      "writes utterances.csv.")
  flags.DEFINE_string("utterance_video", None, "The video's name in --utterances' 'video' column "
                      "(default: the file name without extension).")
  flags.DEFINE_bool("annotated_video", False, "Also write annotated.mp4 (face box, valence/arousal gauges).")
  flags.DEFINE_integer("chunk_frames", 80, "Frames per network call: memory, not results, depends on it.")
  flags.DEFINE_string("arousal_range", None, "lo,hi: the arousal labels' range of the model's training data; "
                      "arousal_post is clipped to it (default 0,1: OMG's labels; -1,1 for Aff-Wild). valence_post is "
                      "clipped to [-1, 1]; the raw valence/arousal columns are never clipped.")
  flags.DEFINE_enum("which", "best", ["best", "latest"], "For a workdir: best-validation or latest weights.")
  flags.DEFINE_integer("crop_size", d.crop_size, "Face crop side before resizing to the model's input "
                       "(data preparation's --crop_size).")
  flags.DEFINE_float("margin", d.margin, "Crop margin (data preparation's --margin).")
  flags.DEFINE_integer("detect_every", d.detect_every, "Run the detector every k frames (optical flow between).")
  flags.DEFINE_float("detection_scale", d.detection_scale, "Downscale of the frame for whole-frame searches.")
  flags.DEFINE_integer("min_face_size", d.min_face_size, "Smallest face accepted, source pixels.")
  flags.DEFINE_enum("initial_target", d.initial_target, list(faces.INITIAL_TARGETS), "Which face to follow.")
  flags.DEFINE_enum("faces", "one", ["one", "all"], "one: follow one person (--target); all: every person as "
                    "a track with a stable id and its own GRU state, frames.csv rows per (frame, track), a plot per "
                    "track (omg_cnnrnn.tracking).")
  flags.DEFINE_string("target", None, "Which person (--faces=one): largest, left, right, center (the rule of "
                      "--initial_target), or a point x,y in pixels: the face there when faces first show.")
  flags.DEFINE_bool("progress", True, "Show a progress bar.")
  flags.mark_flags_as_required(["model", "output_dir"])
  # --helpshort lists the flags of the main module: the console script's, or this one's with -m.
  for name in flags.FLAGS.get_flags_for_module(__name__):
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], name)


def main(argv) -> None:
  from absl import flags

  if len(argv) > 1:
    raise SystemExit(f"omg-predict: unexpected arguments {argv[1:]}")
  f = flags.FLAGS
  try:
    face_config = faces.FaceConfig(crop_size=f.crop_size, margin=f.margin, detect_every=f.detect_every,
                                   detection_scale=f.detection_scale, min_face_size=f.min_face_size,
                                   initial_target=f.initial_target)
    if f.chunk_frames < 1:
      raise ValueError(f"--chunk_frames={f.chunk_frames} must be >= 1")
    if (f.video is None) == (f.videos is None):
      raise ValueError("give exactly one of --video (one video) and --videos (a folder, pattern or list file)")
    target = None
    if f.target is not None:
      from omg_cnnrnn import tracking

      target = tracking.parse_target(f.target)
      if f.faces == "all":
        raise ValueError("--target picks one person; --faces=all follows every person")
      if isinstance(target, str):
        if f.initial_target != faces.FaceConfig().initial_target and f.initial_target != target:
          raise ValueError(f"--target={target} and --initial_target={f.initial_target} disagree; give one")
        face_config = dataclasses.replace(face_config, initial_target=target)
    if f.videos is not None:
      if isinstance(target, tuple):
        raise ValueError("--target=x,y works with --video (a point in one video's first frame)")
      return _main_videos(f, face_config)
    if f.num_workers:
      raise ValueError("--num_workers applies to --videos only")
    from omg_cnnrnn import live

    if f.live or live.is_live_source(f.video):
      if f.faces == "all" or isinstance(target, tuple) or f.utterances or f.annotated_video:
        raise ValueError("a live source follows one face (--target=largest|left|right|center); --faces=all, --target=x,y, "
                         "--utterances and --annotated_video need a file")
      value_ranges(f.arousal_range)
      predictor = load_predictor(f.model, which=f.which, arousal_range=f.arousal_range)
      summary = live.run_live(predictor, f.video, f.output_dir, face_config=face_config, play_file=f.live,
                              max_frames=f.max_frames, max_seconds=f.max_seconds, quiet=not f.print_rows)
      print(json.dumps({k: summary[k] for k in ("frames_arrived", "frames_processed", "frames_dropped",
                                                "latency_ms")}))
      return
    # Cheap checks first: a bad video or segment file fails before the model loads.
    faces.probe_video(f.video)
    if f.utterances:
      read_utterances(f.utterances, f.utterance_video or os.path.splitext(os.path.basename(f.video))[0])
    value_ranges(f.arousal_range)  # A bad range fails before the model loads.
    if f.faces == "all" and (f.utterances or f.annotated_video):
      raise ValueError("--utterances and --annotated_video follow one face; not with --faces=all")
    predictor = load_predictor(f.model, which=f.which, arousal_range=f.arousal_range)
    if f.faces == "all":
      summary = predict_all_faces(predictor, f.video, f.output_dir, chunk_frames=f.chunk_frames,
                                  face_config=face_config, progress=f.progress)
    else:
      stream = None
      if isinstance(target, tuple):
        from omg_cnnrnn import tracking

        stream = tracking.follow_point(faces.read_frames(f.video), target, face_config)
      summary = predict_video(predictor, f.video, f.output_dir, utterances=f.utterances,
                              annotated_video=f.annotated_video, chunk_frames=f.chunk_frames,
                              face_config=face_config, utterance_video=f.utterance_video, progress=f.progress,
                              face_stream=stream)
  except (ModelError, faces.VideoError, UtterancesError, ValueError) as e:
    raise SystemExit(f"omg-predict: error: {e}") from None
  print(json.dumps({k: summary[k] for k in ("frames", "faces_found", "frames_per_second", "outputs")}))


def _main_videos(f, face_config: faces.FaceConfig) -> None:
  from omg_cnnrnn import batch

  if f.num_workers < 0:
    raise ValueError(f"--num_workers={f.num_workers} must be >= 0")
  if f.utterance_video:
    raise ValueError("--utterance_video names one video; with --videos each video's name is its file name")
  try:
    videos = batch.list_videos(f.videos)
  except batch.VideosError as e:
    raise ValueError(str(e)) from None
  if f.utterances:
    read_utterances_file_check(f.utterances)
  value_ranges(f.arousal_range)
  predictor = load_predictor(f.model, which=f.which, arousal_range=f.arousal_range)
  if f.faces == "all" and (f.utterances or f.annotated_video):
    raise ValueError("--utterances and --annotated_video follow one face; not with --faces=all")
  index = batch.predict_videos(predictor, videos, f.output_dir, face_config=face_config, faces_mode=f.faces,
                               chunk_frames=f.chunk_frames, num_workers=f.num_workers, progress=f.progress,
                               utterances=f.utterances, annotated_video=f.annotated_video)
  status = index["status"].astype(str)
  failed = index.loc[status.str.startswith("error"), "video"].tolist()
  print(json.dumps({"videos": len(index), "ok": int((status == "ok").sum()),
                    "done_earlier": int((status == "done earlier").sum()), "errors": len(failed),
                    "index": os.path.join(f.output_dir, "index.csv")}))
  if failed:
    raise SystemExit(f"omg-predict: {len(failed)} of {len(index)} videos failed (see index.csv): "
                     + ", ".join(failed[:10]) + (" ..." if len(failed) > 10 else ""))


def read_utterances_file_check(path: str) -> None:
  """Fails early on a missing or unreadable segment file (per-video rows are checked per video)."""
  if not os.path.isfile(path):
    raise UtterancesError(f"{path}: utterance file not found" if not os.path.exists(path) else f"{path}: not a file")


def run() -> None:
  """Console entry point `omg-predict`."""
  from absl import app

  define_flags()
  app.run(main)


if __name__ == "__main__":
  run()
