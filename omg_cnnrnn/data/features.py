"""Feature keys of the prepared TFRecords, defined once, with the encoder and decoders.

One `tf.train.SequenceExample` per utterance (OMG) or per video (Aff-Wild):

context
  video, utterance, dataset, split, source (str); valence, arousal, fps (float);
  emotion (int, -1 where absent); num_frames (int); frame_width, frame_height (int)
per-frame lists (one entry per decoded frame, never dropped)
  frames (JPEG bytes of the RGB face crop; a black crop where no face), face_found
  (int 0/1), detected (int 0/1: the detector itself fired, rather than the tracker),
  boxes (float x0, y0, x1, y1 in source-video pixels, NaN where no face), timestamp
  (float seconds from the start of the source file), frame_valence, frame_arousal
  (float; OMG: the utterance's label on every frame), label_mask (int 0/1: 1 where the
  frame's label is valid; Aff-Wild2: 0 on its -5 frames)

The writer (`encode_example`), the tf.data reader (`decode_example`, usable inside
`Dataset.map`; the 0/1 lists come back as bool), the context-only reader
(`decode_context`) and the NumPy reader (`decode_numpy`) all use the constants below,
and tests build fakes with `encode_example`, so a key is spelled in one place only.
`serialize` gives bytes that depend only on the content (what byte-identical shards need).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

# Context keys.
VIDEO = "video"
UTTERANCE = "utterance"
DATASET = "dataset"
SPLIT = "split"
SOURCE = "source"
VALENCE = "valence"
AROUSAL = "arousal"
EMOTION = "emotion"
FPS = "fps"
NUM_FRAMES = "num_frames"
FRAME_WIDTH = "frame_width"
FRAME_HEIGHT = "frame_height"
# Per-frame keys.
FRAMES = "frames"
FACE_FOUND = "face_found"
DETECTED = "detected"
BOX = "boxes"
TIMESTAMP = "timestamp"
FRAME_VALENCE = "frame_valence"
FRAME_AROUSAL = "frame_arousal"
LABEL_MASK = "label_mask"

_CONTEXT_STR = (VIDEO, UTTERANCE, DATASET, SPLIT, SOURCE)
_CONTEXT_FLOAT = (VALENCE, AROUSAL, FPS)
_CONTEXT_INT = (EMOTION, NUM_FRAMES, FRAME_WIDTH, FRAME_HEIGHT)
# Stored as int64 0/1 (SequenceExample has no bool), decoded as bool.
_SEQUENCE_BOOL = (FACE_FOUND, DETECTED, LABEL_MASK)

CONTEXT_SPEC = {
    **{k: tf.io.FixedLenFeature([], tf.string) for k in _CONTEXT_STR},
    **{k: tf.io.FixedLenFeature([], tf.float32) for k in _CONTEXT_FLOAT},
    **{k: tf.io.FixedLenFeature([], tf.int64) for k in _CONTEXT_INT},
}
SEQUENCE_SPEC = {
    FRAMES: tf.io.FixedLenSequenceFeature([], tf.string),
    FACE_FOUND: tf.io.FixedLenSequenceFeature([], tf.int64),
    DETECTED: tf.io.FixedLenSequenceFeature([], tf.int64),
    BOX: tf.io.FixedLenSequenceFeature([4], tf.float32),
    TIMESTAMP: tf.io.FixedLenSequenceFeature([], tf.float32),
    FRAME_VALENCE: tf.io.FixedLenSequenceFeature([], tf.float32),
    FRAME_AROUSAL: tf.io.FixedLenSequenceFeature([], tf.float32),
    LABEL_MASK: tf.io.FixedLenSequenceFeature([], tf.int64),
}


def _bytes(v):
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode() if isinstance(v, str) else v]))


def _floats(v):
  return tf.train.Feature(float_list=tf.train.FloatList(value=np.atleast_1d(np.asarray(v, np.float32)).tolist()))


def _ints(v):
  return tf.train.Feature(int64_list=tf.train.Int64List(value=np.atleast_1d(np.asarray(v, np.int64)).tolist()))


def encode_jpeg(crop: np.ndarray, quality: int = 95) -> bytes:
  """RGB uint8 crop -> JPEG bytes (TensorFlow's encoder, so reading back needs nothing else)."""
  return tf.io.encode_jpeg(np.ascontiguousarray(crop, dtype=np.uint8), quality=quality).numpy()


def encode_example(*, video: str, utterance: str, valence: float, arousal: float, crops=None, jpegs=None,
                   face_found, boxes, timestamps, frame_valence=None, frame_arousal=None, label_mask=None,
                   detected=None, emotion: int = -1, fps: float = 0.0, dataset: str = "omg", split: str = "",
                   source: str = "", frame_size=(0, 0), jpeg_quality: int = 95) -> tf.train.SequenceExample:
  """Builds the SequenceExample of one utterance (Aff-Wild: of one video).

  Args:
    video: video id (OMG: the CSV's `video`; Aff-Wild: the file stem).
    utterance: utterance id (OMG: the CSV's `utterance`, e.g. `utterance_3.mp4`).
    valence: utterance-level valence (Aff-Wild: the mean of the valid frame labels).
    arousal: utterance-level arousal, likewise.
    crops: uint8 [T, S, S, 3] RGB face crops; or give `jpegs`.
    jpegs: already-encoded JPEG bytes [T] instead of `crops`.
    face_found: bool [T].
    boxes: float [T, 4] x0, y0, x1, y1 in source pixels (NaN where no face).
    timestamps: float [T] seconds.
    frame_valence: float [T] per-frame labels (default: `valence` on every frame).
    frame_arousal: float [T], likewise.
    label_mask: bool [T], 1 where the frame's label is valid (default: all).
    detected: bool [T], where the detector itself fired (default: `face_found`).
    emotion: EmotionMaxVote class 0-6, -1 where absent.
    fps: frame rate of the source.
    dataset: "omg", "affwild" or "affwild2".
    split: split name ("train", "validation", ...).
    source: path of the source video.
    frame_size: (width, height) of the source video.
    jpeg_quality: quality of the crops' JPEG encoding.

  Returns:
    The `tf.train.SequenceExample`.

  Raises:
    ValueError: no frames, crops of the wrong shape, or per-frame lists of other lengths
      than the frames (the message names video/utterance).
  """
  if (crops is None) == (jpegs is None):
    raise ValueError(f"{video}/{utterance}: give exactly one of crops and jpegs")
  if jpegs is None:
    crops = np.asarray(crops)
    if crops.ndim != 4 or crops.shape[-1] != 3 or crops.dtype != np.uint8:
      raise ValueError(f"{video}/{utterance}: crops must be uint8 [T, S, S, 3], got {crops.dtype} {crops.shape}")
    jpegs = [encode_jpeg(c, jpeg_quality) for c in crops]
  n = len(jpegs)
  if not n:
    raise ValueError(f"{video}/{utterance}: no frames")
  face_found = np.asarray(face_found, bool).reshape(-1)
  boxes = np.asarray(boxes, np.float32)
  if boxes.ndim != 2 or boxes.shape[1] != 4:
    raise ValueError(f"{video}/{utterance}: boxes must be [T, 4], got {boxes.shape}")
  timestamps = np.asarray(timestamps, np.float32).reshape(-1)
  frame_valence = np.full(n, valence, np.float32) if frame_valence is None else np.asarray(frame_valence, np.float32)
  frame_arousal = np.full(n, arousal, np.float32) if frame_arousal is None else np.asarray(frame_arousal, np.float32)
  label_mask = np.ones(n, bool) if label_mask is None else np.asarray(label_mask, bool)
  detected = face_found if detected is None else np.asarray(detected, bool)
  for name, arr in (("face_found", face_found), ("boxes", boxes), ("timestamps", timestamps),
                    ("frame_valence", frame_valence), ("frame_arousal", frame_arousal),
                    ("label_mask", label_mask), ("detected", detected)):
    if len(arr) != n:
      raise ValueError(f"{video}/{utterance}: {name} has {len(arr)} entries for {n} frames")
  context = tf.train.Features(feature={
      VIDEO: _bytes(video), UTTERANCE: _bytes(utterance), DATASET: _bytes(dataset), SPLIT: _bytes(split),
      SOURCE: _bytes(source), VALENCE: _floats(valence), AROUSAL: _floats(arousal), FPS: _floats(fps),
      EMOTION: _ints(emotion), NUM_FRAMES: _ints(n), FRAME_WIDTH: _ints(frame_size[0]),
      FRAME_HEIGHT: _ints(frame_size[1]),
  })
  lists = {
      FRAMES: [_bytes(j) for j in jpegs],
      FACE_FOUND: [_ints(int(v)) for v in face_found],
      DETECTED: [_ints(int(v)) for v in detected],
      BOX: [_floats(b) for b in boxes],
      TIMESTAMP: [_floats(t) for t in timestamps],
      FRAME_VALENCE: [_floats(v) for v in frame_valence],
      FRAME_AROUSAL: [_floats(v) for v in frame_arousal],
      LABEL_MASK: [_ints(int(v)) for v in label_mask],
  }
  feature_lists = tf.train.FeatureLists(feature_list={k: tf.train.FeatureList(feature=v) for k, v in lists.items()})
  return tf.train.SequenceExample(context=context, feature_lists=feature_lists)


def serialize(example: tf.train.SequenceExample) -> bytes:
  """The example's bytes, identical in every process for equal content.

  Context and feature lists are protobuf maps, whose default serialization order can
  differ between processes; sorted keys make a record's bytes a function of its content
  (what byte-identical shards from resumed or parallel runs need).
  """
  return example.SerializeToString(deterministic=True)


def decode_example(serialized: tf.Tensor) -> dict:
  """Serialized SequenceExample -> dict of tensors.

  Pure and graph-compatible: use it in `tf.data.Dataset.map`. Frames stay JPEG strings
  (decode them after windowing/shuffling, where it is cheapest).

  Args:
    serialized: scalar string tensor.

  Returns:
    Context scalars under the context keys, and per-frame tensors: `frames` string [T],
    `face_found`, `detected`, `label_mask` bool [T], `boxes` float32 [T, 4], `timestamp`,
    `frame_valence`, `frame_arousal` float32 [T].
  """
  context, sequence = tf.io.parse_single_sequence_example(
      serialized, context_features=CONTEXT_SPEC, sequence_features=SEQUENCE_SPEC)
  for k in _SEQUENCE_BOOL:
    sequence[k] = tf.cast(sequence[k], tf.bool)
  return {**context, **sequence}


def decode_context(serialized: tf.Tensor) -> dict:
  """Only the context of a serialized SequenceExample (cheap: no per-frame parsing)."""
  context, _ = tf.io.parse_single_sequence_example(serialized, context_features=CONTEXT_SPEC)
  return context


def decode_numpy(serialized: bytes) -> dict:
  """NumPy view of one serialized example (what `read_prepared` yields).

  Args:
    serialized: the record's bytes.

  Returns:
    dict with the keys of `decode_example`: strings as `str`, context numbers as Python
    scalars, `frames` uint8 [T, S, S, 3] (JPEG-decoded), the 0/1 lists as bool arrays,
    the rest as NumPy arrays.
  """
  ex = decode_example(tf.constant(serialized))
  out = {}
  for k, v in ex.items():
    if k == FRAMES:
      out[k] = (np.stack([tf.io.decode_jpeg(j, channels=3).numpy() for j in v.numpy()])
                if v.shape[0] else np.zeros((0, 0, 0, 3), np.uint8))
    elif v.dtype == tf.string:
      out[k] = v.numpy().decode()
    elif v.shape.rank == 0:
      out[k] = v.numpy().item()
    else:
      out[k] = v.numpy()
  return out
