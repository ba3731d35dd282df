"""Table VI post-processing: median filter against a loop reference, smoothing by hand, the paper's
keep-or-drop procedure on frame predictions worked out by hand, the wider search keeps what helps."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import signal

from omg_cnnrnn import configs, metrics, postprocess


def _median_reference(x, w):
  """Direct loop over windows of the sequence mirrored at its ends, edge included (np.pad 'symmetric')."""
  h = w // 2
  padded = np.pad(x, h, mode="symmetric")  # repeats the mirroring where h > len(x)
  return np.array([np.median(padded[i:i + w]) for i in range(len(x))])


# ----------------------------------------------------------------------------- median filter
def test_median_filter_matches_a_loop_reference():
  rng = np.random.default_rng(0)
  p = rng.normal(size=(30, 2))
  out = postprocess.median_filter_frames(p, None, (9, 3))
  np.testing.assert_allclose(out[:, 0], _median_reference(p[:, 0], 9))
  np.testing.assert_allclose(out[:, 1], _median_reference(p[:, 1], 3))
  np.testing.assert_array_equal(postprocess.median_filter_frames(p, windows=(1, 1)), p)
  default = postprocess.median_filter_frames(p)  # the paper's windows, 81 valence / 3 arousal
  np.testing.assert_allclose(default[:, 0], _median_reference(p[:, 0], 81))
  np.testing.assert_allclose(default[:, 1], _median_reference(p[:, 1], 3))


@pytest.mark.parametrize("n", [1, 2, 4, 5, 40])
def test_median_filter_on_utterances_shorter_than_the_window(n):
  rng = np.random.default_rng(n)
  p = rng.normal(size=(n, 2))
  out = postprocess.median_filter_frames(p, None, (81, 3))
  np.testing.assert_allclose(out[:, 0], _median_reference(p[:, 0], 81))
  np.testing.assert_allclose(out[:, 1], _median_reference(p[:, 1], 3))
  # Mirroring shows every frame about equally often in a long window: each output lies
  # between the two middle order statistics (the utterance's median for odd n).
  s = np.sort(p[:, 0])
  assert np.all(out[:, 0] >= s[(n - 1) // 2]) and np.all(out[:, 0] <= s[n // 2])


def test_median_filter_edges_are_not_pulled_to_zero():
  """Why not scipy.signal.medfilt: its zero padding drags a short utterance toward 0."""
  p = np.full((20, 2), 0.5)
  np.testing.assert_array_equal(postprocess.median_filter_frames(p, None, (81, 3)), p)
  with pytest.warns(UserWarning, match="zero-padded"):
    assert np.all(signal.medfilt(p[:, 0], 81) == 0.0)


def test_median_filter_nearest_mode_and_per_dimension_modes():
  rng = np.random.default_rng(1)
  p = rng.normal(size=(12, 2))

  def nearest_reference(x, w):
    padded = np.pad(x, w // 2, mode="edge")
    return np.array([np.median(padded[i:i + w]) for i in range(len(x))])

  out = postprocess.median_filter_frames(p, None, (81, 5), edge_mode=("nearest", "reflect"))
  np.testing.assert_allclose(out[:, 0], nearest_reference(p[:, 0], 81))
  np.testing.assert_allclose(out[:, 1], _median_reference(p[:, 1], 5))
  # A window much longer than the utterance: 'nearest' gives the end frames the say.
  assert set(out[:, 0]) <= {p[0, 0], p[-1, 0]} | set(np.sort(p[:, 0]))
  assert np.mean(np.isin(out[:, 0], [p[0, 0], p[-1, 0]])) > 0.5


def test_median_filter_skips_masked_frames():
  rng = np.random.default_rng(0)
  p = rng.normal(size=(30, 2))
  mask = np.ones(30, bool)
  mask[[0, 5, 6, 7, 20]] = False
  p_masked = p.copy()
  p_masked[~mask] = 1e6  # garbage in face-less frames must not leak into any window
  out = postprocess.median_filter_frames(p_masked, mask.astype(np.float32), (5, 3))
  np.testing.assert_allclose(out[mask, 0], _median_reference(p[mask, 0], 5))
  np.testing.assert_allclose(out[mask, 1], _median_reference(p[mask, 1], 3))
  np.testing.assert_array_equal(out[~mask], 1e6)  # returned unchanged; they never count downstream
  none = postprocess.median_filter_frames(p, np.zeros(30), (5, 3))
  np.testing.assert_array_equal(none, p)
  assert postprocess.median_filter_frames(np.zeros((0, 2)), None, (81, 3)).shape == (0, 2)


def test_median_filter_refuses_bad_windows():
  p = np.zeros((10, 2))
  for windows, match in (((4, 3), "odd"), ((0, 3), "odd"), ((3.0, 3), "odd"), ((3,), "1 windows for 2")):
    with pytest.raises(ValueError, match=match):
      postprocess.median_filter_frames(p, None, windows)
  with pytest.raises(ValueError, match="mask has 9 frames"):
    postprocess.median_filter_frames(p, np.ones(9), (3, 3))
  with pytest.raises(ValueError, match="edge_mode"):
    postprocess.median_filter_frames(p, None, (3, 3), edge_mode="constant")


# ----------------------------------------------------------------------------- smoothing and filling
def test_smoothing_by_hand():
  values = np.array([[0.5, 0.1], [-0.5, 0.3], [np.nan, np.nan], [0.2, 0.2]])
  videos, counts = ["a", "a", "a", "b"], [10, 1, 0, 4]
  m = (10 * 0.5 + 1 * -0.5) / 11  # video a's frame-weighted valence mean
  out = postprocess.smooth_within_video(values, videos, counts, (5.0, 0.0))
  np.testing.assert_allclose(out[:, 0], [(10 * 0.5 + 5 * m) / 15, (-0.5 + 5 * m) / 6, m, 0.2])
  np.testing.assert_array_equal(out[:, 1], values[:, 1])  # k = 0: off
  # The short utterance moves most: it had 1 frame, its neighbour 10.
  assert abs(out[1, 0] - values[1, 0]) > 5 * abs(out[0, 0] - values[0, 0])
  huge = postprocess.smooth_within_video(values, videos, counts, (1e9, 1e9))
  np.testing.assert_allclose(huge[:3, 0], m, rtol=1e-6)
  filled = postprocess.fill_missing(values, videos)
  np.testing.assert_allclose(filled[2], [0.0, 0.2])  # mean of its video's other utterances
  lonely = postprocess.fill_missing(np.array([[0.4, 0.0], [np.nan, np.nan]]), ["a", "b"])
  np.testing.assert_allclose(lonely[1], [0.4, 0.0])  # a face-less video: the split's mean


# ----------------------------------------------------------------------------- the paper's procedure
def _ccc(p, t):
  """CCC with population moments, written out (no library code)."""
  p, t = np.asarray(p, float), np.asarray(t, float)
  cov = np.mean((p - p.mean()) * (t - t.mean()))
  return 2 * cov / (p.var() + t.var() + (p.mean() - t.mean()) ** 2)


def _hand_split(frames, labels):
  """Records of 3-frame utterances A/u1, A/u2, B/u1, B/u2 and their label table.

  frames: per utterance ([3 valence frames], [3 arousal frames]); labels: per utterance (v, a).
  """
  keys = [("A", "u1"), ("A", "u2"), ("B", "u1"), ("B", "u2")]
  records = [{"video": v, "utterance": u, "frame_predictions": np.array(f, float).T, "mask": np.ones(3)}
             for (v, u), f in zip(keys, frames)]
  table = pd.DataFrame([{"video": v, "utterance": u, "valence": lv, "arousal": la}
                        for (v, u), (lv, la) in zip(keys, labels)])
  return records, table


# Validation: valence frames carry one outlier frame (the median helps; the utterances of a
# video differ, so smoothing toward the video hurts); arousal frames sit around their video's
# level (smoothing helps) and the 3-frame median drops the right frame of A/u1 (it hurts).
VALIDATION = _hand_split(
    frames=[([-0.5, -0.5, 0.4], [0.6, 0.9, 0.3]), ([0.5] * 3, [0.7] * 3),
            ([0.0, 0.0, -0.6], [0.1] * 3), ([0.2] * 3, [0.3] * 3)],
    labels=[(-0.5, 0.6), (0.5, 0.6), (0.0, 0.2), (0.2, 0.2)])


def test_paper_procedure_keeps_what_helps_and_drops_what_does_not_by_hand():
  records, labels = VALIDATION
  choice = postprocess.tune(records, labels)  # the default: the paper's procedure, windows 81 / 3, k = 80
  assert choice.procedure == "paper"
  t_v, t_a = labels["valence"], labels["arousal"]
  # Valence. Raw utterance means: -0.2, 0.5, -0.2, 0.2; CCC worked out by hand: 0.1875 / 0.22 = 75/88.
  raw_v = [-0.2, 0.5, -0.2, 0.2]
  assert _ccc(raw_v, t_v) == pytest.approx(75 / 88)
  # Window 81 over 3 mirrored frames: every frame becomes the utterance's median -> the labels exactly.
  med_v = [-0.5, 0.5, 0.0, 0.2]
  # Smoothing, k = 80, n = 3: (3 p + 80 m) / 83, m = the video's mean (A: 0, B: 0.1) -> CCC ~0.107.
  smooth_v = [(3 * -0.5 + 80 * 0.0) / 83, (3 * 0.5 + 80 * 0.0) / 83, (0 + 80 * 0.1) / 83, (0.6 + 80 * 0.1) / 83]
  # Arousal. Raw means 0.6, 0.7, 0.1, 0.3: 0.09 / 0.0975 = 12/13. Window 3 on [a, b, c] mirrored:
  # [a, median(a, b, c), c], so A/u1 [0.6, 0.9, 0.3] -> [0.6, 0.6, 0.3], mean 0.5: 0.08 / 0.09 = 8/9.
  raw_a, med_a = [0.6, 0.7, 0.1, 0.3], [0.5, 0.7, 0.1, 0.3]
  assert (_ccc(raw_a, t_a), _ccc(med_a, t_a)) == (pytest.approx(12 / 13), pytest.approx(8 / 9))
  # The median was dropped, so smoothing works on the raw means (A: m = 0.65, B: m = 0.2).
  smooth_a = [(1.8 + 52) / 83, (2.1 + 52) / 83, (0.3 + 16) / 83, (0.9 + 16) / 83]
  assert _ccc(smooth_v, t_v) == pytest.approx(0.1065, abs=1e-4) and _ccc(smooth_a, t_a) > 12 / 13

  assert choice.median_window == (81, 1)  # valence: kept (75/88 -> 1); arousal: dropped (12/13 -> 8/9)
  assert choice.smoothing_k == (0.0, 80.0)  # valence: dropped (1 -> 0.107); arousal: kept
  assert choice.validation_ccc == {
      "valence": {"raw": pytest.approx(75 / 88), "median_filter": pytest.approx(1.0), "smoothing": pytest.approx(1.0)},
      "arousal": {"raw": pytest.approx(12 / 13), "median_filter": pytest.approx(12 / 13),
                  "smoothing": pytest.approx(_ccc(smooth_a, t_a))}}
  # Two comparisons per dimension and nothing else: the configured window and k, beside "off".
  assert choice.search["valence"] == {"median_window": {"reflect": {"1": pytest.approx(75 / 88), "81": 1.0}},
                                      "smoothing_k": {"80": pytest.approx(_ccc(smooth_v, t_v))}}
  assert choice.search["arousal"] == {"median_window": {"reflect": {"1": pytest.approx(12 / 13),
                                                                    "3": pytest.approx(8 / 9)}},
                                      "smoothing_k": {"80": pytest.approx(_ccc(smooth_a, t_a))}}
  np.testing.assert_allclose(postprocess.apply(choice, records), np.stack([med_v, smooth_a], axis=1), atol=1e-12)


def test_paper_choice_is_applied_unchanged_to_another_split_by_hand(tmp_path):
  choice = postprocess.tune(*VALIDATION)
  path = str(tmp_path / "postprocess.json")
  postprocess.save_choice(choice, path)
  loaded = postprocess.load_choice(path)
  assert loaded == choice and loaded.procedure == "paper"
  # Another split on which the paper's procedure would choose otherwise: the valence means are
  # right (the median hurts) and A/u1's arousal is right without smoothing.
  test, test_labels = _hand_split(
      frames=[([0.1, 0.1, 0.7], [0.4] * 3), ([0.6] * 3, [0.6] * 3),
              ([-0.4] * 3, [0.0, 0.9, 0.0]), ([0.0] * 3, [0.2] * 3)],
      labels=[(0.3, 0.5), (0.6, 0.5), (-0.4, 0.1), (0.0, 0.1)])
  assert postprocess.tune(test, test_labels).median_window[0] == 1
  # The saved choice, unchanged: valence medians (A/u1: 0.1, not its mean 0.3); arousal means
  # 0.4, 0.6, 0.3, 0.2 shrunk with k = 80 toward A: 0.5, B: 0.25.
  want = [[0.1, (1.2 + 40) / 83], [0.6, (1.8 + 40) / 83], [-0.4, (0.9 + 20) / 83], [0.0, (0.6 + 20) / 83]]
  np.testing.assert_allclose(postprocess.apply(loaded, test), want, atol=1e-12)


def test_paper_procedure_follows_its_config_and_the_search_is_explicit():
  records, labels = VALIDATION
  # Steps turned off in the config are not tried (window 1, no smoothing): the raw predictions.
  off = postprocess.tune(records, labels, config=configs.PostprocessConfig(
      median_window_valence=1, median_window_arousal=1, smooth_utterances=False))
  assert (off.median_window, off.smoothing_k, off.procedure) == ((1, 1), (0.0, 0.0), "paper")
  assert off.search["valence"] == {"median_window": {"reflect": {"1": pytest.approx(75 / 88)}}, "smoothing_k": {}}
  nearest = postprocess.tune(records, labels, config=configs.PostprocessConfig(median_edge_mode="nearest",
                                                                              smoothing_k=5.0))
  assert nearest.edge_mode == ("nearest", "nearest") and set(nearest.search["arousal"]["smoothing_k"]) == {"5"}
  # The wider search only when asked, by argument or by config; it names itself.
  wide = postprocess.tune(records, labels, procedure="search")
  assert wide.procedure == "search" and len(wide.search["valence"]["median_window"]["reflect"]) > 2
  assert postprocess.tune(records, labels, config=configs.PostprocessConfig(procedure="search")).procedure == "search"
  with pytest.raises(ValueError, match="procedure 'best' must be one of"):
    postprocess.tune(records, labels, procedure="best")
  with pytest.raises(ValueError, match="postprocess.procedure 'best'"):
    configs.PostprocessConfig(procedure="best")
  # Every procedure has a description for the outputs that show a post-processed figure.
  assert set(postprocess.PROCEDURE_DESCRIPTIONS) == set(postprocess.PROCEDURES) == {"paper", "search", "fixed"}


# ----------------------------------------------------------------------------- the wider search
def _split(seed, videos=8, utts=6, frames=(4, 60), level_spread=0.6, within=0.05, noise=0.05, outliers=0.0,
           dims=(0, 1)):
  """Records whose frames are the utterance's label plus noise (and outlier frames), and the label table.

  Noise and outliers go to the dimensions in `dims` only; the others are predicted exactly.
  """
  rng = np.random.default_rng(seed)
  records, rows = [], []
  for v in range(videos):
    level = rng.uniform(-level_spread, level_spread, 2)
    for u in range(utts):
      truth = level + rng.normal(0, within, 2)
      n = int(rng.integers(*frames))
      frame = np.tile(truth, (n, 1))
      for d in dims:
        frame[:, d] += rng.normal(0, noise, n)
        hit = rng.uniform(size=n) < outliers
        frame[hit, d] += rng.choice([-4.0, 4.0], hit.sum())
      mask = np.ones(n)
      mask[rng.uniform(size=n) < 0.1] = 0
      frame[mask == 0] = 50.0  # what a face-less frame holds must not matter
      records.append({"video": f"v{v}", "utterance": f"utterance_{u}.mp4", "frame_predictions": frame, "mask": mask})
      rows.append({"video": f"v{v}", "utterance": f"utterance_{u}.mp4", "valence": truth[0], "arousal": truth[1]})
  return records, pd.DataFrame(rows)


def _score(records, labels, values):
  preds = pd.DataFrame({"video": [r["video"] for r in records], "utterance": [r["utterance"] for r in records],
                        "valence": values[:, 0], "arousal": values[:, 1]})
  return metrics.evaluate_utterances(labels, preds)


def test_search_keeps_the_median_filter_when_outlier_frames_spoil_the_mean():
  records, labels = _split(1, noise=0.05, outliers=0.15, within=0.3)
  choice = postprocess.search(records, labels)
  for d, dim in enumerate(postprocess.DIMS):
    hist = choice.validation_ccc[dim]
    assert choice.median_window[d] > 1, choice
    assert hist["median_filter"] > hist["raw"] + 0.05
    tried = choice.search[dim]["median_window"][choice.edge_mode[d]]
    assert hist["median_filter"] == tried[str(choice.median_window[d])]
  for mode in postprocess.EDGE_MODES:  # the paper's windows are always tried, with each end handling
    assert "81" in choice.search["valence"]["median_window"][mode]
    assert "3" in choice.search["arousal"]["median_window"][mode]
  result = _score(records, labels, postprocess.apply(choice, records))
  for dim in postprocess.DIMS:  # apply reproduces what tuning measured
    assert result[f"{dim}_ccc"] == pytest.approx(choice.validation_ccc[dim]["smoothing"], abs=1e-12)


def test_search_keeps_smoothing_when_short_noisy_utterances_share_their_video_level():
  records, labels = _split(2, frames=(2, 12), noise=0.5, within=0.02)
  choice = postprocess.search(records, labels)
  for d, dim in enumerate(postprocess.DIMS):
    hist = choice.validation_ccc[dim]
    assert choice.smoothing_k[d] > 0, choice
    assert hist["smoothing"] > hist["median_filter"] + 0.05


def test_search_drops_steps_that_hurt_per_dimension():
  # Utterances of a video differ strongly and predictions are right on their level:
  # smoothing toward the video can only hurt. Valence frames carry outliers (the median
  # filter helps there), arousal frames are exact (nothing to gain).
  records, labels = _split(3, within=0.5, noise=0.0, outliers=0.15, dims=(0,))
  choice = postprocess.search(records, labels)
  assert choice.median_window[0] > 1 and choice.median_window[1] == 1
  assert choice.smoothing_k == (0.0, 0.0)
  hist = choice.validation_ccc
  assert max(choice.search["valence"]["smoothing_k"].values()) < hist["valence"]["median_filter"]
  assert hist["arousal"]["raw"] == pytest.approx(1.0)
  off = postprocess.search(records, labels, window_grid=(1,), config=configs.PostprocessConfig(smooth_utterances=False), edge_modes=("reflect",))
  assert set(off.search["valence"]["median_window"]) == {"reflect"}
  assert set(off.search["valence"]["median_window"]["reflect"]) == {"1", "81"}  # 'off' and the paper's window
  assert set(off.search["arousal"]["median_window"]["reflect"]) == {"1", "3"}
  assert off.search["valence"]["smoothing_k"] == {} and off.smoothing_k == (0.0, 0.0)


def test_search_chooses_the_edge_mode_per_dimension():
  """Valence: only the end frames are right (nearest helps); arousal: the end frames are wrong (reflect)."""
  rng = np.random.default_rng(9)
  records, rows = [], []
  for v in range(10):
    for u in range(4):
      truth = rng.uniform(-0.8, 0.8, 2)
      n = int(rng.integers(8, 20))
      frames = np.tile(truth, (n, 1))
      frames[3:-3, 0] += rng.normal(0, 0.6)  # an utterance-wide error on the middle valence frames
      frames[:, 1] += rng.normal(0, 0.05, n)
      frames[[0, -1], 1] += rng.choice([-3.0, 3.0], 2)  # broken first/last arousal frames
      records.append({"video": f"v{v}", "utterance": f"u{u}", "frame_predictions": frames, "mask": np.ones(n)})
      rows.append({"video": f"v{v}", "utterance": f"u{u}", "valence": truth[0], "arousal": truth[1]})
  choice = postprocess.search(records, pd.DataFrame(rows), smoothing_grid=())
  assert choice.edge_mode == ("nearest", "reflect"), choice
  assert choice.median_window[0] > 1 and choice.median_window[1] > 1
  hist = choice.validation_ccc  # measured: valence 0.84 -> 1.0, arousal 0.74 -> 0.999
  assert hist["valence"]["raw"] < 0.9 and hist["valence"]["median_filter"] > 0.99
  assert hist["arousal"]["raw"] < 0.8 and hist["arousal"]["median_filter"] > 0.99
  for d, dim in enumerate(postprocess.DIMS):
    other = "reflect" if choice.edge_mode[d] == "nearest" else "nearest"
    assert choice.validation_ccc[dim]["median_filter"] > max(choice.search[dim]["median_window"][other].values())


def test_searched_choice_applied_to_another_split_gives_the_in_memory_numbers(tmp_path):
  validation, labels = _split(4, frames=(2, 30), noise=0.4, outliers=0.1, within=0.05)
  choice = postprocess.search(validation, labels)
  assert choice.median_window != (1, 1) and choice.smoothing_k != (0.0, 0.0)
  path = str(tmp_path / "workdir" / "postprocess.json")
  postprocess.save_choice(choice, path)
  loaded = postprocess.load_choice(path)
  assert loaded.median_window == choice.median_window and loaded.smoothing_k == choice.smoothing_k
  assert loaded.validation_ccc == choice.validation_ccc
  test, test_labels = _split(5, frames=(2, 30), noise=0.4, outliers=0.1, within=0.05)
  in_memory = postprocess.apply(choice, test)
  np.testing.assert_array_equal(postprocess.apply(loaded, test), in_memory)
  assert not np.isnan(in_memory).any()
  # The tuned chain also helps on the unseen split.
  raw = _score(test, test_labels, postprocess.apply(postprocess.PostprocessChoice(), test))
  post = _score(test, test_labels, in_memory)
  assert post["valence_ccc"] > raw["valence_ccc"] and post["arousal_ccc"] > raw["arousal_ccc"]


def test_everything_off_is_the_raw_evaluation():
  records, _ = _split(6)
  records[3] = dict(records[3], mask=np.zeros(len(records[3]["mask"])))  # a face-less utterance
  values = postprocess.apply(postprocess.PostprocessChoice(), records)
  raw = np.array([metrics.utterance_value(r["frame_predictions"], r["mask"]) for r in records])
  keep = np.arange(len(records)) != 3
  np.testing.assert_allclose(values[keep], raw[keep], rtol=0, atol=1e-15)
  others = [i for i, r in enumerate(records) if r["video"] == records[3]["video"] and i != 3]
  np.testing.assert_allclose(values[3], raw[others].mean(axis=0))
  median = postprocess.apply(postprocess.PostprocessChoice(aggregate="median"), records)
  np.testing.assert_allclose(median[0], metrics.utterance_value(records[0]["frame_predictions"], records[0]["mask"],
                                                                "median"))
  with pytest.raises(ValueError, match="tuned with aggregate 'mean'.*'median'"):
    postprocess.apply(postprocess.PostprocessChoice(), records, aggregate="median")


def test_records_from_a_frame_table():
  records, _ = _split(7, videos=2, utts=3)
  rows = [pd.DataFrame({"video": r["video"] + " ", "utterance": r["utterance"], "frame": np.arange(len(r["mask"])),
                        "mask": r["mask"].astype(int), "valence": r["frame_predictions"][:, 0],
                        "arousal": r["frame_predictions"][:, 1]}) for r in records]
  table = pd.concat(rows).sample(frac=1.0, random_state=0)  # frames shuffled: 'frame' restores the order
  rebuilt = postprocess.records_from_frame_table(table)
  assert sorted((r["video"], r["utterance"]) for r in rebuilt) == sorted((r["video"], r["utterance"]) for r in records)
  by_key = {(r["video"], r["utterance"]): r for r in rebuilt}
  for r in records:
    np.testing.assert_array_equal(by_key[(r["video"], r["utterance"])]["frame_predictions"], r["frame_predictions"])
  choice = postprocess.PostprocessChoice(median_window=(5, 3), smoothing_k=(20.0, 0.0))
  order = [by_key[(r["video"], r["utterance"])] for r in records]
  np.testing.assert_array_equal(postprocess.apply(choice, order), postprocess.apply(choice, records))
  with pytest.raises(ValueError, match="repeats frame numbers"):
    postprocess.records_from_frame_table(pd.concat([rows[0], rows[0].iloc[:1]]))


# ----------------------------------------------------------------------------- refusals
def test_bad_records_and_labels_are_refused():
  records, labels = _split(8, videos=2, utts=3)
  with pytest.raises(ValueError, match=r"record 3 \(v0/utterance_0.mp4\) repeats record 0"):
    postprocess.apply(postprocess.PostprocessChoice(), records[:3] + [dict(records[0], video=" v0")])
  with pytest.raises(ValueError, match=r"record 1 \(v0/utterance_1.mp4\): frame_predictions must be \[n, 2\]"):
    postprocess.apply(postprocess.PostprocessChoice(), [records[0], dict(records[1], frame_predictions=np.zeros(5))])
  with pytest.raises(ValueError, match=r"record 0 \(v0/utterance_0.mp4\): mask has 1 frames"):
    postprocess.apply(postprocess.PostprocessChoice(), [dict(records[0], mask=np.ones(1))])
  nan = np.array(records[0]["frame_predictions"])
  nan[np.flatnonzero(records[0]["mask"])[0]] = np.nan
  with pytest.raises(ValueError, match=r"v0/utterance_0.mp4\): NaN/inf predictions on 1 valid frames"):
    postprocess.apply(postprocess.PostprocessChoice(), [dict(records[0], frame_predictions=nan)])
  with pytest.raises(ValueError, match=r"record 0 lacks \['frame_predictions'\]"):
    postprocess.apply(postprocess.PostprocessChoice(), [{"video": "v", "utterance": "u"}])
  with pytest.raises(ValueError, match=r"1 labelled \(video, utterance\) keys have no prediction \(\('v1', "
                                       r"'utterance_2.mp4'\)\)"):
    postprocess.tune(records[:-1], labels)


def test_choices_validate_and_bad_files_are_refused(tmp_path):
  good = postprocess.choice_to_dict(postprocess.PostprocessChoice(median_window=(81, 3), smoothing_k=(40.0, 0.0)))
  cases = {"missing": {k: v for k, v in good.items() if k != "edge_mode"},
           "even": dict(good, median_window=[80, 3]),
           "negative": dict(good, smoothing_k=[-1.0, 0.0]),
           "mode": dict(good, edge_mode="constant"),
           "extra": dict(good, windows=[3, 3])}
  expected = {"missing": r"missing fields \['edge_mode'\]", "even": "odd integer", "negative": ">= 0",
              "mode": "edge_mode 'constant'", "extra": r"unknown fields \['windows'\]"}
  for name, d in cases.items():
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(d))
    with pytest.raises(ValueError, match=f"{name}.json is not a post-processing choice: .*{expected[name]}"):
      postprocess.load_choice(str(path))
  (tmp_path / "text.json").write_text("median 81")
  with pytest.raises(ValueError, match="text.json is not a post-processing choice: not JSON"):
    postprocess.load_choice(str(tmp_path / "text.json"))
  with pytest.raises(ValueError, match="none.json: post-processing choice not found"):
    postprocess.load_choice(str(tmp_path / "none.json"))
  (tmp_path / "float.json").write_text(json.dumps(dict(good, median_window=[81.0, 3.0], edge_mode="nearest")))
  loaded = postprocess.load_choice(str(tmp_path / "float.json"))
  assert loaded.median_window == (81, 3) and loaded.edge_mode == ("nearest", "nearest")
  with pytest.raises(ValueError, match="odd integer"):
    postprocess.PostprocessChoice(median_window=(2, 3))
  # The procedure travels with the choice; a file from before the field came from the search.
  assert postprocess.choice_from_dict(dict(good, procedure="paper")).procedure == "paper"
  assert postprocess.choice_from_dict(good).procedure == "fixed"  # built by hand above
  assert postprocess.choice_from_dict({k: v for k, v in good.items() if k != "procedure"}).procedure == "search"
  with pytest.raises(ValueError, match="procedure 'best'"):
    postprocess.choice_from_dict(dict(good, procedure="best"))


def test_windows_beyond_the_cap_are_refused_with_the_cap(tmp_path):
  """A postprocess.json window of 40001 frames made omg-predict hold 20k frames back."""
  cap = postprocess.MAX_MEDIAN_WINDOW
  assert cap >= max(postprocess.WINDOW_GRID) and cap % 2 == 1
  postprocess.median_filter_frames(np.zeros((10, 2)), None, (cap, 3))  # the cap itself is allowed
  with pytest.raises(ValueError, match=f"median window {cap + 2} exceeds the cap of {cap} frames"):
    postprocess.median_filter_frames(np.zeros((10, 2)), None, (cap + 2, 3))
  good = postprocess.choice_to_dict(postprocess.PostprocessChoice(median_window=(81, 3), smoothing_k=(0.0, 0.0)))
  path = tmp_path / "postprocess.json"
  path.write_text(json.dumps(dict(good, median_window=[40001, 3])))
  with pytest.raises(ValueError, match=f"{path}.*median window 40001 exceeds the cap of {cap} frames"):
    postprocess.load_choice(str(path))
