"""Data preparation end to end on a small synthetic set: good and bad inputs, resume, sharding, layouts."""

import filecmp
import glob
import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest

from data_prep import common, prepare_affwild, prepare_omg, synthesize, synthetic_faces
from omg_cnnrnn import faces
from omg_cnnrnn.data import features, read_prepared, records

CONFIG = faces.FaceConfig()


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
  root = tmp_path_factory.mktemp("synth")
  synthesize.synthesize(str(root), seed=3, preset="smoke")
  return root


def _prepare(csv, videos, out, **kwargs):
  items, problems, _ = prepare_omg.build_items(str(csv), str(videos), kwargs.pop("layout", None))
  return common.run(items, str(out), problems, CONFIG, progress=False, **kwargs)


def test_prepared_utterances_match_the_labels_and_true_boxes(synth, tmp_path):
  csv = synth / "omg" / "omg_TrainVideos.csv"
  manifest = _prepare(csv, synth / "omg" / "videos", tmp_path / "out")
  labels = pd.read_csv(csv)
  assert manifest["splits"]["train"]["ok"] == len(labels)
  got = {(u["video"], u["utterance"]): u for u in read_prepared(str(tmp_path / "out"))}
  assert set(got) == set(zip(labels["video"], labels["utterance"]))
  ious = []
  for row in labels.itertuples():
    u = got[(row.video, row.utterance)]
    assert u["frames"].dtype == np.uint8 and u["frames"].shape[1:] == (96, 96, 3)
    assert u["valence"] == pytest.approx(row.valence, abs=1e-6) and u["arousal"] == pytest.approx(row.arousal, abs=1e-6)
    with open(synth / "omg" / "ground_truth" / row.video / f"{row.utterance}.json") as f:
      truth = json.load(f)
    assert len(u["face_found"]) == len(truth["boxes"])  # never dropped
    for found, box, true_box in zip(u["face_found"], u["boxes"], truth["boxes"]):
      if found and true_box is not None:
        ious.append(faces.box_iou(box, true_box))
      if not found:
        assert np.isnan(box).all()
  assert np.mean(ious) > 0.7


def test_bad_inputs_are_reported_beside_good_ones(synth, tmp_path):
  videos = tmp_path / "videos"
  shutil.copytree(synth / "omg" / "videos", videos)
  labels = pd.read_csv(synth / "omg" / "omg_TrainVideos.csv")
  good = labels.iloc[0]
  (videos / good.video / "zero.mp4").write_bytes(b"")
  (videos / good.video / "text.mp4").write_text("not a video\n")
  rng = np.random.default_rng(0)
  look = synthetic_faces.Appearance.random(rng, 160, 120)
  synthesize.write_mp4(str(videos / good.video / "noface.mp4"),
                       [synthetic_faces.render_frame(look, 0, 0, (80, 60), 0, 1, 1, visible=False)[0]] * 4, 5.0)
  extra = [("missing.mp4", 0.5, 0.1), ("zero.mp4", 0.5, 0.1), ("text.mp4", 0.5, 0.1), ("noface.mp4", 0.5, 0.1),
           ("nan.mp4", float("nan"), 0.1), ("range.mp4", 0.5, 3.0)]
  rows = [dict(good, utterance=u, arousal=a, valence=v) for u, a, v in extra]
  rows.append(dict(good, utterance="endstart.mp4", start=5.0, end=4.0))
  rows.append(dict(good))  # duplicate of row 1
  table = pd.concat([labels, pd.DataFrame(rows)], ignore_index=True)
  csv = tmp_path / "omg_TrainVideos.csv"
  table.to_csv(csv, index=False)
  manifest = _prepare(csv, videos, tmp_path / "out")
  assert manifest["splits"]["train"]["ok"] == len(labels)
  reasons = {(r["utterance"]): r["reason"] for r in manifest["items"] + manifest["rejected_inputs"]
             if r.get("status") != "ok"}
  assert "not found" in reasons["missing.mp4"]
  assert "zero-byte" in reasons["zero.mp4"]
  assert "not a video" in reasons["text.mp4"] or "not a readable video" in reasons["text.mp4"]
  assert "no face found" in reasons["noface.mp4"]
  assert "arousal is not a number" in reasons["nan.mp4"]
  assert "valence 3 outside" in reasons["range.mp4"]
  assert "end 4 <= start 5" in reasons["endstart.mp4"]
  assert any("duplicate" in r["reason"] for r in manifest["rejected_inputs"])
  with pytest.raises(SystemExit, match="--strict: 8 bad inputs"):
    _prepare(csv, videos, tmp_path / "out", strict=True)


