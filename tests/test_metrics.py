"""NumPy metrics, the OMG protocols and the prediction CSV, including the real validation label file.

The challenge's final scorer (`calculateEvaluationCCC.py`) is re-implemented here from
its description, independently of `omg_cnnrnn.metrics`: read two CSVs with the csv
module, take arousal/valence by row position, CCC from `scipy.stats.pearsonr`.
"""

import csv
import os
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from omg_cnnrnn import metrics


# ----------------------------------------------------------------------------- the independent scorer
def _challenge_ccc(truth, pred):
  rho = stats.pearsonr(pred, truth)[0]
  sp, st = np.std(pred), np.std(truth)
  return 2 * rho * st * sp / (sp**2 + st**2 + (np.mean(pred) - np.mean(truth)) ** 2)


def _read_by_position(path):
  with open(path, newline="") as f:
    rows = list(csv.reader(f))
  header = rows[0]
  a, v = header.index("arousal"), header.index("valence")
  return np.array([float(r[a]) for r in rows[1:]]), np.array([float(r[v]) for r in rows[1:]])


def challenge_scores(label_csv, prediction_csv):
  """Global CCC (arousal, valence) the way the final challenge scorer computes it: rows by position."""
  ta, tv = _read_by_position(label_csv)
  pa, pv = _read_by_position(prediction_csv)
  assert len(ta) == len(pa), "the challenge's scorer needs the same number of rows"
  return _challenge_ccc(ta, pa), _challenge_ccc(tv, pv)


def _read_real_labels(path):
  table = pd.read_csv(path, dtype=str, keep_default_na=False)
  table.columns = [c.strip() for c in table.columns]
  for c in table.columns:
    table[c] = table[c].str.strip()
  for c in ("start", "end", "arousal", "valence"):
    table[c] = table[c].astype(float)
  return table


def _leave_one_out_video_means(labels):
  preds = labels[["video", "utterance"]].copy()
  for dim in ("valence", "arousal"):
    total = labels.groupby("video")[dim].transform("sum")
    count = labels.groupby("video")[dim].transform("count")
    assert (count > 1).all()
    preds[dim] = (total - labels[dim]) / (count - 1)
  return preds


# ----------------------------------------------------------------------------- plain metrics
def test_ccc_known_values():
  t = np.array([0.1, 0.5, -0.3, 0.8, 0.0])
  for f in (metrics.ccc, metrics.ccc_official):
    assert f(t, t) == pytest.approx(1.0)
    c = t - t.mean()
    assert f(-c, c) == pytest.approx(-1.0)
    assert f(np.full(5, 0.3), t) == 0.0
    # A shift by 0.5 keeps Pearson at 1 and lowers CCC to 2 var / (2 var + 0.25).
    assert f(t + 0.5, t) == pytest.approx(2 * t.var() / (2 * t.var() + 0.25))
    # A scale: CCC = 2 a var / (a^2 var + var) for p = a (t - mean) + mean.
    assert f(2 * c + t.mean(), t) == pytest.approx(4 / 5)
  assert metrics.pearson(t + 0.5, t) == pytest.approx(1.0)
  assert metrics.pearson(np.full(5, 0.3), t) == 0.0
  assert metrics.mse(t + 0.5, t) == pytest.approx(0.25)
  assert metrics.ccc([0.4], [0.4]) == 0.0  # denominator 0: CCC's limit, not NaN
  with pytest.raises(ValueError, match="differ in length"):
    metrics.ccc([1, 2], [1, 2, 3])
  with pytest.raises(ValueError, match="empty"):
    metrics.ccc([], [])


def test_constant_prediction_is_zero_here_and_nan_in_the_challenge_scorer():
  t = np.array([0.1, 0.5, -0.3, 0.8, 0.0])
  p = np.full(5, 0.3)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    assert np.isnan(_challenge_ccc(t, p))
  assert metrics.ccc_official(p, t) == 0.0
  labels = pd.DataFrame({"video": ["a"] * 5, "utterance": list("12345"), "valence": t, "arousal": t})
  preds = labels.assign(valence=0.3)
  result = metrics.evaluate_utterances(labels, preds)
  assert result["valence_ccc"] == 0.0 and result["arousal_ccc"] == pytest.approx(1.0)
  assert len(result["notes"]) == 1 and "valence predictions are constant" in result["notes"][0]


