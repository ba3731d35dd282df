"""tf.data input pipelines: training windows, evaluation chunks.

Training (Sec. III-C): sequences of T consecutive frames of ONE utterance, in
batches of B (80 and 4 in the paper; CNN-only rows use T = 1 and B = 80). A batch
mixes many utterances (utterance shuffle, then one window of each of
`mix_utterances` utterances in turn), as the released code's global frame shuffle does. Each
utterance of n frames gives ceil(n / T) windows per epoch at random offsets
(the authors cut utterances into consecutive T-frame pieces; random offsets
see every alignment over the epochs). Utterances shorter than T are padded and
carry a frame mask. The mask of a frame is `face_found AND label_mask`: frames
without a face or without a label never count.

Evaluation yields every frame of every utterance in order, as consecutive
chunks of T frames (the last one padded), tagged with the utterance index and
chunk offset so predictions can be put back in place.

Frames are JPEG-decoded after windowing and shuffling (the shuffle buffer holds
compressed frames) and made network input by `inputs.network_input` (area resize where the
prepared crop size differs from the model's, rounded to uint8; `(x - 128) / 128`, the released code).
Every random choice is stateless and seeded by (seed, element counter), so the
pipeline is deterministic and its iterator can be checkpointed and resumed.
"""

from __future__ import annotations

import functools

import tensorflow as tf

from omg_cnnrnn import configs
from omg_cnnrnn.data import augment, features, inputs, records


def shard_files(data_dir: str, split: str) -> list[str]:
  """The TFRecord shards of `split` under `data_dir` (sorted), checked to be one complete set.

  See `records.complete_shards`: a mixed or incomplete set (or one that differs from the
  manifest's list) is refused, naming it, rather than read twice or half.
  """
  return records.complete_shards(data_dir, split)


# Datasets whose labels are per frame (the `dataset` context key written by data prep).
PER_FRAME_LABEL_DATASETS = ("affwild", "affwild2")


def dataset_kind(data_dir: str, split: str) -> str:
  """The `dataset` of the first utterance of a split ("omg", "affwild", "affwild2")."""
  first = tf.data.TFRecordDataset(shard_files(data_dir, split)[:1]).take(1).map(features.decode_context)
  for context in first:
    return context[features.DATASET].numpy().decode()
  raise ValueError(f"split {split!r} of {data_dir} holds no utterance")


def scale_frames(jpegs: tf.Tensor, image_size: int) -> tf.Tensor:
  """JPEG strings [T] -> float32 [T, S, S, 3] in [-1, 1]: each decoded crop through `inputs.network_input`.

  The prepared crop is resized only where its size differs from the model's (e.g. reduced-size
  runs), as prediction resizes its crops (`inputs`: one contract for training, SavedModel, predict).
  """
  def decode(jpeg):
    return inputs.network_input(tf.io.decode_jpeg(jpeg, channels=3), image_size)

  return tf.map_fn(decode, jpegs, fn_output_signature=tf.TensorSpec((image_size, image_size, 3), tf.float32))


def frame_mask(example: dict) -> tf.Tensor:
  """1 where a frame has a face and a label."""
  return tf.cast(example["face_found"], tf.float32) * tf.cast(example["label_mask"], tf.float32)


def frame_labels(example: dict) -> tf.Tensor:
  """[T, 2] per-frame (valence, arousal); OMG frames carry their utterance's label."""
  return tf.stack([tf.cast(example["frame_valence"], tf.float32), tf.cast(example["frame_arousal"], tf.float32)], -1)


def _pad_to(x: tf.Tensor, length: int) -> tf.Tensor:
  pad = length - tf.shape(x)[0]
  paddings = tf.concat([[[0, pad]], tf.zeros([tf.rank(x) - 1, 2], tf.int32)], axis=0)
  return tf.pad(x, paddings)


def window(jpegs, labels, mask, offset, length: int):
  """Frames [offset, offset + length) of one utterance, padded to `length` with a zero mask."""
  jpegs = _pad_to(jpegs[offset:offset + length], length)
  labels = _pad_to(labels[offset:offset + length], length)
  mask = _pad_to(mask[offset:offset + length], length)
  jpegs = tf.where(mask > 0, jpegs, tf.fill(tf.shape(jpegs), _black_jpeg()))
  return jpegs, labels, mask


@functools.lru_cache(maxsize=1)
def _black_jpeg() -> bytes:
  """A valid (black, 8x8) JPEG standing in for padded frames, so they decode like the rest.

  Made on first use, not at import: importing the package must not start the TF
  runtime (MultiWorkerMirroredStrategy has to be created before any op runs).
  """
  with tf.init_scope():  # Eager even when first called while tracing a dataset function.
    return tf.io.encode_jpeg(tf.zeros((8, 8, 3), tf.uint8)).numpy()


