"""Live sources: a file played at its real frame rate; drops counted; rows as computed; latency percentiles."""

import json
import time

import cv2
import numpy as np
import pandas as pd
import pytest

import cli_runner
import predict_helpers as helpers
from omg_cnnrnn import faces, inference, live

pytestmark = pytest.mark.slow  # each test plays a video through the SavedModel


@pytest.fixture(scope="module")
def setup(tmp_path_factory, predict_model):
  """The shared model (conftest) as Keras model and SavedModel, and a 10 frames/s face video."""
  root = tmp_path_factory.mktemp("live")
  model, _, saved, _ = predict_model
  video = helpers.face_video(str(root / "clip.mp4"), frames=30, hidden=range(12, 16), fps=10.0)
  return model, saved, video


def _check_rows_equal_the_processed_frames(model, video, table):
  """Rows = the network over exactly the processed frames, in order, state carried; dropped ones unseen."""
  every = [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for _, f in faces.read_frames(video)]
  tracker = faces.FaceTracker()
  crops, found = [], []
  for index in table["frame"]:
    ok, _, crop = tracker.update(cv2.cvtColor(every[index], cv2.COLOR_BGR2RGB))
    crops.append(inference.resize_crop(crop, helpers.SIZE))
    found.append(ok)
  found = np.array(found)
  np.testing.assert_array_equal(table["face_found"].to_numpy() == 1, found)
  whole = model({"frames": helpers.scaled(np.stack(crops))[None], "mask": found[None].astype(np.float32)},
                training=False).numpy()[0]
  np.testing.assert_allclose(table.loc[found, ["valence", "arousal"]].to_numpy(), whole[found], atol=1e-5)
  np.testing.assert_allclose(table.loc[found, ["valence_post", "arousal_post"]].to_numpy(),
                             inference.clip_values(whole[found], ((-1, 1), (0, 1))), atol=1e-5)


def test_a_file_played_at_its_frame_rate(setup, tmp_path):
  model, saved, video = setup
  printed = []
  summary = live.run_live(inference.load_predictor(saved), video, str(tmp_path), play_file=True, printer=printed.append)
  table = pd.read_csv(tmp_path / "frames.csv")
  assert summary["frames_arrived"] == 30 == summary["frames_processed"] + summary["frames_dropped"]
  assert len(table) == summary["frames_processed"] == len(printed) and (np.diff(table["frame"]) > 0).all()
  assert printed[0].startswith(f"frame {table['frame'][0]} ")
  np.testing.assert_allclose(table["time"], table["frame"] / 10.0)
  _check_rows_equal_the_processed_frames(model, video, table)
  lat = summary["latency_ms"]
  assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
  assert json.loads((tmp_path / "summary.json").read_text())["frames_dropped"] == summary["frames_dropped"]


def test_frames_are_dropped_and_counted_when_the_model_falls_behind(setup, tmp_path):
  model, saved, video = setup
  predictor = inference.load_predictor(saved)
  fast_step = predictor.step

  def slow_step(crops, state):  # a model far slower than the 10 frames/s the file plays at
    time.sleep(0.35)
    return fast_step(crops, state)

  predictor.step = slow_step
  summary = live.run_live(predictor, video, str(tmp_path), play_file=True, quiet=True)
  table = pd.read_csv(tmp_path / "frames.csv")
  assert summary["frames_dropped"] > 0
  assert summary["frames_arrived"] == 30 == summary["frames_processed"] + summary["frames_dropped"]
  assert len(table) == summary["frames_processed"] < 30
  _check_rows_equal_the_processed_frames(model, video, table)


def test_live_sources_are_recognised_and_bad_ones_named(setup, tmp_path):
  assert live.is_live_source("0") and live.is_live_source("rtsp://host/x") and not live.is_live_source("a.mp4")
  with pytest.raises(faces.VideoError, match="97: OpenCV cannot open this camera"):
    live.open_capture("97")
  with pytest.raises(faces.VideoError, match="missing.mp4: OpenCV cannot open this video"):
    live.run_live(inference.load_predictor(setup[1]), str(tmp_path / "missing.mp4"), str(tmp_path), play_file=True)


def test_command_line_live(setup, tmp_path):
  _, saved, video = setup
  done = cli_runner.run("omg_cnnrnn.predict", [f"--model={saved}", f"--video={video}", "--live", "--max_frames=5",
                                               f"--output_dir={tmp_path}"])
  assert done.returncode == 0, done.stderr[-2000:]
  lines = done.stdout.strip().splitlines()
  assert sum(line.startswith("frame ") for line in lines) == 5
  result = json.loads(lines[-1])
  assert result["frames_processed"] == 5 and result["latency_ms"]["p50"] > 0
  assert len(pd.read_csv(tmp_path / "frames.csv")) == 5