def test_covariance_and_official_forms_agree():
  rng = np.random.default_rng(0)
  for _ in range(20):
    n = int(rng.integers(2, 200))
    t = rng.uniform(-1, 1, n)
    p = rng.uniform(-0.5, 0.5) * t + rng.normal(0, rng.uniform(0.01, 1), n) + rng.uniform(-0.5, 0.5)
    assert abs(metrics.ccc(p, t) - metrics.ccc_official(p, t)) < 1e-12
    assert metrics.ccc_official(p, t) == pytest.approx(_challenge_ccc(t, p), abs=1e-12)
    assert metrics.pearson(p, t) == pytest.approx(stats.pearsonr(p, t)[0], abs=1e-12)


# ----------------------------------------------------------------------------- utterance values
def test_utterance_value_ignores_masked_frames():
  frames = np.array([[0.0, 1.0], [1.0, 0.0], [np.nan, 100.0], [0.5, 0.2]])
  mask = [1, 1, 0, 1]
  np.testing.assert_allclose(metrics.utterance_value(frames, mask), [0.5, 0.4])
  np.testing.assert_allclose(metrics.utterance_value(frames, mask, "median"), [0.5, 0.2])
  np.testing.assert_allclose(metrics.utterance_value(frames[[0, 1, 3]]), [0.5, 0.4])
  assert np.isnan(metrics.utterance_value(frames, [0, 0, 0, 0])).all()
  assert metrics.utterance_value(np.zeros((0, 2))).shape == (2,)
  with pytest.raises(ValueError, match="no valid frame"):
    metrics.utterance_value(frames, [0, 0, 0, 0], empty="raise")
  with pytest.raises(ValueError, match=r"NaN/inf.*frames \[2\]"):
    metrics.utterance_value(frames)  # a NaN on a valid frame is a bug upstream, not a gap
  with pytest.raises(ValueError, match="mask has 3 frames"):
    metrics.utterance_value(frames, [1, 1, 1])
  with pytest.raises(ValueError, match="unknown aggregate"):
    metrics.utterance_value(frames, mask, "max")


# ----------------------------------------------------------------------------- the real label file
def test_real_validation_file_video_mean_baseline(omg_labels_dir, tmp_path):
  """Each utterance predicted by the mean label of its video's other utterances (SPEC: ~0.75 V / 0.66 A)."""
  label_csv = str(omg_labels_dir / "omg_ValidationVideos.csv")
  labels = _read_real_labels(label_csv)
  preds = _leave_one_out_video_means(labels)
  result = metrics.evaluate_utterances(labels, preds.sample(frac=1.0, random_state=0))  # row order is free
  assert result["num_utterances"] == 617 and result["num_videos"] == 60
  # Measured: valence 0.7487, arousal 0.6610.
  assert 0.745 < result["valence_ccc"] < 0.752 and 0.657 < result["arousal_ccc"] < 0.665
  for dim in ("valence", "arousal"):
    assert result[f"{dim}_ccc"] == pytest.approx(result[f"{dim}_ccc_covariance"], abs=1e-12)
    assert result[f"{dim}_pearson"] > result[f"{dim}_ccc"]
  # The scorer's own logic on the CSV we write gives the same numbers.
  path = str(tmp_path / "predictions_validation.csv")
  metrics.write_prediction_csv(path, labels, preds.iloc[::-1])
  arousal, valence = challenge_scores(label_csv, path)
  assert valence == pytest.approx(result["valence_ccc"], abs=1e-12)
  assert arousal == pytest.approx(result["arousal_ccc"], abs=1e-12)
  # The earlier per-video protocol: within a video the leave-one-out mean falls as the
  # utterance's own label rises (Pearson exactly -1), so it scores negative there.
  per_video = metrics.evaluate_utterances(labels, preds, protocol="per_video")
  assert per_video["protocol"] == "per_video" and per_video["num_videos"] == 60
  for dim in ("valence", "arousal"):
    assert per_video[f"{dim}_pearson"] == pytest.approx(-1.0)
    assert per_video[f"{dim}_degenerate_videos"] == 0
  # Measured: -0.3516 for both (the leave-one-out map is the same affine map in both dimensions).
  assert -0.36 < per_video["valence_ccc"] < -0.34 and -0.36 < per_video["arousal_ccc"] < -0.34


