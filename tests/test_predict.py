"""Video prediction: streaming equals whole-sequence inference, face-less frames, outputs, bad inputs."""

import dataclasses
import json
import os

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import tf_keras

import cli_runner
from conftest import tiny
from data_prep import synthesize, synthetic_faces
from omg_cnnrnn import experiments, faces, inference, models, postprocess, serving
from omg_cnnrnn.data import inputs, labels, pipeline
from omg_cnnrnn.models import cnn_rnn

SIZE = 32  # the testing row's input size
HIDDEN = range(12, 24)  # frames of the test video without a face


def _config(rnn_inputs=None, hidden=0):
  """The testing row with a tiny backbone (conftest.tiny): these tests are about prediction, not VGG-16."""
  config = tiny(experiments.get("testing"))
  stream = config.model.streams[0]
  if rnn_inputs is not None:
    stream = dataclasses.replace(stream, rnn_inputs=rnn_inputs)
  # he_normal keeps an untrained VGG's activations from vanishing, so outputs differ visibly.
  return dataclasses.replace(config, model=dataclasses.replace(config.model, streams=(stream,),
                                                               hidden_fc_units=hidden,
                                                               kernel_initializer="he_normal"))


def _model(config, seed=0):
  """An untrained model whose outputs spread over about [-1, 1] (a 1e-5 check then means something)."""
  tf_keras.utils.set_random_seed(seed)
  model = models.build_model(config.model, image_size=SIZE)
  output = model.get_layer("output")
  kernel, bias = output.get_weights()
  output.set_weights([kernel * 3.0, bias])
  return model


def _scaled(frames):
  return (np.asarray(frames, np.float32) - 128.0) / 128.0


@pytest.fixture(scope="module")
def trained(predict_model):
  """The testing row as a SavedModel and as a workdir (same weights): conftest's shared one."""
  return predict_model


@pytest.fixture(scope="module")
def face_video(tmp_path_factory):
  """A real face (the astronaut texture) moving and changing expression; gone in frames 12-23."""
  rng = np.random.default_rng(0)
  look = synthetic_faces.Appearance.random(rng, 320, 240)
  frames = []
  for i in range(36):
    frame, _ = synthetic_faces.render_frame(look, float(np.sin(i / 5)), float(np.cos(i / 7)),
                                            (160 + 20 * np.sin(i / 6), 120.0), 0.0, 1.0, 1.0, i not in HIDDEN)
    frames.append(frame)
  path = str(tmp_path_factory.mktemp("video") / "face_video.mp4")
  synthesize.write_mp4(path, frames, 10.0)
  return path


# ------------------------------------------------------------------- streaming = whole sequence
@pytest.mark.parametrize("chunk", [1, 4, 13])
def test_streaming_model_equals_whole_sequence(chunk):
  # Two RNN branches and a hidden FC: the state of 4 GRU layers travels in one tensor.
  config = _config(rnn_inputs=(("pool5",), ("conv5_3", "fc1")), hidden=4)
  model = _model(config, seed=1)
  twin = cnn_rnn.streaming_twin(model, config.model, SIZE)
  assert cnn_rnn.num_states(config.model) == 4
  rng = np.random.default_rng(chunk)
  frames = rng.uniform(-1, 1, (2, 13, SIZE, SIZE, 3)).astype(np.float32)
  mask = (rng.uniform(size=(2, 13)) > 0.25).astype(np.float32)
  mask[0, 4:9] = 0  # a face-less stretch longer than a chunk
  whole = model({"frames": frames, "mask": mask}, training=False).numpy()
  state = np.zeros((2, 4, config.model.rnn_units), np.float32)
  streamed = []
  for a in range(0, 13, chunk):
    out = twin({"frames": frames[:, a:a + chunk], "mask": mask[:, a:a + chunk], "state": state}, training=False)
    streamed.append(out["predictions"].numpy())
    state = out["state"].numpy()
  streamed = np.concatenate(streamed, axis=1)
  valid = mask > 0
  assert np.abs(whole[valid]).max() > 0.05
  np.testing.assert_allclose(streamed[valid], whole[valid], atol=1e-5)


