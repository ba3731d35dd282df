"""Table VI post-processing (Sec. III-E): per-frame median filter, within-video smoothing.

Input representation: a list of per-utterance records, each a dict with `video`,
`utterance`, `frame_predictions` float [n, 2] (valence, arousal) and `mask` [n]
(1 for frames that count: face found). `evaluate.predict_split` builds them.

The chain, per dimension (valence and arousal keep their own settings):
1. median filter over each utterance's valid per-frame predictions, window `w`
   (the paper: 81 for valence, 3 for arousal). `scipy.ndimage.median_filter` with
   mode "nearest": the edges repeat the first/last value instead of being pulled to 0
   (as `scipy.signal.medfilt`'s zero padding would), which matters for utterances
   shorter than the window. Masked frames are left out of the filter;
2. the utterance value: mean (or median) of its valid frames;
3. smoothing within a video, aimed at utterances with few frames: each utterance value
   is shrunk toward the mean of its video's utterance values with weight k / (n + k),
   n its number of valid frames: `p' = (n p + k m_video) / (n + k)`. Utterances with
   many frames barely move; short (noisy) ones lean on their video. This is our reading
   of the paper's one sentence ("smoothing, especially to those that consisted of too
   few frames"); k = 0 turns it off.

`tune` searches `w` and `k` on the validation split and keeps each step only where it
raises that split's CCC (official global protocol); `save_choice`/`load_choice` store
the choice and `apply` uses it unchanged on another split (the paper's protocol).
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pandas as pd
from scipy import ndimage

from omg_cnnrnn import configs, metrics

DIMS = ("valence", "arousal")
WINDOW_GRID = (1, 3, 5, 9, 15, 27, 41, 81, 121)
SMOOTHING_GRID = (0.0, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 640.0)


@dataclasses.dataclass(frozen=True)
class PostprocessChoice:
  """The settings kept on validation, per dimension (window 1 / k 0: step off)."""

  median_window: tuple[int, int] = (1, 1)
  smoothing_k: tuple[float, float] = (0.0, 0.0)
  aggregate: str = "mean"
  # Validation CCC after each stage, for the record: raw, + median, + smoothing.
  validation_ccc: dict = dataclasses.field(default_factory=dict)


def choice_to_dict(choice: PostprocessChoice) -> dict:
  return dataclasses.asdict(choice)


def save_choice(choice: PostprocessChoice, path: str) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path + ".tmp", "w") as f:
    json.dump(choice_to_dict(choice), f, indent=2)
  os.replace(path + ".tmp", path)


def load_choice(path: str) -> PostprocessChoice:
  with open(path) as f:
    d = json.load(f)
  try:
    return PostprocessChoice(median_window=tuple(int(w) for w in d["median_window"]),
                             smoothing_k=tuple(float(k) for k in d["smoothing_k"]),
                             aggregate=d.get("aggregate", "mean"), validation_ccc=d.get("validation_ccc", {}))
  except (KeyError, TypeError, ValueError) as e:
    raise ValueError(f"{path} is not a post-processing choice: {e}") from None


def median_filter_frames(frame_predictions, mask=None, windows=(81, 3)) -> np.ndarray:
  """Median filter of one utterance's per-frame predictions, per dimension, over valid frames only.

  Args:
    frame_predictions: [n, D] predictions.
    mask: [n] valid frames (None: all). Masked frames are returned unchanged.
    windows: one odd window per dimension (1 = no filtering).
  """
  p = np.array(frame_predictions, dtype=np.float64, copy=True).reshape(len(frame_predictions), -1)
  valid = np.ones(len(p), bool) if mask is None else np.asarray(mask).astype(bool)
  for d, w in enumerate(windows):
    if w > 1 and valid.any():
      p[valid, d] = ndimage.median_filter(p[valid, d], size=int(w), mode="nearest")
  return p


def _utterance_values(records, windows, aggregate) -> np.ndarray:
  return np.array([metrics.utterance_value(median_filter_frames(r["frame_predictions"], r["mask"], windows),
                                           r["mask"], aggregate) for r in records]).reshape(-1, 2)


def smooth_within_video(values: np.ndarray, videos, counts, k: tuple[float, float]) -> np.ndarray:
  """`p' = (n p + k m_video) / (n + k)` per dimension; NaN values take their video's mean."""
  out = np.array(values, dtype=np.float64, copy=True)
  frame = pd.DataFrame({"video": list(videos), "n": np.asarray(counts, np.float64)})
  for d in range(out.shape[1]):
    frame["p"] = out[:, d]
    video_mean = frame.groupby("video")["p"].transform("mean").values
    n, p = frame["n"].values, np.where(np.isnan(out[:, d]), video_mean, out[:, d])
    kd = float(k[d])
    out[:, d] = p if kd <= 0 else (n * p + kd * video_mean) / (n + kd)
  return out


def apply(choice: PostprocessChoice, records: list[dict], aggregate: str | None = None) -> np.ndarray:
  """Utterance predictions [N, 2] of `records` post-processed with a saved choice."""
  values = _utterance_values(records, choice.median_window, aggregate or choice.aggregate)
  counts = [int(np.asarray(r["mask"]).astype(bool).sum()) for r in records]
  return smooth_within_video(values, [r["video"] for r in records], counts, choice.smoothing_k)


def _score(records, labels, values, d) -> float:
  table = pd.DataFrame({"video": [r["video"] for r in records], "utterance": [r["utterance"] for r in records]})
  table["valence"], table["arousal"] = values[:, 0], values[:, 1]
  table = table.fillna(table.mean(numeric_only=True)).fillna(0.0)
  joined = metrics.match_predictions(labels, table)
  return metrics.ccc_official(joined[f"pred_{DIMS[d]}"].values, joined[DIMS[d]].values)


def tune(records: list[dict], labels: pd.DataFrame, aggregate: str = "mean",
         config: configs.PostprocessConfig | None = None) -> PostprocessChoice:
  """Searches the median windows and smoothing strengths on one split (validation).

  Each step is kept, per dimension, only if it raises that split's CCC over the
  previous stage. The paper's windows (81, 3) are always among the candidates.
  """
  config = config or configs.PostprocessConfig()
  paper = (config.median_window_valence, config.median_window_arousal)
  counts = [int(np.asarray(r["mask"]).astype(bool).sum()) for r in records]
  videos = [r["video"] for r in records]
  raw = _utterance_values(records, (1, 1), aggregate)
  windows, ks, history = [1, 1], [0.0, 0.0], {}
  for d, dim in enumerate(DIMS):
    base = _score(records, labels, raw, d)
    best_w, best = 1, base
    for w in sorted(set(WINDOW_GRID) | {paper[d]}):
      if w <= 1:
        continue
      trial = list(windows)
      trial[d] = w
      score = _score(records, labels, _utterance_values(records, trial, aggregate), d)
      if score > best + 1e-9:
        best_w, best = w, score
    windows[d] = best_w
    filtered = _utterance_values(records, windows, aggregate)
    after_median = best
    best_k = 0.0
    if config.smooth_utterances:
      for k in SMOOTHING_GRID:
        if k <= 0:
          continue
        trial = [0.0, 0.0]
        trial[d] = k
        score = _score(records, labels, smooth_within_video(filtered, videos, counts, trial), d)
        if score > best + 1e-9:
          best_k, best = k, score
    ks[d] = best_k
    history[dim] = {"raw": base, "median_filter": after_median, "smoothing": best}
  return PostprocessChoice(median_window=tuple(windows), smoothing_k=tuple(ks), aggregate=aggregate,
                           validation_ccc=history)