def test_interrupted_run_resumes_to_byte_identical_shards(synth, tmp_path, monkeypatch):
  csv, videos = synth / "omg" / "omg_TrainVideos.csv", synth / "omg" / "videos"
  _prepare(csv, videos, tmp_path / "whole")
  calls = {"n": 0}
  real = common.process_item

  def crash_after_two(*args, **kwargs):
    if calls["n"] == 2:
      raise KeyboardInterrupt("killed")
    calls["n"] += 1
    return real(*args, **kwargs)

  monkeypatch.setattr(common, "process_item", crash_after_two)
  with pytest.raises(KeyboardInterrupt):
    _prepare(csv, videos, tmp_path / "resumed")
  assert not glob.glob(str(tmp_path / "resumed" / "*.tfrecord"))
  resumed_calls = []
  monkeypatch.setattr(common, "process_item", lambda item, *a, **k: resumed_calls.append(item) or real(item, *a, **k))
  _prepare(csv, videos, tmp_path / "resumed")
  # Only the utterances the killed run had not finished are processed again.
  assert len(resumed_calls) == len(pd.read_csv(csv)) - 2
  shards = sorted(os.path.basename(p) for p in glob.glob(str(tmp_path / "whole" / "*.tfrecord")))
  assert shards and shards == sorted(os.path.basename(p) for p in glob.glob(str(tmp_path / "resumed" / "*.tfrecord")))
  for name in shards:
    assert filecmp.cmp(tmp_path / "whole" / name, tmp_path / "resumed" / name, shallow=False), name


def test_job_array_shards_partition_the_inputs(synth, tmp_path):
  csv, videos = synth / "omg" / "omg_TrainVideos.csv", synth / "omg" / "videos"
  for i in range(2):
    _prepare(csv, videos, tmp_path / "out", shard_index=i, num_shards=2)
  files = sorted(os.path.basename(p) for p in glob.glob(str(tmp_path / "out" / "*.tfrecord")))
  assert files == ["train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]
  per_shard = [{(ex["video"], ex["utterance"]) for ex in map(features.decode_numpy, records.read_records(str(p)))}
               for p in sorted((tmp_path / "out").glob("train-*.tfrecord"))]
  assert per_shard[0] and per_shard[1] and not per_shard[0] & per_shard[1]
  assert len(per_shard[0] | per_shard[1]) == len(pd.read_csv(csv))


def test_whole_video_layout_cuts_utterances_by_time(synth, tmp_path):
  csv = synth / "omg" / "omg_ValidationVideos.csv"
  _prepare(csv, synth / "omg" / "youtube", tmp_path / "whole", layout="whole")
  _prepare(csv, synth / "omg" / "videos", tmp_path / "utt")
  whole = {(u["video"], u["utterance"]): len(u["face_found"]) for u in read_prepared(str(tmp_path / "whole"))}
  utt = {(u["video"], u["utterance"]): len(u["face_found"]) for u in read_prepared(str(tmp_path / "utt"))}
  assert whole == utt


@pytest.mark.parametrize("fmt", ["affwild", "affwild2"])
def test_affwild_formats(synth, tmp_path, fmt):
  items, problems = prepare_affwild.build_items(str(synth / fmt / "videos"), str(synth / fmt / "annotations"), fmt)
  assert items and not problems
  common.run(items, str(tmp_path / fmt), problems, CONFIG, progress=False)
  for u in read_prepared(str(tmp_path / fmt)):
    assert u["dataset"] == fmt and len(u["label_mask"]) == len(u["face_found"])
    if fmt == "affwild2":
      assert not u["label_mask"][0] and u["label_mask"].sum() > 0  # the -5 frames are masked, kept
    else:
      assert u["label_mask"].all()
    assert np.abs(u["frame_valence"]).max() <= 1.0
