"""NumPy reference metrics: CCC (two forms), Pearson, MSE.

These are the ground truth the TensorFlow loss is tested against, and what
evaluation reports. They know nothing of models or TensorFlow.
"""

from __future__ import annotations

import numpy as np


def _as_pair(predictions, labels) -> tuple[np.ndarray, np.ndarray]:
  p = np.asarray(predictions, dtype=np.float64).reshape(-1)
  t = np.asarray(labels, dtype=np.float64).reshape(-1)
  if p.shape != t.shape:
    raise ValueError(f"predictions ({p.size}) and labels ({t.size}) differ in length")
  if p.size == 0:
    raise ValueError("CCC of an empty set is undefined")
  return p, t


def ccc(predictions, labels) -> float:
  """Concordance correlation coefficient, covariance form, population moments.

  CCC = 2 cov(p, t) / (var p + var t + (mean p - mean t)^2) (paper Eq. 1). Returns 0
  where the denominator is 0 (both constant and equal): CCC's limit, not NaN.
  """
  p, t = _as_pair(predictions, labels)
  mp, mt = p.mean(), t.mean()
  cov = np.mean((p - mp) * (t - mt))
  denom = p.var() + t.var() + (mp - mt) ** 2
  return float(2.0 * cov / denom) if denom > 0 else 0.0


def pearson(predictions, labels) -> float:
  """Pearson correlation; 0 (not NaN) when either side is constant."""
  p, t = _as_pair(predictions, labels)
  sp, st = p.std(), t.std()
  if sp == 0 or st == 0:
    return 0.0
  return float(np.mean((p - p.mean()) * (t - t.mean())) / (sp * st))


def ccc_official(predictions, labels) -> float:
  """CCC as the OMG challenge's `calculateEvaluationCCC.py` computes it.

  `2 rho sd_t sd_p / (sd_p^2 + sd_t^2 + (mean_p - mean_t)^2)` with NumPy population
  standard deviations and Pearson's rho. Mathematically equal to `ccc`; the official
  script gives NaN for a constant prediction (scipy's pearsonr), this returns 0.
  """
  p, t = _as_pair(predictions, labels)
  rho = pearson(p, t)
  sp, st = p.std(), t.std()
  denom = sp**2 + st**2 + (p.mean() - t.mean()) ** 2
  return float(2.0 * rho * st * sp / denom) if denom > 0 else 0.0


def mse(predictions, labels) -> float:
  """Mean squared error."""
  p, t = _as_pair(predictions, labels)
  return float(np.mean((p - t) ** 2))


# ----------------------------------------------------------------------------- OMG protocols
KEYS = ("video", "utterance")
LABEL_COLUMNS = ("link", "start", "end", "video", "utterance", "arousal", "valence", "EmotionMaxVote")


def utterance_value(frame_predictions, mask=None, aggregate: str = "mean") -> np.ndarray:
  """Utterance prediction [2]: mean or median of the valid frames (Sec. III-C); NaN if none is valid."""
  p = np.asarray(frame_predictions, dtype=np.float64).reshape(len(frame_predictions), -1)
  valid = np.ones(len(p), bool) if mask is None else np.asarray(mask).astype(bool).reshape(-1)
  if valid.shape[0] != p.shape[0]:
    raise ValueError(f"mask has {valid.shape[0]} frames, predictions {p.shape[0]}")
  if not valid.any():
    return np.full(p.shape[1], np.nan)
  if aggregate == "mean":
    return p[valid].mean(axis=0)
  if aggregate == "median":
    return np.median(p[valid], axis=0)
  raise ValueError(f"unknown aggregate {aggregate!r}; expected 'mean' or 'median'")


def _keyed(table, what: str):
  import pandas as pd

  missing = [c for c in (*KEYS, "valence", "arousal") if c not in table.columns]
  if missing:
    raise ValueError(f"{what} lacks columns {missing}")
  out = table.copy()
  for k in KEYS:
    out[k] = out[k].astype(str).str.strip()
  dup = out[out.duplicated(list(KEYS), keep=False)]
  if len(dup):
    keys = sorted(set(map(tuple, dup[list(KEYS)].values)))
    raise ValueError(f"{what} has {len(keys)} duplicated (video, utterance) keys, e.g. {keys[:3]}")
  return out.set_index(list(KEYS)).sort_index() if isinstance(out, pd.DataFrame) else out


def match_predictions(labels, predictions):
  """Joins predictions to labels by (video, utterance); refuses files that do not line up.

  Returns:
    DataFrame indexed like `labels` (same row order) with columns valence, arousal,
    pred_valence, pred_arousal.
  """
  lab = _keyed(labels, "labels")
  pred = _keyed(predictions, "predictions")
  missing = lab.index.difference(pred.index)
  extra = pred.index.difference(lab.index)
  if len(missing) or len(extra):
    raise ValueError(f"predictions do not line up with the labels: {len(missing)} (video, utterance) missing "
                     f"(e.g. {list(missing[:3])}), {len(extra)} not in the labels (e.g. {list(extra[:3])})")
  joined = lab[["valence", "arousal"]].join(pred[["valence", "arousal"]].add_prefix("pred_"))
  bad = joined[joined[["pred_valence", "pred_arousal"]].isna().any(axis=1)]
  if len(bad):
    raise ValueError(f"{len(bad)} predictions are NaN, e.g. {list(bad.index[:3])}")
  order = [tuple(x) for x in labels[list(KEYS)].astype(str).apply(lambda c: c.str.strip()).values]
  return joined.loc[order]


def evaluate_utterances(labels, predictions, protocol: str = "global") -> dict:
  """CCC (official Pearson form and covariance form), Pearson and MSE of utterance predictions.

  Args:
    labels, predictions: tables with video, utterance, valence, arousal.
    protocol: "global" (the final challenge scorer: one CCC over all utterances) or
      "per_video" (the earlier scorer: a CCC per video, averaged over videos; videos with a
      single utterance have no variance and count as CCC 0 unless prediction equals label).
  """
  joined = match_predictions(labels, predictions)
  result = {"protocol": protocol, "num_utterances": int(len(joined)),
            "num_videos": int(joined.index.get_level_values(0).nunique())}
  for dim in ("valence", "arousal"):
    t, p = joined[dim].values, joined[f"pred_{dim}"].values
    if protocol == "global":
      result[f"{dim}_ccc"] = ccc_official(p, t)
      result[f"{dim}_ccc_covariance"] = ccc(p, t)
    elif protocol == "per_video":
      per = [ccc_official(g[f"pred_{dim}"].values, g[dim].values) for _, g in joined.groupby(level=0, sort=False)]
      result[f"{dim}_ccc"] = float(np.mean(per))
    else:
      raise ValueError(f"unknown protocol {protocol!r}; expected 'global' or 'per_video'")
    result[f"{dim}_pearson"] = pearson(p, t)
    result[f"{dim}_mse"] = mse(p, t)
  return result


def write_prediction_csv(path: str, labels, predictions) -> None:
  """A CSV with exactly the label file's columns and row order, valence/arousal predicted.

  The challenge's scorer matches rows by position, so the row order is the label file's.
  """
  import os

  joined = match_predictions(labels, predictions)
  out = labels.copy()
  out["valence"] = joined["pred_valence"].values
  out["arousal"] = joined["pred_arousal"].values
  columns = [c for c in LABEL_COLUMNS if c in out.columns]
  out[columns].to_csv(path + ".tmp", index=False)
  os.replace(path + ".tmp", path)
