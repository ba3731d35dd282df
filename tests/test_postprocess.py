"""Table VI post-processing: median filter against a loop reference, tuning keeps what helps."""

import numpy as np
import pandas as pd
import pytest

from omg_cnnrnn import postprocess


def _median_reference(x, w):
  """Direct loop: window clipped at the edges by repeating the end values ('nearest')."""
  h = w // 2
  padded = np.concatenate([[x[0]] * h, x, [x[-1]] * h])
  return np.array([np.median(padded[i:i + w]) for i in range(len(x))])


def test_median_filter_matches_a_loop_reference_and_skips_masked_frames():
  rng = np.random.default_rng(0)
  p = rng.normal(size=(30, 2))
  out = postprocess.median_filter_frames(p, None, (9, 3))
  np.testing.assert_allclose(out[:, 0], _median_reference(p[:, 0], 9))
  np.testing.assert_allclose(out[:, 1], _median_reference(p[:, 1], 3))
  short = postprocess.median_filter_frames(p[:4], None, (81, 3))  # shorter than the window
  np.testing.assert_allclose(short[:, 0], _median_reference(p[:4, 0], 81))
  mask = np.ones(30, bool)
  mask[5:8] = False
  p_masked = p.copy()
  p_masked[5:8] = 1e6
  out = postprocess.median_filter_frames(p_masked, mask, (5, 1))
  np.testing.assert_allclose(out[mask, 0], _median_reference(p[mask, 0], 5))
  np.testing.assert_array_equal(out[~mask, 0], 1e6)  # masked frames untouched


def _records(rng, noise, spread_within, videos=6, utts=5):
  recs, rows = [], []
  for v in range(videos):
    level = rng.uniform(-0.8, 0.8, 2)
    for u in range(utts):
      truth = np.clip(level + rng.normal(0, spread_within, 2), -1, 1)
      n = int(rng.integers(3, 40))
      frames = truth + rng.normal(0, noise, (n, 2))
      frames[rng.uniform(size=n) < 0.15] += rng.choice([-3, 3], size=2)  # outlier frames
      recs.append({"video": f"v{v}", "utterance": f"u{u}", "frame_predictions": frames, "mask": np.ones(n)})
      rows.append({"video": f"v{v}", "utterance": f"u{u}", "valence": truth[0], "arousal": truth[1]})
  return recs, pd.DataFrame(rows)


def test_tuning_keeps_steps_that_help_and_applies_unchanged(tmp_path):
  rng = np.random.default_rng(1)
  recs, labels = _records(rng, noise=0.4, spread_within=0.05)
  choice = postprocess.tune(recs, labels)
  # Outlier frames: median filtering helps; utterances of a video share their level: smoothing helps.
  assert choice.median_window[0] > 1 and choice.smoothing_k[0] > 0
  hist = choice.validation_ccc["valence"]
  assert hist["smoothing"] > hist["raw"]
  path = str(tmp_path / "choice.json")
  postprocess.save_choice(choice, path)
  loaded = postprocess.load_choice(path)
  other, _ = _records(np.random.default_rng(2), noise=0.4, spread_within=0.05)
  np.testing.assert_allclose(postprocess.apply(loaded, other), postprocess.apply(choice, other))


def test_tuning_drops_smoothing_that_hurts(tmp_path):
  rng = np.random.default_rng(3)
  recs, labels = _records(rng, noise=0.0, spread_within=0.6)
  for r in recs:  # exact, clean predictions: nothing can help
    row = labels[(labels.video == r["video"]) & (labels.utterance == r["utterance"])].iloc[0]
    r["frame_predictions"] = np.tile([row.valence, row.arousal], (len(r["mask"]), 1))
  choice = postprocess.tune(recs, labels)
  assert choice.median_window == (1, 1) and choice.smoothing_k == (0.0, 0.0)
  (tmp_path / "bad.json").write_text("{}")
  with pytest.raises(ValueError, match="not a post-processing choice"):
    postprocess.load_choice(str(tmp_path / "bad.json"))
