"""The TFRecord format: SequenceExample round trip (eager, tf.data.map, read_prepared), shards, atomic writes."""

import os

import numpy as np
import pytest
import skimage.data
import skimage.transform
import tensorflow as tf

from omg_cnnrnn.data import features, read_prepared, records

T = 6


def _crops(n=T, size=96):
  """A real face (natural-image statistics, so the JPEG error is typical), shifted per frame."""
  face = skimage.transform.resize(skimage.data.astronaut()[20:220, 140:340], (size + n, size + n), anti_aliasing=True)
  face = (face * 255).astype(np.uint8)
  return np.stack([face[i:i + size, i:i + size] for i in range(n)])


def _example(video="0a1b2c3d4_1", utterance="utterance_7.mp4", **overrides):
  found = np.array([1, 1, 0, 1, 0, 1], bool)
  boxes = np.where(found[:, None], np.arange(T * 4, dtype=np.float32).reshape(T, 4) + [10, 20, 110, 140], np.nan)
  kwargs = dict(video=video, utterance=utterance, valence=-0.25, arousal=0.75, crops=_crops(), face_found=found,
                detected=found & [1, 0, 0, 1, 0, 0], boxes=boxes, timestamps=np.arange(T) / 25.0 + 3.0, emotion=3,
                fps=25.0, dataset="omg", split="train", source=f"/data/{video}/{utterance}", frame_size=(640, 360))
  kwargs.update(overrides)
  return kwargs, features.encode_example(**kwargs)


def _check(decoded, kwargs):
  """A decoded example (tensors or NumPy) against what was encoded."""
  get = lambda k: decoded[k].numpy() if hasattr(decoded[k], "numpy") else decoded[k]  # noqa: E731
  text = lambda k: get(k).decode() if isinstance(get(k), bytes) else get(k)  # noqa: E731
  assert text(features.VIDEO) == kwargs["video"] and text(features.UTTERANCE) == kwargs["utterance"]
  assert text(features.SOURCE) == kwargs["source"] and text(features.SPLIT) == "train"
  assert text(features.DATASET) == "omg"
  assert get(features.VALENCE) == pytest.approx(-0.25) and get(features.AROUSAL) == pytest.approx(0.75)
  assert get(features.EMOTION) == 3 and get(features.NUM_FRAMES) == T and get(features.FPS) == pytest.approx(25.0)
  assert (get(features.FRAME_WIDTH), get(features.FRAME_HEIGHT)) == (640, 360)
  for key in (features.FACE_FOUND, features.DETECTED, features.LABEL_MASK):
    assert get(key).dtype == bool and get(key).shape == (T,)
  np.testing.assert_array_equal(get(features.FACE_FOUND), kwargs["face_found"])
  np.testing.assert_array_equal(get(features.DETECTED), kwargs["detected"])
  assert get(features.LABEL_MASK).all()  # OMG: every frame's label is valid
  np.testing.assert_allclose(get(features.BOX), kwargs["boxes"], equal_nan=True)
  np.testing.assert_allclose(get(features.TIMESTAMP), kwargs["timestamps"], rtol=1e-6)
  # OMG labels are per utterance: every frame carries the utterance's label.
  np.testing.assert_allclose(get(features.FRAME_VALENCE), np.full(T, -0.25))
  np.testing.assert_allclose(get(features.FRAME_AROUSAL), np.full(T, 0.75))


def test_round_trip_eager_and_inside_tf_data_map():
  kwargs, example = _example()
  serialized = example.SerializeToString()
  eager = features.decode_example(tf.constant(serialized))
  _check(eager, kwargs)
  assert eager[features.FRAMES].dtype == tf.string and eager[features.FRAMES].shape == (T,)
  ds = tf.data.Dataset.from_tensors(serialized).repeat(2).map(features.decode_example)
  assert ds.element_spec[features.BOX].shape.as_list() == [None, 4]
  assert ds.element_spec[features.FACE_FOUND].dtype == tf.bool
  for in_graph in ds:
    _check(in_graph, kwargs)
    np.testing.assert_array_equal(in_graph[features.FRAMES].numpy(), eager[features.FRAMES].numpy())
  context = features.decode_context(tf.constant(serialized))
  assert context[features.VIDEO].numpy().decode() == kwargs["video"] and features.FRAMES not in context


def test_jpeg_round_trip_is_close():
  kwargs, example = _example(jpeg_quality=95)
  decoded = features.decode_numpy(example.SerializeToString())
  frames = decoded[features.FRAMES]
  assert frames.dtype == np.uint8 and frames.shape == (T, 96, 96, 3)
  error = np.abs(frames.astype(int) - kwargs["crops"].astype(int))
  assert error.mean() < 3.0 and np.percentile(error, 99) < 20
  # Lower quality costs accuracy: the quality setting reaches the encoder.
  _, coarse = _example(jpeg_quality=20)
  coarse_error = np.abs(features.decode_numpy(coarse.SerializeToString())[features.FRAMES].astype(int) - kwargs["crops"])
  assert coarse_error.mean() > error.mean()


def test_per_frame_labels_and_mask_are_kept():
  lab = np.linspace(-1, 1, T).astype(np.float32)
  mask = np.array([0, 1, 1, 0, 1, 1], bool)
  kwargs, example = _example(frame_valence=lab, frame_arousal=-lab, label_mask=mask, dataset="affwild2")
  decoded = features.decode_numpy(example.SerializeToString())
  np.testing.assert_allclose(decoded[features.FRAME_VALENCE], lab)
  np.testing.assert_allclose(decoded[features.FRAME_AROUSAL], -lab)
  np.testing.assert_array_equal(decoded[features.LABEL_MASK], mask)
  assert decoded[features.DATASET] == "affwild2"


