"""Every person (`--faces=all`) and a chosen one (`--target`): two generated faces that cross paths."""

import json

import numpy as np
import pandas as pd
import pytest

import cli_runner
import predict_helpers as helpers
from omg_cnnrnn import faces, inference, postprocess, tracking


@pytest.fixture(scope="module")
def crossing(tmp_path_factory, predict_model):
  """The two faces' video, its true boxes and the shared model (conftest) as Keras model and SavedModel."""
  root = tmp_path_factory.mktemp("tracking")
  path, boxes = helpers.two_faces_video(str(root / "two.mp4"), frames=40)
  model, _, saved, _ = predict_model
  return path, boxes, model, saved


def _who(box, truth):
  """The generated person a box covers (IoU > 0.3), or None."""
  scores = {k: faces.box_iou(box, b) if b is not None else 0.0 for k, b in truth.items()}
  best = max(scores, key=scores.get)
  return best if scores[best] > 0.3 else None


@pytest.mark.slow
def test_two_faces_crossing_keep_their_ids(crossing):
  path, boxes, _, _ = crossing
  people: dict[int, set] = {}
  seen = {"A": 0, "B": 0}
  for i, (_, found) in enumerate(tracking.track_all(faces.read_frames(path))):
    assert len({track for track, _, _ in found}) == len(found) <= 2
    for track, box, crop in found:
      assert crop.shape == (96, 96, 3)
      who = _who(box, boxes[i])
      assert who is not None, (i, track, box)
      people.setdefault(track, set()).add(who)
      seen[who] += 1
  # One id per person through the crossing (A passes behind B mid-video), each found most of the time.
  assert people == {1: {"A"}, 2: {"B"}}
  assert seen["A"] >= 32 and seen["B"] >= 38


@pytest.mark.slow
def test_every_face_gets_its_own_rows_state_and_plot(crossing, tmp_path):
  path, boxes, model, saved = crossing
  predictor = inference.load_predictor(saved)
  summary = inference.predict_all_faces(predictor, path, str(tmp_path), chunk_frames=6)
  table = pd.read_csv(tmp_path / "frames.csv")
  assert list(table.columns) == list(inference.TRACK_FRAME_COLUMNS)
  assert sorted(table["frame"].unique()) == list(range(40)) and set(table["track"].dropna()) == {1, 2}
  assert not table.duplicated(["frame", "track"]).any()
  assert [t["track"] for t in summary["tracks"]] == [1, 2] and summary["frames"] == 40
  # Each track = its own crops through the network as ONE sequence from zeros (the other
  # person's frames never touch its state), the frames it is absent masked.
  tracked = list(tracking.track_all(faces.read_frames(path)))
  for track in (1, 2):
    crops = np.zeros((40, helpers.SIZE, helpers.SIZE, 3), np.uint8)
    mask = np.zeros(40, np.float32)
    for i, (_, found) in enumerate(tracked):
      for tid, _, crop in found:
        if tid == track:
          crops[i], mask[i] = inference.resize_crop(crop, helpers.SIZE), 1
    whole = model({"frames": helpers.scaled(crops)[None], "mask": mask[None]}, training=False).numpy()[0]
    rows = table[table["track"] == track].sort_values("frame")
    assert list(rows["frame"]) == list(np.flatnonzero(mask))
    np.testing.assert_allclose(rows[["valence", "arousal"]].to_numpy(), whole[mask > 0], atol=1e-5)
    post = rows[["valence_post", "arousal_post"]].to_numpy()
    assert post[:, 1].min() >= 0 and np.isfinite(post).all()
    assert (tmp_path / f"plot_track{track}.png").stat().st_size > 10_000
  # The two people's values differ (their own states and faces).
  a, b = (table[table["track"] == t]["valence"].to_numpy()[:20] for t in (1, 2))
  assert not np.allclose(a, b, atol=1e-3)


