"""The Python API of video prediction: `omg_cnnrnn.load(path)` and what it returns.

    import omg_cnnrnn
    model = omg_cnnrnn.load("checkpoints/demo/saved_model")   # or a training workdir, or a .tflite
    frames = model.predict_video("clip.mp4")                  # pandas DataFrame, frames.csv's columns
    frames = model.predict_video(cv2.VideoCapture(0), max_frames=250)  # any opened capture
    tracks = model.predict_video("clip.mp4", faces="all")   # every person: rows per (frame, track)
    frames = model.predict_video("clip.mp4", target=(320, 180))  # the person at that point
    values = model.predict_faces(crops)   # uint8 (T, H, W, 3) RGB crops you already have;
    values = model.predict_faces(more)    # ... the GRU state carries on from the last call
    model.reset()                         # a new person or a new video: state back to zeros

`predict_video` runs exactly what `omg-predict` runs (the same face pipeline, the streaming
network with its state carried chunk by chunk, the median filter, the clipping of the
`_post` columns: `omg_cnnrnn.inference`), and returns the rows of `frames.csv` instead of
writing them (or writes every output too, with `output_dir`). `predict_faces` feeds crops
straight to the network: no detection, no filter (it cannot see later frames); its state is
the model object's own, separate from `predict_video`'s (each `predict_video` call starts
from zeros, as a new video does).

Trust: loading a SavedModel runs its graph (a program): load only trusted ones; a training
workdir reads numbers only (`omg_cnnrnn.predict` docstring, Trust).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile

import numpy as np
import pandas as pd

from omg_cnnrnn import faces, inference, postprocess, tracking

FACE_COLUMNS = ("valence", "arousal", "valence_clipped", "arousal_clipped")


class EmotionModel:
  """A loaded model: per-frame valence and arousal of videos or of face crops.

  Attributes:
    predictor: the underlying `inference.Predictor` (config, path, post-processing, ranges).
    face_config: detection, tracking and crop settings `predict_video` uses by default.
    chunk_frames: frames per network call (memory, not results).
  """

  def __init__(self, predictor: inference.Predictor, face_config: faces.FaceConfig = faces.FaceConfig(),
               chunk_frames: int = 80):
    if chunk_frames < 1:
      raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
    self.predictor = predictor
    self.face_config = face_config
    self.chunk_frames = int(chunk_frames)
    self.reset()

  def __repr__(self) -> str:
    return (f"EmotionModel({self.predictor.path!r}, kind={self.predictor.kind!r}, "
            f"experiment={self.predictor.config.name!r}, image_size={self.image_size})")

  @property
  def image_size(self) -> int:
    """The network's input side; `predict_faces` resizes other crops to it."""
    return self.predictor.image_size

  @property
  def ranges(self) -> tuple[tuple[float, float], tuple[float, float]]:
    """(valence, arousal) (lo, hi) ranges the clipped / `_post` values are clipped to."""
    return self.predictor.ranges

  @property
  def state(self) -> np.ndarray:
    """`predict_faces`' GRU state `(1, N, U)` (a copy); N = 0 for a CNN-only model."""
    return np.array(self._state)

  def reset(self) -> None:
    """`predict_faces` starts again from the zero state (a new person or video)."""
    self._state = self.predictor.initial_state(1)

  # ------------------------------------------------------------------------------ videos
  def predict_video(self, video, output_dir: str | None = None, *, face_config: faces.FaceConfig | None = None,
                    detector: faces.Detector | None = None, chunk_frames: int | None = None,
                    max_frames: int | None = None, progress: bool = False, faces: str = "one", target=None,
                    **outputs) -> pd.DataFrame:
    """Per-frame valence and arousal of a video, as a DataFrame with `frames.csv`'s columns.

    Args:
      video: a video file (path), or an opened `cv2.VideoCapture` (a file, camera or
        stream), read to its end or to `max_frames`; the caller keeps and releases it.
      output_dir: also write `omg-predict`'s outputs there (frames.csv, plot.png,
        summary.json ...); the DataFrame is then read back from frames.csv.
      face_config: detection/tracking settings (default: the model object's).
      detector: a `faces.Detector` (None: MTCNN).
      chunk_frames: frames per network call (default: the model object's).
      max_frames: stop after this many frames (a camera never ends); not with `output_dir`.
      progress: show a tqdm bar.
      faces: "one" (one person, `target`) or "all": every person a track
        (`inference.predict_all_faces`): then the rows are per (frame, track),
        `inference.TRACK_FRAME_COLUMNS`.
      target: with faces="one", which person: "largest", "left", "right", "center", or a
        point (x, y) in pixels (the face there when faces first show).
      **outputs: with `output_dir`, `inference.predict_video`'s `utterances`,
        `annotated_video`, `utterance_video`.

    Returns:
      One row per frame: `inference.FRAME_COLUMNS` (`frame`, `time`, `face_found`, the box,
      raw `valence`/`arousal`, median-filtered and clipped `valence_post`/`arousal_post`);
      the values are NaN where no face was found.

    Raises:
      faces.VideoError: an unreadable video or capture (names it).
      ValueError: bad arguments.
    """
    face_config = face_config or self.face_config
    chunk = int(chunk_frames or self.chunk_frames)
    if faces not in ("one", "all"):
      raise ValueError(f"faces must be 'one' or 'all', got {faces!r}")
    point = None
    if target is not None:
      if faces == "all":
        raise ValueError("target picks one person; faces='all' follows every person")
      target = tracking.parse_target(target if isinstance(target, str) else ",".join(str(v) for v in target))
      if isinstance(target, str):
        face_config = dataclasses.replace(face_config, initial_target=target)
      else:
        point = target
    if faces == "all":
      if max_frames is not None or outputs:
        raise ValueError(f"faces='all' takes neither max_frames nor {sorted(outputs)}")
      with tempfile.TemporaryDirectory() as tmp:
        folder = output_dir if output_dir is not None else tmp
        inference.predict_all_faces(self.predictor, video, folder, chunk_frames=chunk, face_config=face_config,
                                  detector=detector, progress=progress)
        return pd.read_csv(os.path.join(folder, "frames.csv"), dtype={"track": "Int64"})
    if not inference.is_capture(video):
      video = os.fspath(video)
    stream = None
    if point is not None:
      stream = tracking.follow_point(inference._frames_of(video, inference.source_info(video)), point, face_config,
                                     detector)
    if output_dir is not None:
      if max_frames is not None:
        raise ValueError("max_frames is not supported with output_dir (the outputs describe the whole video)")
      inference.predict_video(self.predictor, video, output_dir, chunk_frames=chunk, face_config=face_config,
                            detector=detector, progress=progress, face_stream=stream, **outputs)
      return read_frames_csv(os.path.join(output_dir, "frames.csv"))
    if outputs:
      raise ValueError(f"{sorted(outputs)} need output_dir")
    if max_frames is not None and max_frames < 1:
      raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    info = inference.source_info(video)
    if stream is None:
      stream = inference.face_frames(video, face_config, detector, info)
    if max_frames is not None:
      stream = _first(stream, max_frames)
    if progress:
      from tqdm import tqdm

      stream = tqdm(stream, total=max_frames or info["num_frames"] or None, unit="frame")
    results = postprocess.postprocess_stream(inference.stream_predictions(self.predictor, stream, chunk),
                                         self.predictor.choice, ranges=self.predictor.ranges)
    return _typed(pd.DataFrame([r.row() for r in results], columns=inference.FRAME_COLUMNS))

  # ------------------------------------------------------------------------------- crops
  def predict_faces(self, crops) -> pd.DataFrame:
    """Valence and arousal of consecutive face crops of one person; the state carries on.

    Args:
      crops: uint8 RGB face crops `(T, H, W, 3)` in time order, or one `(H, W, 3)`; cut as
        `faces.crop_face` does (a square around the face with a 10% margin). Crops of
        another size are resized (area) to `image_size`.

    Returns:
      T rows: the network's raw `valence`, `arousal` and the same clipped to `ranges`
      (`valence_clipped`, `arousal_clipped`). No median filter: it would need later frames.

    Raises:
      ValueError: not uint8, not RGB, or the wrong number of dimensions (says what it got).
    """
    crops = np.asarray(crops)
    shape = crops.shape
    if crops.dtype != np.uint8:
      raise ValueError(f"predict_faces takes uint8 RGB crops (0-255), got dtype {crops.dtype}")
    if crops.ndim == 3 and shape[-1] == 3:
      crops = crops[np.newaxis]
    if crops.ndim != 4 or crops.shape[-1] != 3 or min(crops.shape[1:3]) < 1:
      raise ValueError(f"predict_faces takes crops (T, H, W, 3) or one (H, W, 3), got shape {shape}")
    values = np.zeros((len(crops), 2), np.float64)
    for a in range(0, len(crops), self.chunk_frames):
      piece = np.stack([inference.resize_crop(c, self.image_size) for c in crops[a:a + self.chunk_frames]])
      out, self._state = self.predictor.step(piece, self._state)
      values[a:a + len(piece)] = out
    clipped = inference.clip_values(values, self.ranges)
    return pd.DataFrame(np.concatenate([values, clipped], axis=1), columns=FACE_COLUMNS)