def test_real_validation_file_per_video_matches_the_earlier_scorer(omg_labels_dir):
  """The earlier scorer: a CCC per video (rows grouped by video), averaged; here with a noisy prediction."""
  labels = _read_real_labels(str(omg_labels_dir / "omg_ValidationVideos.csv"))
  rng = np.random.default_rng(0)
  preds = labels[["video", "utterance"]].copy()
  preds["valence"] = labels["valence"] + rng.normal(0, 0.3, len(labels))
  preds["arousal"] = labels["arousal"] + rng.normal(0, 0.2, len(labels))
  expected = {dim: np.mean([_challenge_ccc(g[dim].values, preds.loc[g.index, dim].values)
                            for _, g in labels.groupby("video", sort=False)]) for dim in ("valence", "arousal")}
  result = metrics.evaluate_utterances(labels, preds.sample(frac=1.0, random_state=1), protocol="per_video")
  for dim in ("valence", "arousal"):
    assert result[f"{dim}_ccc"] == pytest.approx(expected[dim], abs=1e-12)
  table = metrics.per_video_scores(labels, preds)
  assert list(table["video"]) == list(dict.fromkeys(labels["video"]))
  assert table["valence_ccc"].mean() == pytest.approx(expected["valence"], abs=1e-12)


# ----------------------------------------------------------------------------- protocols on small tables
def _tables():
  labels = pd.DataFrame({"video": ["a", "a", "a", "b", "b", "c"], "utterance": ["u1", "u2", "u3", "u1", "u2", "u1"],
                         "valence": [0.1, 0.2, 0.6, 0.3, -0.2, 0.0], "arousal": [0.5, 0.6, 0.1, 0.7, 0.7, 0.4]})
  preds = labels.copy()
  preds["valence"] = [0.0, 0.4, 0.5, 0.1, 0.1, 0.2]
  preds["arousal"] = [0.3, 0.2, 0.4, 0.6, 0.5, 0.4]
  return labels, preds


def test_per_video_protocol_by_hand_and_degenerate_videos():
  labels, preds = _tables()
  a, b = slice(0, 3), slice(3, 5)
  v = [metrics.ccc(preds.valence[a], labels.valence[a]), metrics.ccc(preds.valence[b], labels.valence[b])]
  # Video b's arousal labels are constant and video c has one utterance: degenerate.
  zero = metrics.evaluate_utterances(labels, preds, protocol="per_video")
  assert zero["valence_ccc"] == pytest.approx((v[0] + v[1] + 0.0) / 3)
  assert zero["valence_degenerate_videos"] == 1 and zero["arousal_degenerate_videos"] == 2
  skip = metrics.evaluate_utterances(labels, preds, protocol="per_video", degenerate_videos="skip")
  assert skip["valence_ccc"] == pytest.approx((v[0] + v[1]) / 2)
  assert skip["arousal_ccc"] == pytest.approx(metrics.ccc(preds.arousal[a], labels.arousal[a]))
  assert skip["valence_mse"] == pytest.approx(np.mean([metrics.mse(preds.valence[a], labels.valence[a]),
                                                       metrics.mse(preds.valence[b], labels.valence[b])]))
  assert any("left out" in n for n in skip["notes"]) and any("counts as 0" in n for n in zero["notes"])
  glob = metrics.evaluate_utterances(labels, preds)
  assert glob["valence_ccc"] == pytest.approx(metrics.ccc(preds.valence, labels.valence))
  assert glob["valence_mse"] == pytest.approx(metrics.mse(preds.valence, labels.valence))
  assert glob["num_videos"] == 3 and glob["num_utterances"] == 6
  with pytest.raises(ValueError, match="unknown protocol"):
    metrics.evaluate_utterances(labels, preds, protocol="frame")