def test_track_post_filters_each_track_and_restarts_after_a_gap():
  choice = postprocess.PostprocessChoice(median_window=(3, 3), smoothing_k=(0.0, 0.0))
  rng = np.random.default_rng(0)
  frames = list(range(10)) + list(range(20, 30))  # track 1 away for 10 frames (> the window)
  table = pd.DataFrame({"frame": frames + list(range(20)), "track": [1] * 20 + [2] * 20,
                        "face_found": 1, "valence": rng.normal(size=40), "arousal": rng.uniform(size=40)})
  post = inference.track_post(table, choice, ((-1, 1), (0, 1)))
  values = table[["valence", "arousal"]].to_numpy()
  for part in (slice(0, 10), slice(10, 20), slice(20, 40)):
    want = inference.clip_values(postprocess.median_filter_frames(values[part], None, (3, 3)), ((-1, 1), (0, 1)))
    np.testing.assert_allclose(post[part], want)


@pytest.mark.slow
def test_target_a_point_follows_that_person(crossing, tmp_path):
  path, boxes, _, saved = crossing
  for point, person in (((390, 200), "B"), ((90, 105), "A")):
    stream = tracking.follow_point(faces.read_frames(path), point)
    rows = [(i, found, box) for i, (_, found, box, _) in enumerate(stream)]
    hits = [_who(box, boxes[i]) for i, found, box in rows if found]
    assert set(hits) == {person} and len(hits) >= 32
  for bad in ("middle", "1,2,3", "nan,4"):
    with pytest.raises(ValueError, match=f"--target='{bad}'"):
      tracking.parse_target(bad)
  assert tracking.parse_target("left") == "left" and tracking.parse_target(" 10,20.5") == (10.0, 20.5)


@pytest.mark.slow
def test_command_line_faces_all_and_target_point(crossing, tmp_path):
  path, boxes, _, saved = crossing
  base = [f"--model={saved}", f"--video={path}", "--noprogress"]
  done = cli_runner.run("omg_cnnrnn.predict", base + [f"--output_dir={tmp_path / 'all'}", "--faces=all"])
  assert done.returncode == 0, done.stderr[-2000:]
  assert set(pd.read_csv(tmp_path / "all" / "frames.csv")["track"].dropna()) == {1, 2}
  assert len(json.loads((tmp_path / "all" / "summary.json").read_text())["tracks"]) == 2
  done = cli_runner.run("omg_cnnrnn.predict", base + [f"--output_dir={tmp_path / 'b'}", "--target=400,210"])
  assert done.returncode == 0, done.stderr[-2000:]
  table = pd.read_csv(tmp_path / "b" / "frames.csv")
  assert len(table) == 40 and list(table.columns) == list(inference.FRAME_COLUMNS)
  found = table[table["face_found"] == 1]
  assert {_who(r[["x0", "y0", "x1", "y1"]].to_numpy(float), boxes[int(r["frame"])]) for _, r in found.iterrows()} == {"B"}
  bad = cli_runner.run("omg_cnnrnn.predict", base + [f"--output_dir={tmp_path / 'x'}", "--faces=all",
                                                     "--target=left"])
  assert bad.returncode != 0 and "--target picks one person" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.slow
def test_python_api_every_face_and_a_point(crossing, tmp_path):
  import omg_cnnrnn

  path, boxes, _, saved = crossing
  model = omg_cnnrnn.load(saved)
  tracks = model.predict_video(path, faces="all")
  inference.predict_all_faces(model.predictor, path, str(tmp_path))
  pd.testing.assert_frame_equal(tracks, pd.read_csv(tmp_path / "frames.csv", dtype={"track": "Int64"}))
  assert set(tracks["track"].dropna()) == {1, 2}
  chosen = model.predict_video(path, target=(390, 200))
  found = chosen[chosen["face_found"] == 1]
  assert list(chosen.columns) == list(inference.FRAME_COLUMNS) and len(found) >= 32
  assert {_who(r[["x0", "y0", "x1", "y1"]].to_numpy(float), boxes[int(r["frame"])]) for _, r in found.iterrows()} == {"B"}
  with pytest.raises(ValueError, match="target picks one person"):
    model.predict_video(path, faces="all", target="left")
