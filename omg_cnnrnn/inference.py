"""Running a trained model over videos: loading (`load_predictor`), streaming, the outputs.

The library behind `omg-predict` (`omg_cnnrnn.predict`, the command line), `omg_cnnrnn.api`,
`batch`, `live` and `tracking`. A `Predictor` is a SavedModel, a training workdir or a TFLite
file served chunk by chunk with the GRU state carried; `predict_video` and
`predict_all_faces` write a video's outputs.

`predict_video` writes to `output_dir`:
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
settings; crops of `--crop_size` resized to the model's input size by `data.inputs.resize_crop`,
the training input pipeline's own resize), `--chunk_frames` frames at a time go through the
streaming form of the network (`serving.ServingModule.serve_streaming`, also the
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

import dataclasses
import json
import os
import time
from typing import Callable, Iterable, Iterator

import cv2
import numpy as np
import pandas as pd

from omg_cnnrnn import configs, faces, metrics, postprocess
from omg_cnnrnn.data import records as record_files
from omg_cnnrnn.data.inputs import resize_crop
from omg_cnnrnn.data.labels import read_utterances
from omg_cnnrnn.postprocess import postprocess_stream
from omg_cnnrnn.visualize import plot, write_annotated_video

FRAME_COLUMNS = ("frame", "time", "face_found", "x0", "y0", "x1", "y1", "valence", "arousal",
                 "valence_post", "arousal_post")
UTTERANCE_COLUMNS = ("video", "utterance", "start", "end", "frames", "faces_found", "valence", "arousal",
                     "valence_post", "arousal_post")

VALENCE_RANGE, OMG_AROUSAL_RANGE = postprocess.VALENCE_RANGE, postprocess.OMG_AROUSAL_RANGE
clip_values = postprocess.clip_values
FACELESS_POLICY = ("frames without a face are not fed to the network: the GRU state is carried over them "
                   "unchanged (never advanced, never reset within a video), as the model's masking does; "
                   "their rows have face_found=0 and empty values")


class ModelError(Exception):
  """A model that cannot be used; `str()` names the path and the reason."""

  def __init__(self, path: str, reason: str):
    super().__init__(f"{path}: {reason}")
    self.path = str(path)
    self.reason = reason


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

  from omg_cnnrnn import serving

  try:
    loaded = tf.saved_model.load(path)
  except Exception as e:  # noqa: BLE001 - TensorFlow raises many kinds for a bad directory.
    raise ModelError(path, f"not a loadable SavedModel ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
  signatures = getattr(loaded, "signatures", {})
  missing = [s for s in (serving.STREAMING_SIGNATURE, serving.INITIAL_STATE_SIGNATURE) if s not in signatures]
  if missing:
    raise ModelError(path, f"wrong model signature: the SavedModel lacks {missing} (has {sorted(signatures)}); "
                     "export it again with this version: python -m omg_cnnrnn.export --workdir=... --export_dir=...")
  streaming = signatures[serving.STREAMING_SIGNATURE]
  specs = streaming.structured_input_signature[1]
  frames = specs.get("frames")
  if (sorted(specs) != ["frames", "mask", "state"] or frames.dtype != tf.uint8 or frames.shape.rank != 5
      or frames.shape[-1] != 3 or frames.shape[2] != frames.shape[3]):
    raise ModelError(path, f"wrong model signature: {serving.STREAMING_SIGNATURE} takes {specs}, expected uint8 "
                     "frames (B, T, S, S, 3), float mask (B, T) and state (B, N, U)")
  config_path = os.path.join(path, "config.json")
  if not os.path.exists(config_path):
    raise ModelError(path, "no config.json beside the SavedModel (omg_cnnrnn.export writes one)")
  config = _read_config(path, config_path)
  if frames.shape[2] != config.data.image_size:
    raise ModelError(path, f"config.json says image_size {config.data.image_size}, the signature takes "
                     f"{frames.shape[2]}x{frames.shape[3]} frames")
  initial = signatures[serving.INITIAL_STATE_SIGNATURE]

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

  from omg_cnnrnn import serving, workdir

  _read_config(path, os.path.join(path, "config.json"))  # Names the file if it is unreadable.
  try:
    model, config = workdir.load_workdir_model(path, which)
  except FileNotFoundError:
    raise ModelError(path, "no trained weights in the workdir (neither best/ nor checkpoints/)") from None
  except ValueError as e:
    raise ModelError(path, str(e)) from None
  module = serving.ServingModule(model, config)

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
  record_files.write_atomic(path, json.dumps(value, indent=2, default=float) + "\n")


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
  with record_files.atomic_output(frames_csv) as tmp, open(tmp, "w", newline="") as f:
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
  seconds = time.perf_counter() - began

  table = pd.read_csv(frames_csv, usecols=["frame", "time", "face_found", "valence", "arousal", "valence_post",
                                           "arousal_post"])
  outputs = {"frames": frames_csv, "plot": os.path.join(output_dir, "plot.png")}
  if segments is not None:
    outputs["utterances"] = os.path.join(output_dir, "utterances.csv")
    per_utterance = utterance_table(table, segments, fps, predictor.choice, predictor.ranges)
    with record_files.atomic_output(outputs["utterances"]) as tmp:
      per_utterance.to_csv(tmp, index=False, float_format="%.8g")
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
  raw_csv = record_files.temporary_beside(frames_csv, ".raw")  # A spool, removed below.
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
    with record_files.atomic_output(frames_csv) as tmp:
      table.to_csv(tmp, index=False, float_format="%.8g")
  finally:
    if os.path.exists(raw_csv):
      os.remove(raw_csv)
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