# ----------------------------------------------------------------------------- matching
def test_matching_refuses_missing_extra_duplicated_and_nan_rows():
  labels, preds = _tables()
  with pytest.raises(ValueError, match=r"1 labelled \(video, utterance\) keys have no prediction \(\('c', 'u1'\)\)"):
    metrics.evaluate_utterances(labels, preds.iloc[:5])
  extra = pd.concat([preds, pd.DataFrame([{"video": "d", "utterance": "u9", "valence": 0, "arousal": 0}])])
  with pytest.raises(ValueError,
                     match=r"1 predicted \(video, utterance\) keys are not in the labels \(\('d', 'u9'\)\)"):
    metrics.evaluate_utterances(labels, extra)
  with pytest.raises(ValueError, match=r"2 \(video, utterance\) keys duplicated in the predictions "
                                       r"\(\('a', 'u1'\), \('b', 'u2'\)\)"):
    metrics.evaluate_utterances(labels, pd.concat([preds, preds.iloc[[0, 4, 0]]]))
  with pytest.raises(ValueError, match="duplicated in the labels"):
    metrics.evaluate_utterances(pd.concat([labels, labels.iloc[:1]]), preds)
  # Both kinds at once: one message counts each.
  with pytest.raises(ValueError, match=r"1 labelled .*\('a', 'u2'\).*1 predicted .*\('x', 'u2'\)"):
    metrics.evaluate_utterances(labels, preds.assign(video=["a", "x", "a", "b", "b", "c"]))
  nan = preds.copy()
  nan.loc[1, "valence"] = np.nan
  nan.loc[4, "arousal"] = np.nan
  with pytest.raises(ValueError, match=r"2 predictions are NaN \(\('a', 'u2'\), \('b', 'u2'\)\)"):
    metrics.evaluate_utterances(labels, nan)
  with pytest.raises(ValueError, match=r"not numbers: \('a', 'u1', 'high'\)"):
    metrics.evaluate_utterances(labels, preds.assign(valence=["high", 0, 0, 0, 0, 0]))
  with pytest.raises(ValueError, match="lacks columns \\['arousal'\\]"):
    metrics.evaluate_utterances(labels, preds.drop(columns="arousal"))
  with pytest.raises(ValueError, match="numeric"):  # ids read as numbers lose their text (leading zeros, 1e5)
    metrics.evaluate_utterances(labels.assign(video=1), preds.assign(video=1))
  many = pd.DataFrame({"video": "v", "utterance": [f"u{i}" for i in range(9)], "valence": 0.0, "arousal": 0.0})
  with pytest.raises(ValueError, match=r"9 labelled .*\('v', 'u4'\), \.\.\. \(4 more\)"):
    metrics.evaluate_utterances(many, many.iloc[:0])


def test_matching_ignores_row_order_and_strips_fields():
  labels, preds = _tables()
  base = metrics.evaluate_utterances(labels, preds)
  shuffled = preds.sample(frac=1.0, random_state=3)
  assert metrics.evaluate_utterances(labels, shuffled) == base
  spaced = preds.assign(utterance=preds["utterance"] + " ", video=" " + preds["video"])
  assert metrics.evaluate_utterances(labels, spaced) == base
  joined = metrics.match_predictions(labels, shuffled)
  assert list(joined.index) == list(zip(labels.video, labels.utterance))
  np.testing.assert_array_equal(joined["pred_valence"].values, preds["valence"].values)


# ----------------------------------------------------------------------------- prediction CSV
def _label_table():
  return pd.DataFrame({"link": "https://www.youtube.com/watch?v=x", "start": [0.0, 1.5, 177.439999, 0.0],
                       "end": [1.0, 2.0, 180.0, 1.0], "video": ["a", "a", "a", "b"],
                       "utterance": ["utterance_1.mp4", "utterance_2.mp4", "utterance_7.mp4", "utterance_1.mp4"],
                       "arousal": [0.2, 0.4, 0.9, 0.5], "valence": [-0.5, 0.1, 0.3, 0.8],
                       "EmotionMaxVote": [4, 3, -1, 0]})


