"""Label files: the real OMG-Emotion CSVs, bad rows, Aff-Wild and Aff-Wild2 annotations."""

import numpy as np
import pytest

from omg_cnnrnn import metrics
from omg_cnnrnn.data import labels


def test_real_omg_label_files(omg_labels_dir):
  train = labels.read_omg_labels(str(omg_labels_dir / "omg_TrainVideos.csv"))
  valid = labels.read_omg_labels(str(omg_labels_dir / "omg_ValidationVideos.csv"))
  assert (len(train), len(valid)) == (2442, 617)
  assert (train["video"].nunique(), valid["video"].nunique()) == (231, 60)
  # One column tuple: the reader checks the files against the columns the challenge CSV writer writes.
  assert labels.OMG_COLUMNS is metrics.LABEL_COLUMNS
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
      "l,-1,2,bbb,utterance_2.mp4,0.5,0.1,4",
      "l,0,2,bbb,utterance_3.mp4,0.5,0.1,9",
      "l,0,2,bbb,../utterance_4.mp4,0.5,0.1,4",
      "l,0,2,bbb,utterance_5.mp4,0.5,0.1,",
  ])
  good, problems = labels.validate_omg_labels(labels.read_omg_table(path), path)
  assert list(good["utterance"]) == ["utterance_1.mp4", "utterance_5.mp4"]
  assert list(good["EmotionMaxVote"]) == [4, -1]  # empty: absent, not an error
  reasons = {p.row: p.reason for p in problems}
  assert set(reasons) == {2, 3, 4, 5, 6, 7, 8}
  assert "arousal is not a number" in reasons[2]
  assert "end 2 <= start 3" in reasons[3]
  assert "duplicate (video, utterance) of row 1" in reasons[4]
  assert "arousal 1.5 outside" in reasons[5] and "valence -2 outside" in reasons[5]
  assert "start -1 < 0" in reasons[6]
  assert "EmotionMaxVote '9'" in reasons[7]
  assert "not a plain file name" in reasons[8]
  assert str(problems[0]).startswith(f"{path} row 2 (line 3, aaa/utterance_2.mp4)")
  with pytest.raises(labels.LabelFileError, match="7 bad rows"):
    labels.read_omg_labels(path)
  assert len(labels.read_omg_labels(path, strict=False)) == 2


def test_missing_columns_and_missing_file_are_fatal(tmp_path):
  path = _csv(tmp_path, ["0,2,aaa,u.mp4,0.5"], header="start,end,video,utterance,arousal")
  with pytest.raises(labels.LabelFileError, match=r"labels.csv: missing columns \['link', 'valence', 'EmotionMaxVote'\]"):
    labels.read_omg_table(path)
  with pytest.raises(labels.LabelFileError, match="nope.csv: label file not found"):
    labels.read_omg_table(str(tmp_path / "nope.csv"))
  (tmp_path / "empty.csv").write_text("")
  with pytest.raises(labels.LabelFileError, match="empty.csv: not a readable CSV"):
    labels.read_omg_table(str(tmp_path / "empty.csv"))


def test_byte_order_mark_and_padded_header(tmp_path):
  path = tmp_path / "bom.csv"
  path.write_text("\ufefflink, start,end,video,utterance,arousal,valence,EmotionMaxVote \nl,0,1.5,aaa,u.mp4,0.25,-1.0,3\n",
                  encoding="utf-8")
  table = labels.read_omg_labels(str(path))
  assert table.iloc[0][["start", "end", "arousal", "valence", "EmotionMaxVote"]].tolist() == [0, 1.5, 0.25, -1, 3]


def test_affwild_annotations(tmp_path):
  (tmp_path / "v.txt").write_text("0.1\n-0.2\n0.3\n")
  (tmp_path / "a.txt").write_text("0.5\n0.4\n0.3\n\n")  # a trailing blank line is not a frame
  got = labels.read_affwild(str(tmp_path / "v.txt"), str(tmp_path / "a.txt"))
  np.testing.assert_allclose(got.values, [[0.1, 0.5], [-0.2, 0.4], [0.3, 0.3]])
  assert got.mask.all() and not got.invalid_lines and got.describe_invalid() == ""
  (tmp_path / "short.txt").write_text("0.1\n")
  with pytest.raises(labels.LabelFileError, match=r"short.txt has 1 frames, .*a.txt 3"):
    labels.read_affwild(str(tmp_path / "short.txt"), str(tmp_path / "a.txt"))
  (tmp_path / "wild.txt").write_text("0.1\n1.7\nnan\n")
  got = labels.read_affwild(str(tmp_path / "wild.txt"), str(tmp_path / "a.txt"))
  np.testing.assert_array_equal(got.mask, [True, False, False])
  assert got.invalid_lines == [2, 3] and "wild.txt" in got.describe_invalid()
  (tmp_path / "text.txt").write_text("0.1\nhigh\n0.3\n")
  with pytest.raises(labels.LabelFileError, match=r"text.txt line 2: not a number"):
    labels.read_affwild(str(tmp_path / "text.txt"), str(tmp_path / "a.txt"))
  with pytest.raises(labels.LabelFileError, match="gone.txt: annotation file not found"):
    labels.read_affwild(str(tmp_path / "gone.txt"), str(tmp_path / "a.txt"))


def test_affwild2_annotations_keep_and_mask_minus_five(tmp_path):
  (tmp_path / "aw2.txt").write_text("valence,arousal\n-5,-5\n0.2,0.3\n-5,-5\n0.4,-0.1\n-1,1\n")
  got = labels.read_affwild2(str(tmp_path / "aw2.txt"))
  assert len(got) == 5  # every frame kept
  np.testing.assert_array_equal(got.mask, [False, True, False, True, True])
  np.testing.assert_allclose(got.values[got.mask], [[0.2, 0.3], [0.4, -0.1], [-1, 1]])
  assert (got.values[~got.mask] == 0).all()
  assert not got.invalid_lines  # -5 is the expected mark, not an error
  (tmp_path / "odd.txt").write_text("valence,arousal\n0.2,3\n0.1,0.1\n")
  assert labels.read_affwild2(str(tmp_path / "odd.txt")).invalid_lines == [2]
  (tmp_path / "expr.txt").write_text("Neutral,Anger,Disgust\n0\n1\n")
  with pytest.raises(labels.LabelFileError, match="expr.txt: header 'Neutral,Anger,Disgust', expected 'valence,arousal'"):
    labels.read_affwild2(str(tmp_path / "expr.txt"))
  (tmp_path / "cols.txt").write_text("valence,arousal\n0.1,0.2\n0.3\n")
  with pytest.raises(labels.LabelFileError, match="cols.txt line 3: expected 2 value"):
    labels.read_affwild2(str(tmp_path / "cols.txt"))