def train_windows(example: dict, index: tf.Tensor, length: int, seed: int, random_offset: bool) -> tf.data.Dataset:
  """ceil(n / T) windows of one utterance; offsets stateless-random in [0, n - T] (or consecutive pieces)."""
  jpegs, labels, mask = example["frames"], frame_labels(example), frame_mask(example)
  n = tf.shape(jpegs)[0]
  count = tf.maximum((n + length - 1) // length, 1)
  max_offset = tf.maximum(n - length, 0)
  if random_offset:
    offsets = tf.random.stateless_uniform(
        [count], seed=tf.stack([tf.cast(seed, tf.int64), tf.cast(index, tf.int64)]),
        minval=0, maxval=max_offset + 1, dtype=tf.int32)
  else:
    offsets = tf.minimum(tf.range(count) * length, max_offset)
  pieces = tf.data.Dataset.from_tensor_slices(offsets)
  return pieces.map(lambda o: window(jpegs, labels, mask, o, length))


def train_dataset(data_dir: str, data_config: configs.DataConfig, split: str = "train", seed: int = 0,
                  batch_size: int | None = None, sequence_length: int | None = None,
                  shard: tuple[int, int] | None = None) -> tf.data.Dataset:
  """Infinite, shuffled batches `({"frames": (B,T,S,S,3), "mask": (B,T)}, labels (B,T,2))`.

  Args:
    data_dir, data_config, split, seed: where the shards are, the data settings, the split, the seed.
    batch_size, sequence_length: override the config's B and T (distributed training
      passes the per-replica batch).
    shard: `(num_pipelines, index)`: keep every num-th training window from the
      index-th (tf.distribute's per-worker input sharding). Every pipeline uses the
      same seed up to this point, so the shards are disjoint and together are the
      one-pipeline stream; only the kept windows are decoded.
  """
  files = shard_files(data_dir, split)
  length = sequence_length or data_config.sequence_length
  batch = batch_size or data_config.batch_size
  size = data_config.image_size
  ds = tf.data.Dataset.from_tensor_slices(files)
  # Repeat before shuffling: the buffers then mix across epoch boundaries instead of
  # draining at each one; the file order is reshuffled every epoch.
  ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True).repeat()
  ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(16, len(files)),
                     num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.map(features.decode_example, num_parallel_calls=tf.data.AUTOTUNE)
  # Shards are written in label-file order (utterances of a video together): shuffle whole
  # (compressed) utterances first, then read the windows of `mix_utterances` of them in turn,
  # one window of each. Consecutive windows then come from different utterances, as the
  # released code's global shuffle gives, and the batch CCC sees the label variance between
  # utterances; a 512-window buffer alone held ~11 utterances per 80-frame batch.
  ds = ds.shuffle(data_config.utterance_shuffle_buffer, seed=seed + 2, reshuffle_each_iteration=True)
  ds = ds.enumerate()
  # A sequential interleave (no num_parallel_calls) is deterministic by itself; TensorFlow
  # warns that `deterministic=` has no effect there, so it is not passed.
  ds = ds.interleave(lambda i, ex: train_windows(ex, i, length, seed, data_config.random_offset),
                     cycle_length=data_config.mix_utterances, block_length=1)
  # Number the windows before sharding: a window's augmentation seed is its place in the
  # one-pipeline stream, whichever pipeline decodes it.
  ds = ds.enumerate()
  if shard is not None and shard[0] > 1:
    ds = ds.shard(*shard)
  # Shuffle compressed windows (small), decode after: the buffer costs JPEG bytes, not floats.
  ds = ds.shuffle(data_config.shuffle_buffer, seed=seed + 1, reshuffle_each_iteration=True)

  def frames_of(k, jpegs):
    frames = scale_frames(jpegs, size)
    if augment.enabled(data_config):
      frames = augment.augment_window(frames, tf.stack([tf.cast(seed + 3, tf.int64), k]), data_config)
    return frames

  ds = ds.map(lambda k, w: ({"frames": frames_of(k, w[0]), "mask": w[2]}, w[1]),
              num_parallel_calls=tf.data.AUTOTUNE)
  # Batch last so every sequence of a batch is decoded in parallel; prefetch overlaps the step.
  ds = ds.batch(batch, drop_remainder=True)
  return ds.prefetch(tf.data.AUTOTUNE)


def eval_chunks(example: dict, index: tf.Tensor, length: int) -> tf.data.Dataset:
  """Consecutive chunks of T frames covering one utterance in order (last one padded)."""
  jpegs, labels, mask = example["frames"], frame_labels(example), frame_mask(example)
  n = tf.shape(jpegs)[0]
  offsets = tf.range(0, tf.maximum(n, 1), length)
  pieces = tf.data.Dataset.from_tensor_slices(offsets)
  return pieces.map(lambda o: (index, o) + window(jpegs, labels, mask, o, length))


def eval_dataset(data_dir: str, data_config: configs.DataConfig, split: str, batch_size: int | None = None,
                 sequence_length: int | None = None) -> tf.data.Dataset:
  """Every frame of every utterance in file order, as batches of padded chunks.

  Yields dicts: `frames (B,T,S,S,3)`, `mask (B,T)`, `labels (B,T,2)`, `index (B,)` (utterance
  position in the split), `offset (B,)` (first frame of the chunk).
  """
  files = shard_files(data_dir, split)
  length = sequence_length or data_config.sequence_length
  size = data_config.image_size
  ds = tf.data.TFRecordDataset(files)
  ds = ds.map(features.decode_example, num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.enumerate().flat_map(lambda i, ex: eval_chunks(ex, i, length))
  ds = ds.map(lambda i, o, j, y, m: {"index": i, "offset": o, "frames": scale_frames(j, size), "mask": m,
                                     "labels": y}, num_parallel_calls=tf.data.AUTOTUNE)
  return ds.batch(batch_size or data_config.batch_size).prefetch(tf.data.AUTOTUNE)


def utterance_index(data_dir: str, split: str) -> list[dict]:
  """Context of every utterance of a split, in the order `eval_dataset` numbers them."""
  rows = []
  for example in tf.data.TFRecordDataset(shard_files(data_dir, split)).map(features.decode_context):
    rows.append({k: (v.numpy().decode() if v.dtype == tf.string else v.numpy().item()) for k, v in example.items()})
  return rows