def test_prediction_csv_has_the_label_columns_and_order(tmp_path):
  labels = _label_table()
  label_csv = str(tmp_path / "labels.csv")
  labels.assign(EmotionMaxVote=["4", "3", "", "0"]).to_csv(label_csv, index=False)
  rng = np.random.default_rng(0)
  preds = labels[["video", "utterance"]].iloc[[2, 0, 3, 1]].copy()
  preds["valence"] = rng.uniform(-1, 1, 4) / 3
  preds["arousal"] = rng.uniform(0, 1, 4) / 7
  path = str(tmp_path / "out" / "pred.csv")
  metrics.write_prediction_csv(path, labels, preds)
  assert os.listdir(tmp_path / "out") == ["pred.csv"]  # no temporary file left
  with open(path) as f:
    lines = f.read().splitlines()
  assert lines[0] == ",".join(metrics.LABEL_COLUMNS)
  assert lines[3].startswith("https://www.youtube.com/watch?v=x,177.439999,180.0,a,utterance_7.mp4,")
  assert lines[3].endswith(",")  # the empty EmotionMaxVote stays empty
  written = pd.read_csv(path)
  assert list(written["utterance"]) == list(labels["utterance"])
  by_key = preds.set_index(["video", "utterance"])
  for dim in ("valence", "arousal"):  # full precision: bit-identical after the round trip
    np.testing.assert_array_equal(written[dim].values, by_key.loc[list(zip(labels.video, labels.utterance)), dim])
  arousal, valence = challenge_scores(label_csv, path)
  result = metrics.evaluate_utterances(labels, preds)
  assert valence == pytest.approx(result["valence_ccc"], abs=1e-12)
  assert arousal == pytest.approx(result["arousal_ccc"], abs=1e-12)
  back = metrics.read_prediction_csv(path)
  assert metrics.evaluate_utterances(labels, back) == result


def test_prediction_csv_refusals(tmp_path):
  labels = _label_table()
  preds = labels[["video", "utterance", "valence", "arousal"]]
  path = str(tmp_path / "pred.csv")
  with pytest.raises(ValueError, match=r"no prediction \(\('b', 'utterance_1.mp4'\)\)"):
    metrics.write_prediction_csv(path, labels, preds.iloc[:3])
  with pytest.raises(ValueError, match=r"lack the label file's columns \['link'\]"):
    metrics.write_prediction_csv(path, labels.drop(columns="link"), preds)
  with pytest.raises(ValueError, match="row 2 .*link 'a,b' holds a comma"):
    metrics.write_prediction_csv(path, labels.assign(link=["x", "a,b", "x", "x"]), preds)
  assert not os.path.exists(path) and os.listdir(tmp_path) == []
  (tmp_path / "bad.csv").write_text("video,utterance,valence,arousal\na,u1,0.1,0.2\na,u2,oops,0.3\n")
  with pytest.raises(ValueError, match=r"bad.csv: 1 valence fields are not numbers: line 3 \(a/u2: 'oops'\)"):
    metrics.read_prediction_csv(str(tmp_path / "bad.csv"))
  (tmp_path / "cols.csv").write_text("video,utterance,valence\na,u1,0.1\n")
  with pytest.raises(ValueError, match=r"cols.csv: missing columns \['arousal'\]"):
    metrics.read_prediction_csv(str(tmp_path / "cols.csv"))
  with pytest.raises(ValueError, match="not found"):
    metrics.read_prediction_csv(str(tmp_path / "none.csv"))


def test_the_one_reader_of_label_like_csvs_keeps_strings_and_names_the_file(tmp_path):
  path = tmp_path / "t.csv"
  path.write_bytes("\ufeff video , utterance,valence\n a ,NA, 0.5 \n".encode("utf-8"))
  table = metrics.read_string_table(str(path), ("video", "valence"), "test table")
  assert list(table.columns) == ["video", "utterance", "valence"]  # BOM and spaces gone
  assert table.iloc[0].tolist() == ["a", "NA", "0.5"]  # strings, "NA" not turned into NaN
  with pytest.raises(KeyError, match=r"t.csv: missing columns \['arousal'\]"):
    metrics.read_string_table(str(path), ("arousal",), "test table", KeyError)
  with pytest.raises(ValueError, match="not a file"):
    metrics.read_string_table(str(tmp_path), ("video",), "test table")
  with pytest.raises(ValueError, match="nope.csv: test table not found"):
    metrics.read_string_table(str(tmp_path / "nope.csv"), ("video",), "test table")