def test_streaming_twin_refuses_weights_of_another_network():
  model = models.build_model(_config().model, image_size=SIZE)
  with pytest.raises(ValueError, match="vgg16_rnn_pool5"):
    cnn_rnn.streaming_twin(model, _config(rnn_inputs=(("pool5",),)).model, SIZE)
  with pytest.raises(ValueError, match="no recurrent state"):
    cnn_rnn.build_streaming_model(_config(rnn_inputs=()).model, SIZE)


@pytest.mark.slow
def test_faceless_frames_are_skipped_not_fed(trained):
  """Dropping face-less frames before the network (what predict does) = masking them."""
  model, config, saved, _ = trained
  predictor = inference.load_predictor(saved)
  rng = np.random.default_rng(3)
  crops = rng.integers(0, 256, (20, SIZE, SIZE, 3), dtype=np.uint8)
  found = np.ones(20, bool)
  found[5:12] = False
  stream = [(i / 10, f, np.zeros(4), c) for i, (f, c) in enumerate(zip(found, crops))]
  rows = list(inference.stream_predictions(predictor, stream, chunk_frames=3))
  got = np.array([r.prediction for r in rows])
  whole = model({"frames": _scaled(crops)[None], "mask": found[None].astype(np.float32)}, training=False).numpy()[0]
  np.testing.assert_allclose(got[found], whole[found], atol=1e-5)
  assert np.isnan(got[~found]).all()
  assert [r.frame for r in rows] == list(range(20))


@pytest.mark.slow
@pytest.mark.parametrize("side", [SIZE, 3 * SIZE, 45])
def test_one_crop_gives_the_same_numbers_in_training_the_saved_model_and_predict(trained, side):
  # issue 13: one crop -> network-input function (`data.inputs`) for the three paths.
  model, _, saved, _ = trained
  crop = np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8)
  jpeg = tf.io.encode_jpeg(crop, quality=95)
  decoded = tf.io.decode_jpeg(jpeg, channels=3).numpy()  # the crop as training reads it from a record
  trained_on = pipeline.scale_frames(tf.stack([jpeg, jpeg]), SIZE).numpy()
  resized = inference.resize_crop(decoded, SIZE)  # predict's crop, what the SavedModel takes
  assert resized.dtype == np.uint8 and resized.shape == (SIZE, SIZE, 3)
  np.testing.assert_allclose(trained_on, np.stack([inputs.network_input(decoded, SIZE).numpy()] * 2), atol=1e-6)
  np.testing.assert_allclose(trained_on[0], (resized.astype(np.float32) - 128.0) / 128.0, atol=1e-6)
  want = model({"frames": trained_on[np.newaxis], "mask": np.ones((1, 2), np.float32)}, training=False).numpy()[0]
  assert np.ptp(want) > 1e-3 or abs(want).max() > 1e-3
  served = tf.saved_model.load(saved).signatures["serving_default"](frames=tf.constant(np.stack([resized] * 2)[None]))
  np.testing.assert_allclose(served["per_frame"].numpy()[0], want, atol=1e-5)
  predictor = inference.load_predictor(saved)
  rows = list(inference.stream_predictions(predictor, [(0.0, True, np.zeros(4), decoded)] * 2, chunk_frames=2))
  np.testing.assert_allclose(np.stack([r.prediction for r in rows]), want, atol=1e-5)


@pytest.mark.slow
def test_workdir_and_saved_model_predict_alike(trained):
  _, _, saved, workdir = trained
  rng = np.random.default_rng(4)
  crops = rng.integers(0, 256, (9, SIZE, SIZE, 3), dtype=np.uint8)
  stream = [(i / 10, True, np.zeros(4), c) for i, c in enumerate(crops)]
  a = [r.prediction for r in inference.stream_predictions(inference.load_predictor(saved), stream, 4)]
  b = [r.prediction for r in inference.stream_predictions(inference.load_predictor(workdir), stream, 5)]
  np.testing.assert_allclose(a, b, atol=1e-5)


def test_cnn_only_workdir_predicts_every_frame_alone(tmp_path):
  """CNN-only rows (the demo's) have no state: each frame's prediction is the model's on it."""
  config = _config(rnn_inputs=())
  model = _model(config, seed=2)
  tf.train.Checkpoint(model=model).write(str(tmp_path / "best" / "model"))
  (tmp_path / "config.json").write_text(config.to_json())
  predictor = inference.load_predictor(str(tmp_path))
  assert predictor.initial_state().shape == (1, 0, config.model.rnn_units)
  crops = np.random.default_rng(6).integers(0, 256, (7, SIZE, SIZE, 3), dtype=np.uint8)
  rows = list(inference.stream_predictions(predictor, [(i, True, np.zeros(4), c) for i, c in enumerate(crops)], 3))
  expected = model({"frames": _scaled(crops)[:, None], "mask": np.ones((7, 1), np.float32)},
                   training=False).numpy()[:, 0]
  np.testing.assert_allclose([r.prediction for r in rows], expected, atol=1e-5)
  assert "paper's median windows" in predictor.choice_source


