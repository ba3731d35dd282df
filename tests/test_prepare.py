"""Data preparation end to end on a small synthetic set: bad inputs, resume, job arrays, layouts, Aff-Wild."""

import filecmp
import glob
import hashlib
import json
import os
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest

import cli_runner
from data_prep import common, prepare_affwild, prepare_omg, synthesize, synthetic_faces
from omg_cnnrnn import faces
from omg_cnnrnn.data import features, labels as label_files, read_prepared, records

SETTINGS = common.Settings()


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
  root = tmp_path_factory.mktemp("synth")
  synthesize.synthesize(str(root), seed=3, preset="smoke")
  return root


def _prepare(csv, videos, out, layout=None, **kwargs):
  items, problems, _ = prepare_omg.build_items(str(csv), str(videos), layout)
  return common.run(items, str(out), problems, kwargs.pop("settings", SETTINGS), progress=False, **kwargs)


def _shards(out):
  return sorted(os.path.basename(p) for p in glob.glob(os.path.join(str(out), "*.tfrecord")))


def _same_shards(a, b):
  names = _shards(a)
  assert names and names == _shards(b)
  for name in names:
    assert filecmp.cmp(os.path.join(str(a), name), os.path.join(str(b), name), shallow=False), name


def test_prepared_utterances_match_the_labels_and_true_boxes(synth, tmp_path):
  csv = synth / "omg" / "omg_TrainVideos.csv"
  manifest = _prepare(csv, synth / "omg" / "videos", tmp_path / "out", output_shards=2)
  table = pd.read_csv(csv)
  stats = manifest["splits"]["train"]
  assert stats["prepared"] == stats["inputs"] == len(table) and stats["errors"] == 0
  assert stats["shards"] == _shards(tmp_path / "out") == ["train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]
  assert 0.5 < stats["face_found_ratio"] <= 1 and stats["valence_mean"] == pytest.approx(table["valence"].mean(), abs=1e-5)
  prepared = list(read_prepared(str(tmp_path / "out"), "train"))
  # Contiguous shards read in name order give the CSV order back.
  assert [(u["video"], u["utterance"]) for u in prepared] == list(zip(table["video"], table["utterance"]))
  ious = []
  for row, u, entry in zip(table.itertuples(), prepared, manifest["items"]):
    assert (entry["video"], entry["utterance"], entry["status"]) == (row.video, row.utterance, "ok")
    assert entry["num_frames"] == len(u["face_found"]) and entry["faces_found"] == u["face_found"].sum()
    assert entry["shard"] in stats["shards"]
    assert u["frames"].dtype == np.uint8 and u["frames"].shape[1:] == (96, 96, 3)
    assert u["valence"] == pytest.approx(row.valence, abs=1e-6) and u["arousal"] == pytest.approx(row.arousal, abs=1e-6)
    np.testing.assert_allclose(u["frame_valence"], row.valence, atol=1e-6)  # every frame carries the label
    assert u["label_mask"].all() and u["emotion"] == row.EmotionMaxVote and u["dataset"] == "omg"
    with open(synth / "omg" / "ground_truth" / row.video / f"{row.utterance}.json") as f:
      truth = json.load(f)
    assert len(u["face_found"]) == len(truth["boxes"])  # never dropped
    for found, box, crop, true_box in zip(u["face_found"], u["boxes"], u["frames"], truth["boxes"]):
      if found and true_box is not None:
        ious.append(faces.box_iou(box, true_box))
      if not found:
        assert np.isnan(box).all() and crop.max() < 16  # a black crop keeps the frame's place
  assert np.mean(ious) > 0.7


def _truncated_copy(src, dst, fraction):
  data = open(src, "rb").read()
  dst.write_bytes(data[:int(len(data) * fraction)])


def _corrupt_copy(src, dst):
  data = bytearray(open(src, "rb").read())
  rng = np.random.default_rng(0)
  start = len(data) // 4
  data[start:start + len(data) // 2] = rng.integers(0, 256, len(data) // 2, dtype=np.uint8).tobytes()
  dst.write_bytes(bytes(data))


def test_bad_inputs_are_reported_beside_good_ones(synth, tmp_path, capfd):
  videos = tmp_path / "videos"
  shutil.copytree(synth / "omg" / "videos", videos)
  table = pd.read_csv(synth / "omg" / "omg_TrainVideos.csv")
  good = table.iloc[0]
  folder = videos / good.video
  good_file = folder / good.utterance
  (folder / "zero.mp4").write_bytes(b"")
  (folder / "text.mp4").write_text("not a video\n")
  # A face photo under a video's name: FFmpeg would read it as a one-frame video.
  cv2.imwrite(str(folder / "photo.png"), synthetic_faces.base_head().astype(np.uint8)[..., ::-1])
  os.replace(folder / "photo.png", folder / "photo.mp4")
  _truncated_copy(good_file, folder / "truncated.mp4", 0.5)
  _corrupt_copy(good_file, folder / "corrupt.mp4")
  look = synthetic_faces.Appearance.random(np.random.default_rng(0), 160, 120)
  synthesize.write_mp4(str(folder / "noface.mp4"),
                       [synthetic_faces.render_frame(look, 0, 0, (80, 60), 0, 1, 1, visible=False)[0]] * 4, 5.0)
  extra = [("missing.mp4", 0.5, 0.1), ("zero.mp4", 0.5, 0.1), ("text.mp4", 0.5, 0.1), ("photo.mp4", 0.5, 0.1),
           ("truncated.mp4", 0.5, 0.1),
           ("corrupt.mp4", 0.5, 0.1), ("noface.mp4", 0.5, 0.1), ("nan.mp4", float("nan"), 0.1),
           ("range.mp4", 0.5, 3.0)]
  rows = [dict(good, utterance=u, arousal=a, valence=v) for u, a, v in extra]
  rows.append(dict(good, utterance="endstart.mp4", start=5.0, end=4.0))
  rows.append(dict(good))  # duplicate of data row 1
  csv = tmp_path / "omg_TrainVideos.csv"
  pd.concat([table, pd.DataFrame(rows)], ignore_index=True).to_csv(csv, index=False)
  manifest = _prepare(csv, videos, tmp_path / "out")
  stats = manifest["splits"]["train"]
  assert stats["prepared"] == len(table) and stats["errors"] == 11 and stats["inputs"] == len(table) + 11
  bad = {e["utterance"]: e for e in manifest["items"] if e["status"] == "error"}
  dup = [e for e in manifest["items"] if e["status"] == "error" and "duplicate" in e["reason"]]
  assert len(dup) == 1 and dup[0]["row"] == len(table) + 11 and "of row 1" in dup[0]["reason"]
  assert "file not found" in bad["missing.mp4"]["reason"]
  assert "zero-byte" in bad["zero.mp4"]["reason"]
  assert "not a video" in bad["text.mp4"]["reason"]
  assert "not a video: a PNG still image" in bad["photo.mp4"]["reason"]
  for name in ("truncated.mp4", "corrupt.mp4"):
    assert any(w in bad[name]["reason"] for w in ("truncated", "corrupt")), bad[name]["reason"]
  assert "no face found in any of its 4 frames" in bad["noface.mp4"]["reason"]
  assert "arousal is not a number" in bad["nan.mp4"]["reason"] and bad["nan.mp4"]["source"] == str(csv)
  assert "valence 3 outside [-1, 1]" in bad["range.mp4"]["reason"]
  assert "end 4 <= start 5" in bad["endstart.mp4"]["reason"]
  # Each is named on stderr too, with its file.
  err = capfd.readouterr().err
  for name in ("missing.mp4", "zero.mp4", "text.mp4", "photo.mp4", "truncated.mp4", "corrupt.mp4", "noface.mp4"):
    assert f"{folder / name} ({good.video}/{name})" in err
  assert f"{csv} row {len(table) + 8} ({good.video}/nan.mp4)" in err
  # The good ones are all there and nothing else.
  assert {u["utterance"] for u in read_prepared(str(tmp_path / "out"))} == set(table["utterance"])
  with pytest.raises(SystemExit, match="--strict: 11 bad inputs") as failure:
    _prepare(csv, videos, tmp_path / "out", strict=True)
  for name in ("missing.mp4", "corrupt.mp4", "endstart.mp4"):
    assert name in str(failure.value)


def test_csv_with_missing_columns_is_fatal(tmp_path):
  csv = tmp_path / "omg_TrainVideos.csv"
  csv.write_text("link,start,end,video,utterance,arousal\nl,0,1,abc,u.mp4,0.5\n")
  with pytest.raises(label_files.LabelFileError, match=r"omg_TrainVideos.csv: missing columns \['valence', 'EmotionMaxVote'\]"):
    prepare_omg.build_items(str(csv), str(tmp_path))


def test_interrupted_run_resumes_to_byte_identical_shards(synth, tmp_path, monkeypatch):
  csv, videos = synth / "omg" / "omg_TrainVideos.csv", synth / "omg" / "videos"
  n = len(pd.read_csv(csv))
  _prepare(csv, videos, tmp_path / "whole", output_shards=3)
  real = common.process_item
  calls = []

  def killed_after_two(item, *args, **kwargs):
    if len(calls) == 2:
      raise KeyboardInterrupt("killed")
    calls.append(item.key)
    return real(item, *args, **kwargs)

  monkeypatch.setattr(common, "process_item", killed_after_two)
  with pytest.raises(KeyboardInterrupt):
    _prepare(csv, videos, tmp_path / "resumed", output_shards=3)
  assert not _shards(tmp_path / "resumed")  # shards are assembled only at the end
  redone = []
  monkeypatch.setattr(common, "process_item", lambda item, *a, **k: redone.append(item.key) or real(item, *a, **k))
  manifest = _prepare(csv, videos, tmp_path / "resumed", output_shards=3)
  # Only the utterances the killed run had not finished are prepared again.
  assert len(redone) == n - 2 and not set(redone) & set(calls)
  assert [e["status"] for e in manifest["items"]].count("skipped-existing") == 2
  _same_shards(tmp_path / "whole", tmp_path / "resumed")
  # A rerun of a finished directory does nothing and keeps the bytes.
  redone.clear()
  manifest = _prepare(csv, videos, tmp_path / "resumed", output_shards=3)
  assert not redone and manifest["splits"]["train"]["skipped_existing"] == n
  _same_shards(tmp_path / "whole", tmp_path / "resumed")


def test_changed_inputs_and_damaged_records_are_redone(synth, tmp_path, monkeypatch):
  videos = synth / "omg" / "videos"
  table = pd.read_csv(synth / "omg" / "omg_TrainVideos.csv")
  csv = tmp_path / "omg_TrainVideos.csv"
  table.to_csv(csv, index=False)
  out = tmp_path / "out"
  _prepare(csv, videos, out)
  table.loc[1, "valence"] = -0.875  # a corrected label
  table.to_csv(csv, index=False)
  damaged = next((out / common.ITEMS_DIR / "train").glob("*.pb"))
  damaged.write_bytes(damaged.read_bytes()[:-1])
  redone = []
  real = common.process_item
  monkeypatch.setattr(common, "process_item", lambda item, *a, **k: redone.append(item.utterance) or real(item, *a, **k))
  _prepare(csv, videos, out)
  assert len(redone) == 2 and table.loc[1, "utterance"] in redone
  got = {(u["video"], u["utterance"]): u["valence"] for u in read_prepared(str(out))}
  assert got[(table.loc[1, "video"], table.loc[1, "utterance"])] == pytest.approx(-0.875)
  # Other face settings: everything is prepared again.
  redone.clear()
  _prepare(csv, videos, out, settings=common.Settings(face=faces.FaceConfig(margin=0.2)))
  assert len(redone) == len(table)
  # A row removed from the CSV leaves the split and its item files go.
  table.iloc[1:].to_csv(csv, index=False)
  manifest = _prepare(csv, videos, out, settings=common.Settings(face=faces.FaceConfig(margin=0.2)))
  assert len(manifest["items"]) == len(table) - 1
  assert len(list((out / common.ITEMS_DIR / "train").glob("*.pb"))) == len(table) - 1
  assert len(list(read_prepared(str(out)))) == len(table) - 1
  # Nothing usable left: the split's shards go too (none would be stale beside new ones).
  table.assign(arousal=7.0).to_csv(csv, index=False)
  manifest = _prepare(csv, videos, out)
  assert manifest["splits"]["train"]["errors"] == len(table) and not _shards(out)


def test_job_array_shards_partition_the_inputs(synth, tmp_path):
  csv, videos = synth / "omg" / "omg_TrainVideos.csv", synth / "omg" / "videos"
  table = pd.read_csv(csv)
  first = _prepare(csv, videos, tmp_path / "out", shard_index=0, num_shards=2)
  # Job 1 has not run: its items are pending in the manifest.
  assert first["splits"]["train"]["pending"] == len(table) // 2
  manifest = _prepare(csv, videos, tmp_path / "out", shard_index=1, num_shards=2)
  assert manifest["splits"]["train"]["prepared"] == len(table) and manifest["splits"]["train"]["pending"] == 0
  assert _shards(tmp_path / "out") == ["train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]
  per_shard = [[(ex["video"], ex["utterance"]) for ex in map(features.decode_numpy, records.read_records(str(p)))]
               for p in sorted((tmp_path / "out").glob("train-*.tfrecord"))]
  pairs = list(zip(table["video"], table["utterance"]))
  assert per_shard == [pairs[0::2], pairs[1::2]]  # job i takes inputs i, i + n, ...
  assert {e["shard"] for e in manifest["items"]} == set(_shards(tmp_path / "out"))
  with pytest.raises(ValueError, match="--shard_index=2 outside"):
    _prepare(csv, videos, tmp_path / "out", shard_index=2, num_shards=2)
  # A single job afterwards replaces the array's shards instead of adding to them.
  _prepare(csv, videos, tmp_path / "out", output_shards=3)
  assert _shards(tmp_path / "out") == [f"train-0000{i}-of-00003.tfrecord" for i in range(3)]
  assert len(list(read_prepared(str(tmp_path / "out")))) == len(table)


def test_whole_video_layout_cuts_utterances_by_time(synth, tmp_path):
  csv = synth / "omg" / "omg_ValidationVideos.csv"
  items, _, layout = prepare_omg.build_items(str(csv), str(synth / "omg" / "youtube"))
  assert layout == "whole" and items[0].start is not None
  _prepare(csv, synth / "omg" / "youtube", tmp_path / "whole")
  _prepare(csv, synth / "omg" / "videos", tmp_path / "utt")
  whole = {(u["video"], u["utterance"]): u for u in read_prepared(str(tmp_path / "whole"), "validation")}
  utt = {(u["video"], u["utterance"]): u for u in read_prepared(str(tmp_path / "utt"), "validation")}
  assert whole.keys() == utt.keys()
  for key, u in utt.items():
    assert len(whole[key]["face_found"]) == len(u["face_found"])
    # Timestamps count from the start of the source file: the cut ones start at `start`.
    start = float(pd.read_csv(csv).set_index(["video", "utterance"]).loc[key, "start"])
    assert whole[key]["timestamp"][0] == pytest.approx(start, abs=0.11) and u["timestamp"][0] == 0


@pytest.mark.slow  # worker subprocesses: half a minute or more on 2 cores
def test_command_line_with_workers_matches_in_process(synth, tmp_path):
  csv = synth / "omg" / "omg_ValidationVideos.csv"
  _prepare(csv, synth / "omg" / "videos", tmp_path / "inproc", output_shards=2)
  # The command line runs in this process (tests/cli_runner.py); its two workers are processes.
  args = [f"--labels={csv}", f"--videos={synth / 'omg' / 'videos'}", f"--output_dir={tmp_path / 'cli'}",
          "--num_workers=2", "--output_shards=2", "--strict", "--noprogress"]
  done = cli_runner.run("data_prep.prepare_omg", args)
  assert done.returncode == 0, done.stderr[-3000:]
  _same_shards(tmp_path / "inproc", tmp_path / "cli")
  with open(tmp_path / "cli" / "manifest.json") as f:
    assert json.load(f)["last_run"]["num_workers"] == 2
  bad = tmp_path / "omg_TestVideos.csv"
  bad.write_text("link,start,end,video,utterance\nl,0,1,abc,u.mp4\n")
  done = cli_runner.run("data_prep.prepare_omg", [f"--labels={bad}", args[1], f"--output_dir={tmp_path / 'bad'}"])
  assert done.returncode != 0
  assert "omg_TestVideos.csv: missing columns ['arousal', 'valence', 'EmotionMaxVote']" in done.stderr


# ------------------------------------------------------------------------------- Aff-Wild
@pytest.mark.parametrize("fmt", ["affwild", "affwild2"])
def test_affwild_formats(synth, tmp_path, fmt):
  items, problems = prepare_affwild.build_items(str(synth / fmt / "videos"), str(synth / fmt / "annotations"), fmt)
  assert items and not problems
  manifest = common.run(items, str(tmp_path / fmt), problems, SETTINGS, progress=False)
  assert manifest["splits"]["train"]["prepared"] == len(items)
  for u in read_prepared(str(tmp_path / fmt), "train"):
    assert u["dataset"] == fmt and u["video"] == u["utterance"]
    assert len(u["label_mask"]) == len(u["face_found"]) == len(u["frames"])
    truth = (label_files.read_affwild(*(str(synth / fmt / "annotations" / "train" / d / f"{u['video']}.txt")
                                        for d in ("valence", "arousal")))
             if fmt == "affwild" else label_files.read_affwild2(str(synth / fmt / "annotations" / f"{u['video']}.txt")))
    np.testing.assert_array_equal(u["label_mask"], truth.mask)  # Aff-Wild2: -5 frames kept, masked
    np.testing.assert_allclose(u["frame_valence"], truth.values[:, 0], atol=1e-6)
    np.testing.assert_allclose(u["frame_arousal"], truth.values[:, 1], atol=1e-6)
    assert u["valence"] == pytest.approx(truth.values[truth.mask, 0].mean(), abs=1e-5)
    if fmt == "affwild2":
      assert not u["label_mask"][0] and u["label_mask"].sum() > 0


def test_affwild2_mismatched_frames_sides_and_unannotated_videos(synth, tmp_path, capfd):
  src = synth / "affwild2"
  videos, ann = tmp_path / "videos", tmp_path / "annotations" / "Validation_Set"
  shutil.copytree(src / "videos", videos / "batch1")
  ann.mkdir(parents=True)
  (stem,) = [p.stem for p in (src / "videos").glob("*.mp4")]
  lines = (src / "annotations" / f"{stem}.txt").read_text().splitlines()
  n = len(lines) - 1
  (ann / f"{stem}_left.txt").write_text("\n".join(lines) + "\n")  # the left person of <stem>.mp4
  (ann / f"{stem}_right.txt").write_text("\n".join(lines[:-1] + ["0.1,7"]) + "\n")  # an out-of-range value
  (ann / "short.txt").write_text("\n".join(lines[:-1]) + "\n")  # one frame short: a warning
  (ann / "wrong.txt").write_text("\n".join(lines[: n // 2]) + "\n")  # half the frames: another video's
  (ann / "ghost.txt").write_text("valence,arousal\n0.1,0.2\n")
  shutil.copy(videos / "batch1" / f"{stem}.mp4", videos / "short.mp4")
  shutil.copy(videos / "batch1" / f"{stem}.mp4", videos / "wrong.mp4")
  shutil.copy(videos / "batch1" / f"{stem}.mp4", videos / "extra.mp4")
  items, problems = prepare_affwild.build_items(str(videos), str(tmp_path / "annotations"), "affwild2")
  assert {it.split for it in items} == {"validation"}
  assert {it.video: it.initial_target for it in items} == {f"{stem}_left": "left", f"{stem}_right": "right",
                                                           "short": None, "wrong": None}
  manifest = common.run(items, str(tmp_path / "out"), problems, SETTINGS, progress=False)
  by_video = {e["video"]: e for e in manifest["items"]}
  assert "annotation without a video" in by_video["ghost"]["reason"] and by_video["ghost"]["status"] == "error"
  assert by_video["extra"]["status"] == "ignored" and "without an annotation" in by_video["extra"]["reason"]
  assert by_video["wrong"]["status"] == "error"
  assert f"has {n // 2 - 1} frames, the video {n}" in by_video["wrong"]["reason"]
  assert by_video["short"]["status"] == "ok" and f"has {n - 1} frames, the video {n}" in by_video["short"]["warnings"][0]
  assert "1 label line outside [-1, 1]" in by_video[f"{stem}_right"]["warnings"][0]
  assert f"line {n + 1}" in by_video[f"{stem}_right"]["warnings"][0]
  err = capfd.readouterr().err
  assert "WARNING" in err and "short.txt has" in err and "ghost" in err
  got = {u["video"]: u for u in read_prepared(str(tmp_path / "out"), "validation")}
  assert set(got) == {f"{stem}_left", f"{stem}_right", "short"}
  assert not got["short"]["label_mask"][-1]  # past the annotation: masked, kept
  assert not got[f"{stem}_right"]["label_mask"][-1]
  with pytest.raises(SystemExit, match=r"--strict: 4 bad inputs"):
    common.run(items, str(tmp_path / "out"), problems, SETTINGS, progress=False, strict=True)


def test_affwild_split_folders_and_a_video_annotated_twice(synth, tmp_path):
  ann = tmp_path / "annotations"
  shutil.copytree(synth / "affwild" / "annotations" / "train", ann / "train")
  shutil.copytree(synth / "affwild" / "annotations" / "train", ann / "valid")
  items, problems = prepare_affwild.build_items(str(synth / "affwild" / "videos"), str(ann), "affwild")
  assert {it.split for it in items} == {"train"}
  assert len(problems) == len(items) and all("annotated in split 'train' too" in p["reason"] for p in problems)
  assert {p["split"] for p in problems} == {"valid"}
  (ann / "train" / "arousal" / f"{items[0].video}.txt").unlink()
  items, problems = prepare_affwild.build_items(str(synth / "affwild" / "videos"), str(ann), "affwild")
  assert any(p["split"] == "train" and "annotation file not found" in p["reason"] for p in problems)
  with pytest.raises(ValueError, match="no <split>/valence/<video>.txt"):
    prepare_affwild.build_items(str(synth / "affwild" / "videos"), str(tmp_path), "affwild")


def test_names_with_control_characters_fail_their_own_rows(synth, tmp_path, capfd):
  """A NUL byte in a name made os.stat abort the whole run before any item."""
  table = pd.read_csv(synth / "omg" / "omg_TrainVideos.csv")
  good = table.iloc[0]
  rows = [dict(good, utterance="nul\x00.mp4"), dict(good, video="esc\x1b[2J", utterance="u.mp4"),
          dict(good, utterance="bell\x07.mp4")]
  csv = tmp_path / "omg_TrainVideos.csv"
  pd.concat([table, pd.DataFrame(rows)], ignore_index=True).to_csv(csv, index=False)
  manifest = _prepare(csv, synth / "omg" / "videos", tmp_path / "out")
  stats = manifest["splits"]["train"]
  assert stats["prepared"] == len(table) and stats["errors"] == 3
  bad = sorted((e["row"], e["reason"]) for e in manifest["items"] if e["status"] == "error")
  assert [r for r, _ in bad] == [len(table) + 1, len(table) + 2, len(table) + 3]
  assert "utterance 'nul\\x00.mp4' holds control characters" in bad[0][1]
  assert "video 'esc\\x1b[2J' holds control characters" in bad[1][1]
  assert "utterance 'bell\\x07.mp4' holds control characters" in bad[2][1]
  # Reported escaped: a name never writes raw control characters to the terminal.
  err = capfd.readouterr().err
  assert "'esc\\x1b[2J'/u.mp4" in err and "\x1b" not in err and "\x00" not in err
  assert {u["utterance"] for u in read_prepared(str(tmp_path / "out"))} == set(table["utterance"])


def test_manifest_is_updated_as_items_finish(synth, tmp_path, monkeypatch):
  monkeypatch.setattr(common, "MANIFEST_EVERY_S", 0.0)
  real = common.process_item
  seen = []

  def spying(item, output_dir, *args, **kwargs):
    path = os.path.join(output_dir, common.MANIFEST)
    if os.path.exists(path):
      with open(path) as f:
        seen.append(sorted(e["status"] for e in json.load(f)["items"]))
    return real(item, output_dir, *args, **kwargs)

  monkeypatch.setattr(common, "process_item", spying)
  manifest = _prepare(synth / "omg" / "omg_TrainVideos.csv", synth / "omg" / "videos", tmp_path / "out")
  n = manifest["splits"]["train"]["inputs"]
  # Before the k-th item (k >= 1) the manifest already lists the k finished ones.
  assert len(seen) == n - 1
  for k, statuses in enumerate(seen, start=1):
    assert statuses.count("ok") == k and statuses.count("pending") == n - k


@pytest.mark.slow  # worker or command-line subprocesses: half a minute or more on 2 cores
def test_a_dead_worker_costs_a_retry_then_a_reported_item(synth, tmp_path, monkeypatch):
  import crash_detector

  csv = synth / "omg" / "omg_ValidationVideos.csv"
  table = pd.read_csv(csv)
  flag = tmp_path / "die-once"
  flag.write_text("")
  monkeypatch.setenv("CRASH_DETECTOR_ONCE", str(flag))
  manifest = _prepare(csv, synth / "omg" / "videos", tmp_path / "once", num_workers=2,
                      detector_factory=crash_detector.factory)
  assert not flag.exists()  # a worker died
  assert manifest["splits"]["validation"]["prepared"] == len(table)  # ... and every item was retried
  _prepare(csv, synth / "omg" / "videos", tmp_path / "plain")
  _same_shards(tmp_path / "once", tmp_path / "plain")

  small = tmp_path / "omg_ValidationVideos.csv"
  table.iloc[:2].to_csv(small, index=False)
  monkeypatch.setenv("CRASH_DETECTOR_ALWAYS", "1")
  manifest = _prepare(small, synth / "omg" / "videos", tmp_path / "always", num_workers=2,
                      detector_factory=crash_detector.factory)
  bad = [e for e in manifest["items"] if e["status"] == "error"]
  assert len(bad) == 2 and all("died while preparing it, also when retried alone" in e["reason"] for e in bad)


# ------------------------------------------------------------------------ streamed records
@pytest.mark.parametrize("piece,n", [(7, 40), (4096, 40), (1 << 20, 2500)])
def test_a_streamed_record_is_the_serialized_example(tmp_path, piece, n, monkeypatch):
  monkeypatch.setattr(common, "_SLICE_FRAMES", 16)  # lists built in slices, the last one short
  rng = np.random.default_rng(piece)
  crops = rng.integers(0, 256, (n, 24, 24, 3), dtype=np.uint8)
  crops[::7] = 0
  jpegs = [features.encode_jpeg(c, 90) for c in crops]
  found = (crops.reshape(n, -1).max(axis=1) > 0)
  kwargs = dict(video="vid", utterance="utterance_2.mp4", valence=0.25, arousal=-0.5, face_found=found,
                detected=found & (np.arange(n) % 3 == 0), boxes=rng.normal(size=(n, 4)),
                timestamps=np.cumsum(rng.uniform(0.01, 0.1, n)), frame_valence=rng.uniform(-1, 1, n),
                frame_arousal=rng.uniform(-1, 1, n), label_mask=rng.integers(0, 2, n), emotion=3, fps=29.97,
                dataset="affwild2", split="train", source="/x/vid.mp4", frame_size=(640, 360))
  whole = features.serialize(features.encode_example(jpegs=jpegs, **kwargs))
  without = common.record_parts(n, **kwargs)
  spooled = b"".join(jpegs)
  pieces = [spooled[i:i + piece] for i in range(0, len(spooled), piece)]
  sizes = [len(j) for j in jpegs]
  assert b"".join(common.serialized_chunks(*without, sizes, pieces)) == whole
  spool = tmp_path / "spool"
  spool.write_bytes(spooled)
  size, sha1, crc = common.write_record_streaming(str(tmp_path / "r.pb"), without, sizes, str(spool))
  assert (tmp_path / "r.pb").read_bytes() == whole and size == len(whole)
  assert sha1 == hashlib.sha1(whole).hexdigest() and crc == common._file_crc(str(tmp_path / "r.pb"))
  assert sorted(os.listdir(tmp_path)) == ["r.pb", "spool"]  # no temporary left
  with pytest.raises(ValueError, match="spooled JPEGs end"):
    b"".join(common.serialized_chunks(*without, sizes, pieces[:-1] if len(pieces) > 1 else [spooled[:-5]]))


def test_shards_copied_in_pieces_are_what_the_tfrecord_writer_writes(tmp_path):
  import tensorflow as tf

  rng = np.random.default_rng(0)
  data = [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in (0, 1, 4095, 4096, 4097, 3_000_001)]
  files = []
  for i, d in enumerate(data):
    (tmp_path / f"r{i}").write_bytes(d)
    files.append(str(tmp_path / f"r{i}"))
  with tf.io.TFRecordWriter(str(tmp_path / "tf.tfrecord")) as w:
    for d in data:
      w.write(d)
  expected = (tmp_path / "tf.tfrecord").read_bytes()
  common.write_tfrecord_file(str(tmp_path / "a.tfrecord"), [(f, None) for f in files])
  assert (tmp_path / "a.tfrecord").read_bytes() == expected
  crcs = []
  for d in data:  # fed in odd pieces, as the record writer does
    crc = common.Crc32c()
    for i in range(0, len(d), 1000003):
      crc.update(d[i:i + 1000003])
    crcs.append(crc.value())
  common.write_tfrecord_file(str(tmp_path / "b.tfrecord"), list(zip(files, crcs)))
  assert (tmp_path / "b.tfrecord").read_bytes() == expected
  assert records.read_records(str(tmp_path / "b.tfrecord")) == data
  # A wrong CRC gives a shard TensorFlow refuses: the framing is checked.
  common.write_tfrecord_file(str(tmp_path / "c.tfrecord"), [(files[2], crcs[2] ^ 1)])
  with pytest.raises(tf.errors.DataLossError):
    records.read_records(str(tmp_path / "c.tfrecord"))
