"""Label files: the real OMG-Emotion CSVs, bad rows, Aff-Wild and Aff-Wild2 annotations."""

import numpy as np
import pytest

from omg_cnnrnn.data import labels


def test_real_omg_label_files(omg_labels_dir):
  train = labels.read_omg_labels(str(omg_labels_dir / "omg_TrainVideos.csv"))
  valid = labels.read_omg_labels(str(omg_labels_dir / "omg_ValidationVideos.csv"))
  assert (len(train), len(valid)) == (2442, 617)
  assert (train["video"].nunique(), valid["video"].nunique()) == (231, 60)
  for table in (train, valid):
    assert tuple(table.columns) == labels.OMG_COLUMNS
    assert table["arousal"].between(0, 1).all() and table["valence"].between(-1, 1).all()
    assert not table.duplicated(["video", "utterance"]).any()
    assert (table["end"] > table["start"]).all()
    assert set(table["EmotionMaxVote"]) <= set(range(7))
    # Fields are stripped (the published files carry trailing spaces).
    assert not table["utterance"].str.endswith(" ").any()
  assert (valid["valence"] == -1.0).any() or (train["valence"] == -1.0).any()


def _csv(tmp_path, rows, header="link,start,end,video,utterance,arousal,valence,EmotionMaxVote"):
  path = tmp_path / "labels.csv"
  path.write_text(header + "\n" + "\n".join(rows) + "\n")
  return str(path)


def test_bad_rows_are_reported_by_row_and_name(tmp_path):
  path = _csv(tmp_path, [
      "l,0,2,aaa,utterance_1.mp4 ,0.5,0.1,4",
      "l,0,2,aaa,utterance_2.mp4,nan,0.1,4",
      "l,3,2,aaa,utterance_3.mp4,0.5,0.1,4",
      "l,0,2,aaa,utterance_1.mp4,0.5,0.1,4",
      "l,0,2,bbb,utterance_1.mp4,1.5,-2,4",
  ])
  good, problems = labels.validate_omg_labels(labels.read_omg_table(path), path)
  assert list(good["utterance"]) == ["utterance_1.mp4"]
  reasons = {p.row: p.reason for p in problems}
  assert "arousal is not a number" in reasons[2]
  assert "end 2 <= start 3" in reasons[3]
  assert "duplicate" in reasons[4]
  assert "arousal 1.5 outside" in reasons[5] and "valence -2 outside" in reasons[5]
  with pytest.raises(labels.LabelFileError, match="4 bad rows"):
    labels.read_omg_labels(path)


def test_missing_columns_and_missing_file_are_fatal(tmp_path):
  path = _csv(tmp_path, ["0,2,aaa,u.mp4,0.5"], header="start,end,video,utterance,arousal")
  with pytest.raises(labels.LabelFileError, match=r"missing columns \['link', 'valence', 'EmotionMaxVote'\]"):
    labels.read_omg_table(path)
  with pytest.raises(labels.LabelFileError, match="not found"):
    labels.read_omg_table(str(tmp_path / "nope.csv"))


def test_affwild_and_affwild2_annotations(tmp_path):
  (tmp_path / "v.txt").write_text("0.1\n-0.2\n0.3\n")
  (tmp_path / "a.txt").write_text("0.5\n0.4\n0.3\n")
  lab, mask = labels.read_affwild(str(tmp_path / "v.txt"), str(tmp_path / "a.txt"))
  np.testing.assert_allclose(lab, [[0.1, 0.5], [-0.2, 0.4], [0.3, 0.3]])
  assert mask.all()
  (tmp_path / "short.txt").write_text("0.1\n")
  with pytest.raises(labels.LabelFileError, match="1 frames"):
    labels.read_affwild(str(tmp_path / "short.txt"), str(tmp_path / "a.txt"))
  (tmp_path / "aw2.txt").write_text("valence,arousal\n-5,-5\n0.2,0.3\n-5,-5\n0.4,-0.1\n")
  lab, mask = labels.read_affwild2(str(tmp_path / "aw2.txt"))
  np.testing.assert_array_equal(mask, [False, True, False, True])
  np.testing.assert_allclose(lab[mask], [[0.2, 0.3], [0.4, -0.1]])
  assert (lab[~mask] == 0).all()