# ----------------------------------------------------------------------------- post-processing
@pytest.mark.parametrize("windows,modes", [((81, 3), ("reflect", "reflect")), ((5, 1), ("nearest", "reflect")),
                                           ((9, 27), ("reflect", "nearest")), ((1, 1), ("reflect", "reflect"))])
def test_streaming_median_filter_equals_the_whole_sequence(windows, modes):
  rng = np.random.default_rng(sum(windows))
  for n in (1, 2, 7, 40, 41, 120, 300):
    x = rng.normal(size=(n, 2))
    filt = postprocess.StreamingMedianFilter(windows, modes)
    pieces, i = [], 0
    while i < n:
      k = int(rng.integers(1, 12))
      pieces.append(filt.push(x[i:i + k]))
      i += k
    pieces.append(filt.finish())
    got = np.concatenate(pieces)
    expected = postprocess.median_filter_frames(x, None, windows, modes)
    np.testing.assert_allclose(got, expected, err_msg=f"n={n}")
    # Bounded memory: about a window of values is kept.
    assert len(filt._values) == 0


def test_postprocess_stream_filters_valid_frames_and_restarts_after_a_long_gap():
  choice = postprocess.PostprocessChoice(median_window=(5, 3), smoothing_k=(0.0, 0.0))
  rng = np.random.default_rng(5)
  found = np.ones(60, bool)
  found[[3, 4, 10]] = False  # short gaps: filtered across
  found[30:37] = False  # 7 > max_gap 5: the filter restarts
  values = rng.normal(size=(60, 2))
  rows = [inference.FrameResult(i, i / 10, f, np.zeros(4, np.float32), values[i] if f else np.full(2, np.nan))
          for i, f in enumerate(found)]
  out = list(postprocess.postprocess_stream(iter(rows), choice))
  assert [r.frame for r in out] == list(range(60))
  post = np.array([r.post for r in out])
  assert np.isnan(post[~found]).all()
  for segment in (np.arange(60) < 30, np.arange(60) >= 37):
    keep = segment & found
    np.testing.assert_allclose(post[keep], postprocess.median_filter_frames(values[keep], None, (5, 3)))


