"""Many videos in one call (`omg-predict --videos`): index, resuming, bad videos, workers, listing."""

import json
import os
import re

import numpy as np
import pandas as pd
import pytest

import cli_runner
import predict_helpers as helpers
from omg_cnnrnn import batch, inference

pytestmark = pytest.mark.slow  # each test runs the SavedModel over videos


@pytest.fixture(scope="module")
def setup(tmp_path_factory, predict_model):
  """A SavedModel (conftest's shared one) and a folder: two face videos, a text file named .mp4, a truncated video."""
  root = tmp_path_factory.mktemp("batch")
  saved = predict_model[2]
  clips = root / "clips"
  clips.mkdir()
  helpers.face_video(str(clips / "alpha.mp4"), frames=24, hidden=range(8, 12), seed=1)
  helpers.face_video(str(clips / "beta.mp4"), frames=18, seed=2)
  (clips / "notes.mp4").write_text("not a video\n")
  helpers.face_video(str(root / "long.mp4"), frames=120, seed=3)
  data = (root / "long.mp4").read_bytes()
  (clips / "cut.mp4").write_bytes(data[:len(data) // 2])  # decodes part-way, then stops
  return saved, clips


def _run(saved, videos, out, **kwargs):
  predictor = inference.load_predictor(saved)
  return batch.predict_videos(predictor, videos, str(out), progress=False, chunk_frames=8, **kwargs)


def test_each_video_gets_a_folder_and_a_row_and_bad_ones_are_named(setup, tmp_path):
  saved, clips = setup
  videos = batch.list_videos(str(clips))
  assert [os.path.basename(v) for v in videos] == ["alpha.mp4", "beta.mp4", "cut.mp4", "notes.mp4"]
  index = _run(saved, videos, tmp_path / "out")
  assert list(index.columns) == list(batch.INDEX_COLUMNS)
  assert list(index["video"]) == videos
  status = dict(zip(index["video"].map(os.path.basename), index["status"]))
  assert status["alpha.mp4"] == status["beta.mp4"] == "ok"
  assert status["notes.mp4"].startswith("error: ") and "notes.mp4: not a video" in status["notes.mp4"]
  assert "cut.mp4" in status["cut.mp4"] and status["cut.mp4"].startswith("error: ")
  assert not (tmp_path / "out" / "cut" / "frames.csv").exists()  # no half-written result
  # Each video's folder = omg-predict on that video alone; the index holds its counts and statistics.
  for name, frames in (("alpha", 24), ("beta", 18)):
    alone = tmp_path / f"alone_{name}"
    inference.predict_video(inference.load_predictor(saved), str(clips / f"{name}.mp4"), str(alone), chunk_frames=8)
    got = pd.read_csv(tmp_path / "out" / name / "frames.csv")
    pd.testing.assert_frame_equal(got, pd.read_csv(alone / "frames.csv"))
    row = index[index["video"].str.endswith(f"{name}.mp4")].iloc[0]
    found = got["face_found"] == 1
    assert row["frames"] == frames == len(got) and row["faces_found"] == found.sum() > 0
    assert row["output_dir"] == str(tmp_path / "out" / name)
    np.testing.assert_allclose(row["valence_mean"], got.loc[found, "valence_post"].mean(), rtol=1e-5)
    np.testing.assert_allclose(row["arousal_sd"], got.loc[found, "arousal_post"].std(ddof=0), rtol=1e-4, atol=1e-7)
    assert row["seconds"] > 0
  pd.testing.assert_frame_equal(index, pd.read_csv(tmp_path / "out" / "index.csv"))


def test_a_second_run_skips_finished_videos_and_redoes_the_rest(setup, tmp_path):
  saved, clips = setup
  videos = [str(clips / "alpha.mp4"), str(clips / "beta.mp4"), str(clips / "notes.mp4")]
  first = _run(saved, videos, tmp_path / "out")
  stamp = os.stat(tmp_path / "out" / "alpha" / "frames.csv").st_mtime_ns
  os.remove(tmp_path / "out" / "beta" / "summary.json")  # killed before beta finished
  second = _run(saved, videos, tmp_path / "out")
  assert list(second["status"].str.split(":").str[0]) == ["done earlier", "ok", "error"]
  assert os.stat(tmp_path / "out" / "alpha" / "frames.csv").st_mtime_ns == stamp  # not recomputed
  for column in ("frames", "faces_found", "valence_mean", "arousal_sd"):
    np.testing.assert_allclose(second[column][:2], first[column][:2], rtol=1e-6)


def test_workers_give_the_same_results(setup, tmp_path):
  saved, clips = setup
  videos = batch.list_videos(str(clips / "*.mp4"))
  inline = _run(saved, videos, tmp_path / "inline")
  threaded = _run(saved, videos, tmp_path / "threaded", num_workers=2, prefetch=5)
  pd.testing.assert_frame_equal(inline.drop(columns=["output_dir", "seconds"]),
                                threaded.drop(columns=["output_dir", "seconds"]))
  for name in ("alpha", "beta"):
    a = (tmp_path / "inline" / name / "frames.csv").read_text()
    assert a == (tmp_path / "threaded" / name / "frames.csv").read_text()


def test_a_folder_holding_another_videos_results_is_not_overwritten(setup, tmp_path):
  saved, clips = setup
  out = tmp_path / "out"
  _run(saved, [str(clips / "beta.mp4")], out)
  other = tmp_path / "elsewhere"
  other.mkdir()
  (other / "beta.mp4").write_bytes((clips / "beta.mp4").read_bytes())
  before = (out / "beta" / "frames.csv").read_text()
  index = _run(saved, [str(other / "beta.mp4")], out)
  assert "holds the results of another video" in index["status"][0]
  assert (out / "beta" / "frames.csv").read_text() == before


def test_listing_folders_patterns_and_list_files(tmp_path):
  (tmp_path / "a").mkdir()
  for name in ("a/x.mp4", "a/y.MOV", "a/z.txt", "b.mp4"):
    (tmp_path / name).write_bytes(b"x")
  assert batch.list_videos(str(tmp_path / "a")) == [str(tmp_path / "a" / "x.mp4"), str(tmp_path / "a" / "y.MOV")]
  assert batch.list_videos(str(tmp_path / "**" / "*.mp4")) == [str(tmp_path / "a" / "x.mp4"), str(tmp_path / "b.mp4")]
  listing = tmp_path / "list.txt"
  listing.write_text("# my clips\nb.mp4\n\n  a/x.mp4\nb.mp4\nmissing.mp4\n")
  assert batch.list_videos(str(listing)) == [str(tmp_path / n) for n in ("b.mp4", "a/x.mp4", "missing.mp4")]
  # Videos sharing a file name get folders that differ.
  names = batch.output_names([str(tmp_path / "a" / "x.mp4"), str(tmp_path / "x.mp4"), str(tmp_path / "b.mp4")])
  assert names[2] == "b" and names[0] != names[1] and all(n.startswith("x-") for n in names[:2])
  for spec, message in ((tmp_path / "nothing", "not found"), (tmp_path / "*.avi", "matches no file"),
                        (tmp_path / "b.mp4", "use --video"), (tmp_path / "empty", "holds no video")):
    if spec.name == "empty":
      spec.mkdir()
    with pytest.raises(batch.VideosError, match=f"--videos={re.escape(str(spec))}: .*{message}"):
      batch.list_videos(str(spec))
  (tmp_path / "blank.txt").write_text("# nothing\n\n")
  with pytest.raises(batch.VideosError, match="blank.txt: the list file names no video"):
    batch.list_videos(str(tmp_path / "blank.txt"))


def test_command_line_with_videos(setup, tmp_path):
  saved, clips = setup
  listing = tmp_path / "list.txt"
  listing.write_text(f"{clips / 'beta.mp4'}\n{tmp_path / 'missing.mp4'}\n")
  done = cli_runner.run("omg_cnnrnn.predict", [f"--model={saved}", f"--videos={listing}",
                                               f"--output_dir={tmp_path / 'out'}", "--noprogress", "--num_workers=1"])
  assert done.returncode == 1 and "1 of 2 videos failed" in done.stderr and "missing.mp4" in done.stderr
  assert json.loads(done.stdout.strip().splitlines()[-1])["ok"] == 1
  index = pd.read_csv(tmp_path / "out" / "index.csv")
  assert list(index["status"].str.split(":").str[0]) == ["ok", "error"]
  assert "missing.mp4: file not found" in index["status"][1]
  both = cli_runner.run("omg_cnnrnn.predict", [f"--model={saved}", f"--videos={listing}",
                                               f"--video={clips / 'beta.mp4'}", f"--output_dir={tmp_path / 'o2'}"])
  assert both.returncode != 0 and "exactly one of --video" in both.stderr and "Traceback" not in both.stderr


def test_every_face_of_many_videos(setup, tmp_path):
  saved, clips = setup
  two, _ = helpers.two_faces_video(str(tmp_path / "two.mp4"), frames=20)
  videos = [two, str(clips / "beta.mp4")]
  index = _run(saved, videos, tmp_path / "out", faces_mode="all")
  assert list(index["status"]) == ["ok", "ok"]
  for name, tracks in (("two", {1, 2}), ("beta", {1})):
    table = pd.read_csv(tmp_path / "out" / name / "frames.csv")
    assert list(table.columns) == list(inference.TRACK_FRAME_COLUMNS) and set(table["track"].dropna()) == tracks
    row = index[index["video"].str.endswith(f"{name}.mp4")].iloc[0]
    found = table["face_found"] == 1
    assert row["faces_found"] == table.loc[found, "frame"].nunique()
    np.testing.assert_allclose(row["valence_mean"], table.loc[found, "valence_post"].mean(), rtol=1e-5)
  # A rerun in the other mode does not overwrite them.
  again = _run(saved, videos, tmp_path / "out")
  assert all("holds --faces=all results" in s for s in again["status"])
  assert list(_run(saved, videos, tmp_path / "out", faces_mode="all")["status"]) == ["done earlier"] * 2