def test_encoder_refuses_inconsistent_inputs():
  with pytest.raises(ValueError, match="vid/utt: face_found has 5 entries for 6 frames"):
    _example("vid", "utt", face_found=np.ones(5, bool))
  with pytest.raises(ValueError, match="vid/utt: boxes must be \\[T, 4\\]"):
    _example("vid", "utt", boxes=np.zeros((T, 3)))
  with pytest.raises(ValueError, match="vid/utt: crops must be uint8"):
    _example("vid", "utt", crops=_crops().astype(np.float32))
  with pytest.raises(ValueError, match="vid/utt: no frames"):
    features.encode_example(video="vid", utterance="utt", valence=0, arousal=0, jpegs=[], face_found=[], boxes=np.zeros((0, 4)),
                            timestamps=[])
  with pytest.raises(ValueError, match="exactly one of crops and jpegs"):
    _example("vid", "utt", jpegs=[b""] * T)


def _write_shards(data_dir, split, examples, count):
  for s in range(count):
    records.write_records(os.path.join(data_dir, records.shard_name(split, s, count)),
                          [e.SerializeToString() for e in examples[s::count]])


def test_read_prepared_gives_the_decoded_arrays_per_split(tmp_path):
  train = [_example(f"v{i:08x}", f"utterance_{i}.mp4")[1] for i in range(5)]
  valid = [_example(f"w{i:08x}", f"utterance_{i}.mp4", split="validation")[1] for i in range(2)]
  _write_shards(str(tmp_path), "train", train, 2)
  _write_shards(str(tmp_path), "validation", valid, 1)
  (tmp_path / "notes.tfrecord").write_bytes(b"not a shard")  # ignored: not a shard name
  got = list(read_prepared(str(tmp_path), "train"))
  # Shard order, then record order within a shard.
  assert [u["video"] for u in got] == [f"v{i:08x}" for i in (0, 2, 4, 1, 3)]
  want = {e.context.feature["video"].bytes_list.value[0].decode(): features.decode_numpy(e.SerializeToString())
          for e in train}
  for u in got:
    assert u["frames"].dtype == np.uint8 and u["frames"].shape == (T, 96, 96, 3)
    assert u["face_found"].dtype == bool and u["boxes"].shape == (T, 4)
    for k, v in want[u["video"]].items():
      np.testing.assert_array_equal(u[k], v)
  assert [u["split"] for u in read_prepared(str(tmp_path), "validation")] == ["validation"] * 2
  assert len(list(read_prepared(str(tmp_path)))) == 7
  with pytest.raises(FileNotFoundError, match=r"for split 'test'; splits present: \['train', 'validation'\]"):
    read_prepared(str(tmp_path), "test")
  with pytest.raises(FileNotFoundError, match="no prepared shards"):
    read_prepared(str(tmp_path / "nothing"))
  with pytest.raises(ValueError, match="split name 'train-0'"):
    read_prepared(str(tmp_path), "train-0")


def test_shard_names_parse_back():
  name = records.shard_name("validation", 3, 12)
  assert name == "validation-00003-of-00012.tfrecord"
  m = records.SHARD_PATTERN.fullmatch(name)
  assert (m["split"], int(m["index"]), int(m["count"])) == ("validation", 3, 12)
  with pytest.raises(ValueError):
    records.shard_name("train", 2, 2)
  with pytest.raises(ValueError):
    records.shard_name("my-split", 0, 1)


def test_writes_are_atomic(tmp_path):
  path = str(tmp_path / "train-00000-of-00001.tfrecord")
  records.write_records(path, [b"one", b"two"])
  assert records.read_records(path) == [b"one", b"two"]

  def failing():
    yield b"three"
    raise RuntimeError("killed mid-write")

  with pytest.raises(RuntimeError):
    records.write_records(path, failing())
  # The old file is intact and no temporary file is left behind.
  assert records.read_records(path) == [b"one", b"two"]
  assert os.listdir(tmp_path) == ["train-00000-of-00001.tfrecord"]
  records.write_atomic(str(tmp_path / "m.json"), b"{}")
  assert sorted(os.listdir(tmp_path)) == ["m.json", "train-00000-of-00001.tfrecord"]
  # Permissions as for any new file (the umask's), not a temp file's owner-only ones.
  umask = os.umask(0)
  os.umask(umask)
  assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask


def test_atomic_output_keeps_the_old_file_on_error_and_leaves_no_temporary(tmp_path):
  path = str(tmp_path / "sub" / "table.csv")
  records.write_atomic(path, "old\n")
  with pytest.raises(RuntimeError):
    with records.atomic_output(path) as tmp:
      with open(tmp, "w") as f:
        f.write("half")
      raise RuntimeError("killed mid-write")
  assert open(path).read() == "old\n"
  with records.atomic_output(path) as tmp:
    assert tmp != path and os.path.dirname(tmp) == os.path.dirname(path)
    with open(tmp, "w") as f:
      f.write("new\n")
  assert open(path).read() == "new\n"
  assert os.listdir(os.path.dirname(path)) == ["table.csv"]
