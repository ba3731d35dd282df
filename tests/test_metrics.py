"""NumPy metrics and the OMG protocols, including the real validation label file."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from omg_cnnrnn import metrics
from omg_cnnrnn.data import labels as label_files


def test_ccc_known_values():
  t = np.array([0.1, 0.5, -0.3, 0.8, 0.0])
  assert metrics.ccc(t, t) == pytest.approx(1.0)
  c = t - t.mean()
  assert metrics.ccc(-c, c) == pytest.approx(-1.0)
  assert metrics.ccc(np.full(5, 0.3), t) == 0.0 and metrics.ccc_official(np.full(5, 0.3), t) == 0.0
  # A shift lowers CCC but not Pearson.
  assert metrics.pearson(t + 0.5, t) == pytest.approx(1.0)
  expected = 2 * t.var() / (2 * t.var() + 0.25)
  assert metrics.ccc(t + 0.5, t) == pytest.approx(expected)
  assert metrics.mse(t + 0.5, t) == pytest.approx(0.25)


def test_covariance_and_official_forms_agree():
  rng = np.random.default_rng(0)
  for _ in range(5):
    t = rng.uniform(-1, 1, 50)
    p = 0.5 * t + rng.normal(0, 0.3, 50) + 0.1
    assert metrics.ccc(p, t) == pytest.approx(metrics.ccc_official(p, t), abs=1e-12)
    rho = stats.pearsonr(p, t)[0]
    assert metrics.ccc_official(p, t) == pytest.approx(2 * rho * p.std() * t.std() /
                                                       (p.var() + t.var() + (p.mean() - t.mean()) ** 2))


def test_utterance_value_ignores_masked_frames():
  frames = np.array([[0.0, 1.0], [1.0, 0.0], [100.0, 100.0], [0.5, 0.5]])
  mask = [1, 1, 0, 1]
  np.testing.assert_allclose(metrics.utterance_value(frames, mask), [0.5, 0.5])
  np.testing.assert_allclose(metrics.utterance_value(frames, mask, "median"), [0.5, 0.5])
  assert np.isnan(metrics.utterance_value(frames, [0, 0, 0, 0])).all()


def test_real_validation_file_video_mean_baseline(omg_labels_dir):
  """Predicting each utterance by the mean label of the other utterances of its video (SPEC: ~0.75 V / 0.66 A)."""
  labels = label_files.read_omg_labels(str(omg_labels_dir / "omg_ValidationVideos.csv"))
  preds = labels[["video", "utterance"]].copy()
  for dim in ("valence", "arousal"):
    total = labels.groupby("video")[dim].transform("sum")
    count = labels.groupby("video")[dim].transform("count")
    preds[dim] = np.where(count > 1, (total - labels[dim]) / (count - 1).clip(lower=1), labels[dim].mean())
  result = metrics.evaluate_utterances(labels, preds.sample(frac=1.0, random_state=0))  # row order does not matter
  assert result["num_utterances"] == 617 and result["num_videos"] == 60
  assert 0.70 < result["valence_ccc"] < 0.80
  assert 0.60 < result["arousal_ccc"] < 0.72
  per_video = metrics.evaluate_utterances(labels, preds, protocol="per_video")
  assert per_video["protocol"] == "per_video" and per_video["valence_ccc"] < result["valence_ccc"]


def _tables():
  labels = pd.DataFrame({"video": ["a", "a", "b"], "utterance": ["u1", "u2", "u1"],
                         "valence": [0.1, 0.2, 0.3], "arousal": [0.5, 0.6, 0.7]})
  return labels, labels.copy()


def test_matching_refuses_files_that_do_not_line_up():
  labels, preds = _tables()
  with pytest.raises(ValueError, match=r"1 \(video, utterance\) missing.*\('b', 'u1'\)"):
    metrics.evaluate_utterances(labels, preds.iloc[:2])
  extra = pd.concat([preds, pd.DataFrame([{"video": "c", "utterance": "u9", "valence": 0, "arousal": 0}])])
  with pytest.raises(ValueError, match=r"1 not in the labels.*\('c', 'u9'\)"):
    metrics.evaluate_utterances(labels, extra)
  with pytest.raises(ValueError, match="duplicated"):
    metrics.evaluate_utterances(labels, pd.concat([preds, preds.iloc[:1]]))
  nan = preds.copy()
  nan.loc[1, "valence"] = np.nan
  with pytest.raises(ValueError, match="NaN"):
    metrics.evaluate_utterances(labels, nan)
  spaced = preds.copy()
  spaced["utterance"] = spaced["utterance"] + " "
  assert metrics.evaluate_utterances(labels, spaced)["valence_ccc"] == pytest.approx(1.0)


def test_prediction_csv_is_read_by_position_like_the_official_scorer(tmp_path):
  labels = pd.DataFrame({"link": "l", "start": [0.0, 1.0, 2.0, 0.0], "end": [1.0, 2.0, 3.0, 1.0],
                         "video": ["a", "a", "a", "b"], "utterance": ["u1", "u2", "u3", "u1"],
                         "arousal": [0.2, 0.4, 0.9, 0.5], "valence": [-0.5, 0.1, 0.3, 0.8], "EmotionMaxVote": 4})
  preds = labels[["video", "utterance"]].iloc[::-1].copy()
  preds["valence"] = [0.7, 0.2, 0.0, -0.3]
  preds["arousal"] = [0.4, 0.8, 0.3, 0.1]
  path = str(tmp_path / "pred.csv")
  metrics.write_prediction_csv(path, labels, preds)
  written = pd.read_csv(path)
  assert list(written.columns) == list(metrics.LABEL_COLUMNS)
  for dim in ("valence", "arousal"):  # the challenge's logic: rows by position, pearsonr-based CCC
    p, t = written[dim].values, labels[dim].values
    rho = stats.pearsonr(p, t)[0]
    official = 2 * rho * np.std(p) * np.std(t) / (np.var(p) + np.var(t) + (np.mean(p) - np.mean(t)) ** 2)
    assert metrics.evaluate_utterances(labels, preds)[f"{dim}_ccc"] == pytest.approx(official)
