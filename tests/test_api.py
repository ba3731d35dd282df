"""The Python API (`omg_cnnrnn.load`): videos to DataFrames, face crops with the state carried."""

import cv2
import numpy as np
import pandas as pd
import pytest

import omg_cnnrnn
import predict_helpers as helpers
from omg_cnnrnn import api, inference

pytestmark = pytest.mark.slow  # each test loads the shared SavedModel or reads videos through it

SIZE = helpers.SIZE


@pytest.fixture(scope="module")
def trained(tmp_path_factory, predict_model):
  """The testing row as a SavedModel and as a workdir (same weights: conftest's shared one), and a face video."""
  model, _, saved, workdir = predict_model
  root = tmp_path_factory.mktemp("api")
  video = helpers.face_video(str(root / "clip.mp4"), frames=30, hidden=range(10, 20))
  return model, saved, workdir, video


def test_load_returns_a_model_for_saved_models_and_workdirs(trained):
  _, saved, workdir, _ = trained
  for path, kind in ((saved, "saved_model"), (workdir, "workdir")):
    model = omg_cnnrnn.load(path)
    assert isinstance(model, api.EmotionModel) and model.predictor.kind == kind
    assert model.image_size == SIZE and model.ranges == ((-1.0, 1.0), (0.0, 1.0))
  assert omg_cnnrnn.load(saved, arousal_range=(-1, 1)).ranges[1] == (-1.0, 1.0)
  with pytest.raises(inference.ModelError, match="nowhere: model not found"):
    omg_cnnrnn.load(workdir + "/nowhere")


def test_predict_video_returns_the_rows_of_frames_csv(trained, tmp_path):
  _, saved, _, video = trained
  model = omg_cnnrnn.load(saved, chunk_frames=7)
  table = model.predict_video(video)
  assert list(table.columns) == list(inference.FRAME_COLUMNS) and len(table) == 30
  assert table["frame"].dtype == np.int64 and list(table["frame"]) == list(range(30))
  # The same as omg-predict's frames.csv, and as the frames.csv written through output_dir.
  inference.predict_video(model.predictor, video, str(tmp_path / "cli"), chunk_frames=16)
  written = pd.read_csv(tmp_path / "cli" / "frames.csv")
  pd.testing.assert_frame_equal(table, api.read_frames_csv(str(tmp_path / "cli" / "frames.csv")), atol=1e-6,
                                check_dtype=False)
  assert np.allclose(table["valence"], written["valence"], atol=1e-6, equal_nan=True)
  again = model.predict_video(video, output_dir=str(tmp_path / "out"))
  pd.testing.assert_frame_equal(table, again, atol=1e-6)
  assert (tmp_path / "out" / "plot.png").exists() and (tmp_path / "out" / "summary.json").exists()
  found = table["face_found"] == 1
  assert found.sum() >= 15 and table.loc[~found, "valence"].isna().all()
  assert table.loc[found, "arousal_post"].between(0, 1).all()


def test_predict_video_reads_an_opened_capture(trained):
  _, saved, _, video = trained
  model = omg_cnnrnn.load(saved)
  from_file = model.predict_video(video)
  capture = cv2.VideoCapture(video)
  try:
    from_capture = model.predict_video(capture)
    assert capture.isOpened()  # the caller's to release
  finally:
    capture.release()
  pd.testing.assert_frame_equal(from_file, from_capture, atol=1e-6)
  capture = cv2.VideoCapture(video)
  try:
    first = model.predict_video(capture, max_frames=8)
  finally:
    capture.release()
  assert list(first["frame"]) == list(range(8))
  # The first 8 frames' raw values equal the whole video's (the network sees only the past).
  np.testing.assert_allclose(first["valence"], from_file["valence"][:8], atol=1e-6)


def test_predict_faces_carries_the_state_between_calls(trained):
  keras_model, saved, workdir, _ = trained
  crops = np.random.default_rng(1).integers(0, 256, (11, SIZE, SIZE, 3), dtype=np.uint8)
  whole = keras_model({"frames": helpers.scaled(crops)[None], "mask": np.ones((1, 11), np.float32)},
                      training=False).numpy()[0]
  assert np.abs(whole).max() > 0.05
  for path in (saved, workdir):
    model = omg_cnnrnn.load(path, chunk_frames=3)
    pieces = [model.predict_faces(crops[:4]), model.predict_faces(crops[4]), model.predict_faces(crops[5:])]
    got = pd.concat(pieces, ignore_index=True)
    assert list(got.columns) == list(api.FACE_COLUMNS) and len(got) == 11
    np.testing.assert_allclose(got[["valence", "arousal"]].to_numpy(), whole, atol=1e-5)
    np.testing.assert_allclose(got[["valence_clipped", "arousal_clipped"]].to_numpy(),
                               inference.clip_values(whole, model.ranges), atol=1e-5)
    assert np.abs(model.state).max() > 0
    # Without the carried state the same crops give other values; reset() starts afresh.
    fresh = omg_cnnrnn.load(path).predict_faces(crops[5:])
    assert not np.allclose(fresh["valence"], whole[5:, 0], atol=1e-3)
    model.reset()
    assert not model.state.any()
    np.testing.assert_allclose(model.predict_faces(crops)[["valence", "arousal"]].to_numpy(), whole, atol=1e-5)


def test_predict_faces_resizes_other_crop_sizes_and_refuses_bad_crops(trained):
  _, saved, _, _ = trained
  model = omg_cnnrnn.load(saved)
  big = np.random.default_rng(2).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
  small = np.stack([cv2.resize(c, (SIZE, SIZE), interpolation=cv2.INTER_AREA) for c in big])
  a = model.predict_faces(big)
  model.reset()
  np.testing.assert_allclose(a.to_numpy(), model.predict_faces(small).to_numpy(), atol=1e-6)
  with pytest.raises(ValueError, match="uint8 RGB crops .* got dtype float32"):
    model.predict_faces(big.astype(np.float32))
  with pytest.raises(ValueError, match=r"got shape \(3, 64, 64\)"):
    model.predict_faces(big[..., 0])
  with pytest.raises(ValueError, match=r"got shape \(3, 64, 64, 4\)"):
    model.predict_faces(np.zeros((3, 64, 64, 4), np.uint8))


def test_predict_video_refuses_bad_videos_naming_them(trained, tmp_path):
  _, saved, _, _ = trained
  model = omg_cnnrnn.load(saved)
  with pytest.raises(omg_cnnrnn.faces.VideoError, match="missing.mp4: file not found"):
    model.predict_video(str(tmp_path / "missing.mp4"))
  capture = cv2.VideoCapture(str(tmp_path / "missing.mp4"))
  with pytest.raises(omg_cnnrnn.faces.VideoError, match="capture is not opened"):
    model.predict_video(capture)
  with pytest.raises(ValueError, match="need output_dir"):
    model.predict_video(str(tmp_path / "missing.mp4"), annotated_video=True)