# ------------------------------------------------------------------------------ whole videos
@pytest.mark.slow
def test_predict_video_with_a_face_leaving_and_returning(trained, face_video, tmp_path):
  model, config, saved, _ = trained
  segments = tmp_path / "segments.csv"
  # OMG layout, with another video's row that must be ignored.
  segments.write_text("link,start,end,video,utterance,arousal,valence,EmotionMaxVote\n"
                      "x,0.0,1.0,face_video,utterance_1.mp4,0,0,4\n"
                      "x,1.0,3.6,face_video,utterance_2.mp4,0,0,4\n"
                      "x,0.0,2.0,other,utterance_1.mp4,0,0,4\n")
  out = tmp_path / "out"
  predictor = inference.load_predictor(saved)
  summary = inference.predict_video(predictor, face_video, str(out), utterances=str(segments), chunk_frames=5,
                                  annotated_video=True)
  table = pd.read_csv(out / "frames.csv")
  assert list(table.columns) == list(inference.FRAME_COLUMNS)
  assert list(table["frame"]) == list(range(36))
  np.testing.assert_allclose(table["time"], np.arange(36) / 10.0)
  found = table["face_found"].to_numpy() == 1
  # The face is found before and after the gap, and lost within it (after the tracker's hold).
  assert found[:12].all() and found[26:].all() and not found[20:24].any()
  assert summary["faces_found"] == int(found.sum()) and summary["frames"] == 36
  value_columns = ["x0", "y0", "x1", "y1", "valence", "arousal", "valence_post", "arousal_post"]
  assert table.loc[~found, value_columns].isna().all().all()
  assert table.loc[found, value_columns].notna().all().all()

  # Streaming over the video = the whole video through the Keras model at once, face-less frames masked.
  track = faces.process_video(face_video, faces.FaceConfig())
  np.testing.assert_array_equal(track.face_found, found)
  crops = np.stack([inference.resize_crop(c, SIZE) for c in track.crops])
  whole = model({"frames": _scaled(crops)[None], "mask": found[None].astype(np.float32)},
                training=False).numpy()[0]
  assert np.abs(whole[found]).max() > 0.05
  np.testing.assert_allclose(table.loc[found, ["valence", "arousal"]].to_numpy(), whole[found], atol=1e-5)
  # Post-processed columns: the model's median windows (3, 3) over the frames with a face, restarted
  # after the gap (longer than the window): before and after it separately.
  assert predictor.choice.median_window == (3, 3)
  post = table[["valence_post", "arousal_post"]].to_numpy()
  for part in (found & (np.arange(36) < 20), found & (np.arange(36) >= 20)):
    filtered = postprocess.median_filter_frames(whole[part], None, (3, 3))
    np.testing.assert_allclose(post[part], inference.clip_values(filtered, predictor.ranges), atol=1e-5)
  assert not np.allclose(post[found], table.loc[found, ["valence", "arousal"]].to_numpy())

  utterances = pd.read_csv(out / "utterances.csv")
  assert list(utterances.columns) == list(inference.UTTERANCE_COLUMNS)
  assert list(utterances["utterance"]) == ["utterance_1.mp4", "utterance_2.mp4"]
  assert list(utterances["frames"]) == [10, 26]
  first = table[(table["frame"] < 10) & found]
  np.testing.assert_allclose(utterances.loc[0, ["valence", "arousal"]].to_numpy(np.float64),
                             first[["valence", "arousal"]].mean().to_numpy(), atol=1e-6)
  assert utterances[["valence_post", "arousal_post"]].notna().all().all()

  with open(out / "plot.png", "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert os.path.getsize(out / "plot.png") > 10_000
  info = faces.probe_video(str(out / "annotated.mp4"))
  assert (info["width"], info["height"]) == (320, 240)
  assert sum(1 for _ in faces.read_frames(str(out / "annotated.mp4"))) == 36
  with open(out / "summary.json") as f:
    written = json.load(f)
  assert "paper's median windows" in written["postprocess_source"]  # no postprocess.json in this export
  assert "carried" in written["faceless_frames"]


@pytest.mark.slow
def test_command_line_writes_frames_csv_and_plot(trained, face_video, tmp_path):
  _, _, saved, _ = trained
  out = tmp_path / "cli"
  done = cli_runner.run("omg_cnnrnn.predict", [f"--model={saved}", f"--video={face_video}", f"--output_dir={out}",
                                               "--noprogress", "--chunk_frames=16"])
  assert done.returncode == 0, done.stderr[-2000:]
  table = pd.read_csv(out / "frames.csv")
  assert {"frame", "time", "face_found", "valence", "arousal"} <= set(table.columns) and len(table) == 36
  assert (out / "plot.png").exists() and not (out / "utterances.csv").exists()
  assert json.loads(done.stdout.strip().splitlines()[-1])["frames"] == 36

  bad = cli_runner.run("omg_cnnrnn.predict", [f"--model={saved}", f"--video={tmp_path / 'missing.mp4'}",
                                              f"--output_dir={out}"])
  assert bad.returncode != 0
  assert "missing.mp4: file not found" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.slow
def test_a_tuned_postprocess_json_beside_the_model_is_used(trained, tmp_path):
  model, config, _, _ = trained
  choice = postprocess.PostprocessChoice(median_window=(5, 1), smoothing_k=(10.0, 0.0), edge_mode="nearest")
  postprocess.save_choice(choice, str(tmp_path / "postprocess.json"))
  path = serving.export_saved_model(model, config, str(tmp_path / "sm"), str(tmp_path / "postprocess.json"))
  predictor = inference.load_predictor(path)
  assert predictor.choice.median_window == (5, 1) and predictor.choice.smoothing_k == (10.0, 0.0)
  assert predictor.choice_source == os.path.join(path, "postprocess.json")
  (tmp_path / "sm" / "postprocess.json").write_text("{}")
  with pytest.raises(inference.ModelError, match="postprocess.json is not a post-processing choice"):
    inference.load_predictor(path)


# ------------------------------------------------------------------------------- bad inputs
@pytest.mark.slow
def test_bad_models_are_refused_naming_the_path(trained, tmp_path):
  model, config, _, _ = trained
  with pytest.raises(inference.ModelError, match="nowhere: model not found"):
    inference.load_predictor(str(tmp_path / "nowhere"))
  (tmp_path / "empty").mkdir()
  with pytest.raises(inference.ModelError, match="empty: neither a SavedModel"):
    inference.load_predictor(str(tmp_path / "empty"))
  # A SavedModel of something else: no streaming signature.
  module = tf.Module()
  module.f = tf.function(lambda x: {"y": x * 2}, input_signature=[tf.TensorSpec((None,), tf.float32)])
  tf.saved_model.save(module, str(tmp_path / "other"), signatures={"serving_default": module.f})
  with pytest.raises(inference.ModelError, match="other: wrong model signature"):
    inference.load_predictor(str(tmp_path / "other"))
  # A workdir without weights, and one whose weights belong to another network.
  nowts = tmp_path / "noweights"
  nowts.mkdir()
  (nowts / "config.json").write_text(config.to_json())
  with pytest.raises(inference.ModelError, match="noweights: no trained weights"):
    inference.load_predictor(str(nowts))
  other = tmp_path / "otherweights"
  tf.train.Checkpoint(model=models.build_model(_config(rnn_inputs=(("pool5",),)).model, image_size=SIZE)).write(
      str(other / "best" / "model"))
  (other / "config.json").write_text(config.to_json())
  with pytest.raises(inference.ModelError, match="otherweights: checkpoint .* does not fit"):
    inference.load_predictor(str(other))
  bad_json = tmp_path / "badjson"
  bad_json.mkdir()
  (bad_json / "config.json").write_text("{not json")
  with pytest.raises(inference.ModelError, match="badjson: unreadable experiment config"):
    inference.load_predictor(str(bad_json))


@pytest.mark.slow
def test_bad_videos_are_refused_naming_the_file(trained, tmp_path):
  predictor = inference.load_predictor(trained[2])
  text = tmp_path / "notes.mp4"
  text.write_text("not a video at all\n")
  for path, reason in ((tmp_path / "missing.mp4", "file not found"), (text, "not a video")):
    with pytest.raises(faces.VideoError, match=f"{path.name}: {reason}"):
      inference.predict_video(predictor, str(path), str(tmp_path / "out"))
  assert not (tmp_path / "out" / "frames.csv").exists()


@pytest.mark.parametrize("content,message", [
    (None, "segments.csv: utterance file not found"),
    ("begin,finish\n0,1\n", "missing columns \\['start', 'end'\\]"),
    ("start,end\n0,1\n1,abc\n", "line 3: end 'abc' is not a number"),
    ("start,end\n2,1\n", "line 2: segment \\[2.0, 1.0\\) s is empty"),
    ("video,start,end\na,0,1\nb,0,1\n", "no row for video 'clip'"),
    ("start,end,utterance\n0,1,u\n1,2,u\n", "utterance names repeat"),
])
def test_bad_utterance_files_are_refused_naming_the_file(tmp_path, content, message):
  path = tmp_path / "segments.csv"
  if content is not None:
    path.write_text(content)
  with pytest.raises(labels.UtterancesError, match=message) as e:
    labels.read_utterances(str(path), "clip")
  assert "segments.csv" in str(e.value)


def test_utterance_names_default_and_values_come_from_the_frames_in_range(tmp_path):
  path = tmp_path / "segments.csv"
  path.write_text("start,end\n0,1.5\n1.5,3\n")
  read = labels.read_utterances(str(path), "clip")
  assert list(read["utterance"]) == ["segment_1", "segment_2"] and list(read["video"]) == ["clip", "clip"]
  table = pd.DataFrame({"frame": np.arange(6), "time": np.arange(6) / 2, "face_found": [1, 1, 0, 1, 0, 0],
                        "valence": [0.1, 0.3, np.nan, 0.5, np.nan, np.nan],
                        "arousal": [0.2, 0.2, np.nan, 0.4, np.nan, np.nan]})
  segments = pd.DataFrame({"video": "clip", "utterance": ["a", "b"], "start": [0.0, 1.5], "end": [1.5, 3.0]})
  choice = postprocess.PostprocessChoice()
  out = inference.utterance_table(table, segments, fps=2.0, choice=choice)
  # [0, 1.5) s at 2 fps: frames 0-2, two with a face; [1.5, 3): frames 3-5, one.
  np.testing.assert_allclose(out[["valence", "arousal"]].to_numpy(np.float64), [[0.2, 0.2], [0.5, 0.4]])
  assert list(out["frames"]) == [3, 3] and list(out["faces_found"]) == [2, 1]
  # A variable-rate clip: segments take the frames by their decoded times, as data prep cuts
  # them, not by index / fps (frames 0-2 at 0, 0.25, 0.5 s, then 1.5, 2.5, 3.5 s).
  vfr = table.assign(time=[0.0, 0.25, 0.5, 1.5, 2.5, 3.5])
  by_time = inference.utterance_table(vfr, segments, fps=2.0, choice=choice)
  assert list(by_time["frames"]) == [3, 2] and list(by_time["faces_found"]) == [2, 1]
  # No filter, no smoothing: post = raw.
  np.testing.assert_allclose(out[["valence_post", "arousal_post"]].to_numpy(np.float64),
                             out[["valence", "arousal"]].to_numpy(np.float64))


# ---------------------------------------------------------------------------------- value ranges
@pytest.mark.slow
def test_raw_values_are_kept_and_post_values_clipped_to_the_label_ranges(face_video, tmp_path):
  """An out-of-domain model (|valence| > 2): raw columns keep it, the _post columns and the plot stay in range."""
  config = _config()
  model = _model(config, seed=7)
  output = model.get_layer("output")
  kernel, bias = output.get_weights()
  output.set_weights([kernel * 15.0, bias])
  saved = serving.export_saved_model(model, config, str(tmp_path / "loud"))
  segments = tmp_path / "segments.csv"
  segments.write_text("start,end\n0,1.5\n1.5,3.6\n")
  for arousal_range, lo in ((None, 0.0), ("-1,1", -1.0)):
    predictor = inference.load_predictor(saved, arousal_range=arousal_range)
    assert predictor.ranges == ((-1.0, 1.0), (lo, 1.0))
    out = tmp_path / f"out{lo}"
    summary = inference.predict_video(predictor, face_video, str(out), utterances=str(segments), chunk_frames=7)
    table = pd.read_csv(out / "frames.csv")
    found = table["face_found"].to_numpy() == 1
    raw = table.loc[found, ["valence", "arousal"]].to_numpy()
    post = table.loc[found, ["valence_post", "arousal_post"]].to_numpy()
    assert np.abs(raw[:, 0]).max() > 2  # the network's raw values are kept, out of range
    assert post[:, 0].min() >= -1 and post[:, 0].max() <= 1
    assert post[:, 1].min() >= lo and post[:, 1].max() <= 1
    assert ((post[:, 0] == 1) | (post[:, 0] == -1)).any()  # clipped, not rescaled
    # The post columns = the median filter of the raw values, clipped (before and after the gap).
    frame = table["frame"].to_numpy()
    for part in (found & (frame < 20), found & (frame >= 20)):
      want = inference.clip_values(postprocess.median_filter_frames(
          table.loc[part, ["valence", "arousal"]].to_numpy(), None, (3, 3)), predictor.ranges)
      np.testing.assert_allclose(table.loc[part, ["valence_post", "arousal_post"]].to_numpy(), want, atol=1e-6)
    outside = {"valence": int(((raw[:, 0] < -1) | (raw[:, 0] > 1)).sum()),
               "arousal": int(((raw[:, 1] < lo) | (raw[:, 1] > 1)).sum())}
    assert summary["raw_outside_range"] == outside and outside["valence"] > 0
    assert summary["value_ranges"] == {"valence": [-1.0, 1.0], "arousal": [lo, 1.0]}
    utterances = pd.read_csv(out / "utterances.csv")
    assert utterances["valence_post"].between(-1, 1).all() and utterances["arousal_post"].between(lo, 1).all()
    assert (out / "plot.png").stat().st_size > 10_000


@pytest.mark.slow
@pytest.mark.parametrize("text", ["1", "a,b", "1,0", "0,inf", "0,1,2"])
def test_a_bad_arousal_range_is_refused_naming_it(trained, text):
  with pytest.raises(ValueError, match=f"arousal range '{text}'"):
    inference.load_predictor(trained[2], arousal_range=text)
