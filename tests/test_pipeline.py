"""tf.data pipelines and the SequenceExample format: round trips, windows, masks, evaluation order."""

import os
import sys

import numpy as np
import pytest
import tensorflow as tf

sys.path.insert(0, os.path.dirname(__file__))
import fake_data  # noqa: E402

from omg_cnnrnn import configs  # noqa: E402
from omg_cnnrnn.data import features, pipeline, read_prepared  # noqa: E402


def _example(n=5, size=32, seed=0):
  rng = np.random.default_rng(seed)
  ramp = np.linspace(0, 200, size)[None, :, None] + np.linspace(0, 50, size)[:, None, None]
  crops = np.clip(ramp + rng.uniform(0, 50, (n, 1, 1, 3)), 0, 255).astype(np.uint8)  # smooth, JPEG-friendly
  found = np.array([True, False, True, True, False][:n])
  boxes = np.where(found[:, None], rng.uniform(0, 100, (n, 4)), np.nan).astype(np.float32)
  return crops, found, boxes, features.encode_example(
      video="abc123def", utterance="utterance_7.mp4", valence=-0.25, arousal=0.75, crops=crops,
      face_found=found, boxes=boxes, timestamps=np.arange(n) / 25.0, fps=25.0, emotion=3, split="train",
      source="/v/abc123def/utterance_7.mp4", frame_size=(640, 360))


def test_sequence_example_round_trip_eager_and_in_tf_data(tmp_path):
  crops, found, boxes, example = _example()
  serialized = example.SerializeToString()
  eager = features.decode_example(tf.constant(serialized))
  in_graph = next(iter(tf.data.Dataset.from_tensors(serialized).map(features.decode_example)))
  for decoded in (eager, in_graph):
    assert decoded[features.VIDEO].numpy() == b"abc123def"
    assert decoded[features.NUM_FRAMES].numpy() == 5 and decoded[features.EMOTION].numpy() == 3
    np.testing.assert_array_equal(decoded[features.FACE_FOUND].numpy().astype(bool), found)
    np.testing.assert_allclose(decoded[features.BOX].numpy(), boxes)
    np.testing.assert_allclose(decoded[features.FRAME_AROUSAL].numpy(), 0.75)
  path = tmp_path / "train-00000-of-00001.tfrecord"
  with tf.io.TFRecordWriter(str(path)) as w:
    w.write(serialized)
  (u,) = list(read_prepared(str(tmp_path)))
  assert (u["video"], u["utterance"], u["valence"], u["arousal"]) == ("abc123def", "utterance_7.mp4", -0.25, 0.75)
  assert u["frames"].shape == (5, 32, 32, 3) and u["frames"].dtype == np.uint8
  assert np.abs(u["frames"].astype(int) - crops.astype(int)).mean() < 3  # JPEG, quality 95
  np.testing.assert_array_equal(u["face_found"], found)
  with pytest.raises(ValueError, match="face_found has 2 entries for 5 frames"):
    features.encode_example(video="v", utterance="u", valence=0, arousal=0, crops=crops, face_found=[1, 1],
                            boxes=boxes, timestamps=np.arange(5))


def test_training_windows_are_padded_masked_and_scaled(tmp_path):
  fake_data.write_split(str(tmp_path), "train", num_videos=2, utterances=2, frames=(3, 6), faceless_every=4)
  config = configs.DataConfig(image_size=32, sequence_length=8, batch_size=3, shuffle_buffer=4)
  inputs, labels = next(iter(pipeline.train_dataset(str(tmp_path), config, seed=0)))
  assert inputs["frames"].shape == (3, 8, 32, 32, 3) and labels.shape == (3, 8, 2)
  frames, mask = inputs["frames"].numpy(), inputs["mask"].numpy()
  assert frames.min() >= -1.0 and frames.max() <= 1.0
  assert (mask[:, 6:] == 0).all()  # utterances of at most 6 frames are padded to 8
  assert (mask[:, 0] == 0).any() or (mask == 0).any()
  assert np.all(frames[mask == 0] == -1.0)  # padded and face-less frames are black
  # Every frame of a window carries its utterance's label (OMG).
  for b in range(3):
    valid = labels.numpy()[b][mask[b] > 0]
    assert np.allclose(valid, valid[0])


def test_pipeline_is_deterministic_by_seed(tmp_path):
  fake_data.write_split(str(tmp_path), "train", num_videos=3, utterances=2, frames=(10, 20))
  config = configs.DataConfig(image_size=32, sequence_length=4, batch_size=2, shuffle_buffer=8)
  take = lambda seed: [y.numpy() for _, y in pipeline.train_dataset(str(tmp_path), config, seed=seed).take(4)]
  a, b, c = take(0), take(0), take(1)
  assert all(np.array_equal(x, y) for x, y in zip(a, b))
  assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_evaluation_yields_every_frame_in_order(tmp_path):
  table = fake_data.write_split(str(tmp_path), "validation", num_videos=2, utterances=2, frames=(5, 11),
                                num_shards=1)
  config = configs.DataConfig(image_size=32, sequence_length=4, batch_size=3)
  index = pipeline.utterance_index(str(tmp_path), "validation")
  assert [r["utterance"] for r in index] == list(table["utterance"])
  seen = {}
  for batch in pipeline.eval_dataset(str(tmp_path), config, "validation"):
    for i, offset, m in zip(batch["index"].numpy(), batch["offset"].numpy(), batch["mask"].numpy()):
      seen.setdefault(int(i), []).append((int(offset), int(m.sum())))
  for i, row in enumerate(index):
    chunks = seen[i]
    assert [o for o, _ in chunks] == list(range(0, row["num_frames"], 4))
    assert sum(n for _, n in chunks) == row["num_frames"]


def test_missing_split_names_what_is_there(tmp_path):
  fake_data.write_split(str(tmp_path), "train", num_videos=1, utterances=1)
  with pytest.raises(FileNotFoundError, match=r"splits present .*\['train'\]"):
    pipeline.shard_files(str(tmp_path), "validation")


def test_a_frame_batch_mixes_about_as_many_utterances_as_frames(tmp_path):
  # Shards in label-file order (utterances of a video together, each 8-16 frames), as
  # data prep writes them: an 80-frame CNN-only batch must still hold ~80 utterances.
  labels = fake_data.write_split(str(tmp_path), "train", num_videos=80, utterances=5, frames=(8, 16), size=8,
                                 num_shards=2)
  config = configs.DataConfig(image_size=8, sequence_length=1, batch_size=80)
  ds = pipeline.train_dataset(str(tmp_path), config, seed=0)
  counts = []
  for inputs, y in ds.take(5):
    # Every utterance has its own (valence, arousal): distinct label pairs = distinct utterances.
    counts.append(len({tuple(np.round(v, 5)) for v in y.numpy()[:, 0]}))
  assert len(labels) == 400
  assert min(counts) >= 60, counts
  # The old pipeline (a window buffer over shards in file order) gave about 11.
  old = configs.DataConfig(image_size=8, sequence_length=1, batch_size=80, mix_utterances=1,
                           utterance_shuffle_buffer=1)
  inputs, y = next(iter(pipeline.train_dataset(str(tmp_path), old, seed=0)))
  assert len({tuple(np.round(v, 5)) for v in y.numpy()[:, 0]}) < 30