def _first(stream, n: int):
  for i, item in enumerate(stream):
    if i >= n:
      return
    yield item


def _typed(table: pd.DataFrame) -> pd.DataFrame:
  table["frame"] = table["frame"].astype(np.int64)
  table["face_found"] = table["face_found"].astype(np.int64)
  for column in inference.FRAME_COLUMNS[3:]:
    table[column] = table[column].astype(np.float64)
  return table


def read_frames_csv(path: str) -> pd.DataFrame:
  """A `frames.csv` as the DataFrame `predict_video` returns."""
  return _typed(pd.read_csv(path)[list(inference.FRAME_COLUMNS)])


def load(path: str, which: str = "best", arousal_range=None, face_config: faces.FaceConfig = faces.FaceConfig(),
         chunk_frames: int = 80) -> EmotionModel:
  """Loads a model for prediction.

  Args:
    path: an `omg_cnnrnn.export` SavedModel directory, a training workdir, or a `.tflite`
      file of `omg_cnnrnn.export --tflite` (its config.json beside it).
    which: for a workdir, "best" or "latest" weights.
    arousal_range: the training labels' arousal range `(lo, hi)` (default OMG's (0, 1)); the
      clipped values use it.
    face_config: `predict_video`'s default detection and tracking settings.
    chunk_frames: frames per network call.

  Raises:
    inference.ModelError: no usable model at `path` (names it and why).
  """
  return EmotionModel(inference.load_predictor(path, which=which, arousal_range=arousal_range), face_config,
                      chunk_frames)


__all__ = ["EmotionModel", "load", "read_frames_csv", "FACE_COLUMNS"]
