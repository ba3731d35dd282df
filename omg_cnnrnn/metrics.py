"""NumPy reference metrics (CCC in two forms, Pearson, MSE) and the OMG-Emotion protocols.

These are the ground truth the TensorFlow loss is tested against, and what evaluation
reports. They know nothing of models or TensorFlow.

Conventions:
- Moments are population moments (`np.var`, `np.std`), as in the paper's Eq. 1 and the
  challenge's scorer.
- A constant prediction (or constant labels) scores CCC 0 and Pearson 0 here, the limit
  of CCC. The challenge's scorer uses `scipy.stats.pearsonr` and reports NaN there; where
  that happens `evaluate_utterances` says so in its `notes`.

The OMG protocol (`evaluate_utterances`):
- An utterance's prediction is the mean or median of its valid frames (`utterance_value`).
- Predictions are joined to the labels by (video, utterance), fields stripped; a table
  with missing, extra, duplicated or NaN predictions is refused with an error naming
  the keys (`match_predictions`). Row order does not matter.
- "global": the final challenge scorer (`calculateEvaluationCCC.py`): one CCC over all
  utterances of the split, in its Pearson form (`ccc_official`); the covariance form
  is reported beside it (`*_ccc_covariance`, equal up to rounding).
- "per_video": the challenge's earlier scorer: a CCC per video, averaged over videos.
- The challenge's scorer reads a CSV with the label file's columns and matches rows by
  position; `write_prediction_csv` writes exactly that, `read_prediction_csv` reads it.
"""

from __future__ import annotations

import csv
import os

import numpy as np
import pandas as pd

from omg_cnnrnn import atomic

KEYS = ("video", "utterance")
DIMENSIONS = ("valence", "arousal")
LABEL_COLUMNS = ("link", "start", "end", "video", "utterance", "arousal", "valence", "EmotionMaxVote")
PROTOCOLS = ("global", "per_video")
AGGREGATES = ("mean", "median")
# How many offending keys an error message lists before it only counts them.
_SHOWN = 5


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


# ----------------------------------------------------------------------------- utterances
def utterance_value(frame_predictions, mask=None, aggregate: str = "mean", empty: str = "nan") -> np.ndarray:
  """An utterance's prediction: mean or median of its valid frames (paper Sec. III-C).

  Args:
    frame_predictions: [T, D] per-frame predictions (D = 2: valence, arousal); [T] is
      taken as [T, 1].
    mask: [T], nonzero where a frame counts (a face was found); None: every frame.
      Masked frames never count, whatever they hold (NaN included).
    aggregate: "mean" or "median".
    empty: what an utterance without any valid frame gets: "nan" (a [D] NaN vector: the
      caller decides, e.g. `evaluation.fill_faceless` or `postprocess.apply` give it its
      video's mean) or "raise" (ValueError).

  Returns:
    float64 [D].

  Raises:
    ValueError: bad shapes, an unknown `aggregate`/`empty`, a NaN or infinite prediction
      on a valid frame (a diverged model must not be hidden by the NaN filling of empty
      utterances), or no valid frame with `empty="raise"`.
  """
  if aggregate not in AGGREGATES:
    raise ValueError(f"unknown aggregate {aggregate!r}; expected one of {AGGREGATES}")
  if empty not in ("nan", "raise"):
    raise ValueError(f"unknown empty-utterance handling {empty!r}; expected 'nan' or 'raise'")
  p = np.asarray(frame_predictions, dtype=np.float64)
  if p.ndim == 1:
    p = p[:, None]
  if p.ndim != 2:
    raise ValueError(f"frame_predictions must be [T, D], got shape {p.shape}")
  valid = np.ones(len(p), bool) if mask is None else np.asarray(mask).reshape(-1) != 0
  if valid.shape[0] != p.shape[0]:
    raise ValueError(f"mask has {valid.shape[0]} frames, frame_predictions {p.shape[0]}")
  if not valid.any():
    if empty == "raise":
      raise ValueError(f"no valid frame among {len(p)} frames")
    return np.full(p.shape[1], np.nan)
  chosen = p[valid]
  bad = ~np.isfinite(chosen).all(axis=1)
  if bad.any():
    frames = np.flatnonzero(valid)[bad]
    raise ValueError(f"{bad.sum()} valid frames hold NaN/inf predictions (frames {frames[:_SHOWN].tolist()})")
  return chosen.mean(axis=0) if aggregate == "mean" else np.median(chosen, axis=0)


# ----------------------------------------------------------------------------- matching
def _examples(keys) -> str:
  keys = list(keys)
  shown = ", ".join(repr(tuple(k)) for k in keys[:_SHOWN])
  return shown + (f", ... ({len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else "")


def _keyed(table: pd.DataFrame, what: str) -> pd.DataFrame:
  """`table` with stripped string keys and float valence/arousal; refuses bad tables."""
  if not isinstance(table, pd.DataFrame):
    raise TypeError(f"{what} must be a pandas DataFrame, got {type(table).__name__}")
  missing = [c for c in (*KEYS, *DIMENSIONS) if c not in table.columns]
  if missing:
    raise ValueError(f"{what} lacks columns {missing} (has {list(table.columns)})")
  out = table[[*KEYS, *DIMENSIONS]].copy()
  for k in KEYS:
    if pd.api.types.is_numeric_dtype(out[k]):
      # pandas reads an all-digit id as int (leading zeros lost) and '12e45678' as a float.
      raise ValueError(f"{what} column {k!r} is numeric ({out[k].dtype}); read the CSV with dtype=str "
                       "so ids stay the strings of the label file")
    out[k] = out[k].astype(str).str.strip()
  for dim in DIMENSIONS:
    values = pd.to_numeric(out[dim], errors="coerce")
    bad = values.isna() & out[dim].notna()
    if bad.any():
      rows = out[bad]
      raise ValueError(f"{what} has {int(bad.sum())} {dim} values that are not numbers: "
                       f"{_examples(zip(rows['video'], rows['utterance'], rows[dim]))}")
    out[dim] = values.astype(np.float64)
  return out


def match_predictions(labels: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
  """Joins utterance predictions to labels by (video, utterance); refuses tables that do not line up.

  Keys are compared as stripped strings, so `utterance_1.mp4 ` matches `utterance_1.mp4`.

  Args:
    labels: a table with video, utterance, valence, arousal (other columns ignored).
    predictions: the same columns, one row per labelled utterance, any row order.

  Returns:
    DataFrame indexed by (video, utterance) in the labels' row order, with columns
    valence, arousal (labels) and pred_valence, pred_arousal.

  Raises:
    ValueError: duplicated keys in either table, labelled utterances without a
      prediction, predictions of unlabelled utterances, NaN predictions or labels,
      values that are not numbers. The message counts each kind and names a few keys.
  """
  lab = _keyed(labels, "labels")
  pred = _keyed(predictions, "predictions")
  if len(lab) == 0:
    raise ValueError("labels are empty: nothing to evaluate")
  problems = []
  for table, what in ((lab, "labels"), (pred, "predictions")):
    dup = table[table.duplicated(list(KEYS), keep="first")]
    if len(dup):
      keys = list(dict.fromkeys(zip(dup["video"], dup["utterance"])))
      problems.append(f"{len(keys)} (video, utterance) keys duplicated in the {what} ({_examples(keys)})")
  if problems:
    raise ValueError("predictions do not line up with the labels: " + "; ".join(problems))
  lab = lab.set_index(list(KEYS))
  pred = pred.set_index(list(KEYS))
  missing = lab.index.difference(pred.index, sort=False)
  extra = pred.index.difference(lab.index, sort=False)
  if len(missing):
    problems.append(f"{len(missing)} labelled (video, utterance) keys have no prediction ({_examples(missing)})")
  if len(extra):
    problems.append(f"{len(extra)} predicted (video, utterance) keys are not in the labels ({_examples(extra)})")
  if problems:
    raise ValueError("predictions do not line up with the labels: " + "; ".join(problems))
  joined = lab.join(pred.add_prefix("pred_"))
  for columns, what in ((["pred_valence", "pred_arousal"], "predictions"), (list(DIMENSIONS), "labels")):
    bad = joined[joined[columns].isna().any(axis=1)]
    if len(bad):
      raise ValueError(f"{len(bad)} {what} are NaN ({_examples(bad.index)})")
  return joined


# ----------------------------------------------------------------------------- protocols
def _video_is_degenerate(labels: np.ndarray) -> bool:
  # Fewer than two utterances or constant labels: the video has no variance to follow,
  # CCC is 0 whatever is predicted and the challenge's earlier scorer gave NaN.
  return len(labels) < 2 or bool(np.all(labels == labels[0]))


def per_video_scores(labels: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
  """CCC, Pearson and MSE of each video (the earlier protocol's terms).

  Returns:
    One row per video in the labels' order of first appearance: video, num_utterances,
    and per dimension `<dim>_ccc` (Pearson form), `<dim>_pearson`, `<dim>_mse`,
    `<dim>_degenerate` (fewer than two utterances or constant labels).
  """
  joined = match_predictions(labels, predictions)
  rows = []
  for video, group in joined.groupby(level=0, sort=False):
    row = {"video": video, "num_utterances": len(group)}
    for dim in DIMENSIONS:
      p, t = group[f"pred_{dim}"].values, group[dim].values
      row[f"{dim}_ccc"] = ccc_official(p, t)
      row[f"{dim}_pearson"] = pearson(p, t)
      row[f"{dim}_mse"] = mse(p, t)
      row[f"{dim}_degenerate"] = _video_is_degenerate(t)
    rows.append(row)
  return pd.DataFrame(rows)


def evaluate_utterances(labels: pd.DataFrame, predictions: pd.DataFrame, protocol: str = "global",
                        degenerate_videos: str = "zero") -> dict:
  """CCC, Pearson and MSE of utterance predictions, valence and arousal, under an OMG protocol.

  Args:
    labels: the split's labels: video, utterance, valence, arousal (e.g. `read_omg_labels`).
    predictions: one row per labelled utterance with video, utterance, valence, arousal;
      any row order (matched by key, see `match_predictions`).
    protocol: "global", the final challenge scorer: `<dim>_ccc` is one CCC over all
      utterances in the scorer's Pearson form, `<dim>_ccc_covariance` the covariance form,
      `<dim>_pearson` and `<dim>_mse` over all utterances too. "per_video", the earlier
      scorer: each term is computed per video and averaged over videos.
    degenerate_videos: per_video only. A video with fewer than two utterances or constant
      labels in a dimension (none on the real train/validation files) has no within-video
      variance in it; the
      earlier scorer gave NaN for it, so its mean was NaN. "zero" counts its CCC and
      Pearson as 0 (their limit), "skip" leaves it out of all three averages. Either way
      a video whose predictions are constant scores CCC 0 (the official NaN).

  Returns:
    Dict with `protocol`, `num_utterances`, `num_videos`, `<dim>_ccc`,
    `<dim>_ccc_covariance`, `<dim>_pearson`, `<dim>_mse` for dim in valence, arousal;
    for per_video also `<dim>_degenerate_videos` (counted per dimension); and `notes`, a
    list of sentences where ours differs from the challenge's scorer (constant
    predictions) or videos were skipped.

  Raises:
    ValueError: an unknown protocol or option, or tables that do not line up.
  """
  if protocol not in PROTOCOLS:
    raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
  if degenerate_videos not in ("zero", "skip"):
    raise ValueError(f"unknown degenerate_videos {degenerate_videos!r}; expected 'zero' or 'skip'")
  joined = match_predictions(labels, predictions)
  videos = joined.index.get_level_values(0)
  result = {"protocol": protocol, "num_utterances": int(len(joined)), "num_videos": int(videos.nunique())}
  notes = []
  if protocol == "global":
    for dim in DIMENSIONS:
      p, t = joined[f"pred_{dim}"].values, joined[dim].values
      result[f"{dim}_ccc"] = ccc_official(p, t)
      result[f"{dim}_ccc_covariance"] = ccc(p, t)
      result[f"{dim}_pearson"] = pearson(p, t)
      result[f"{dim}_mse"] = mse(p, t)
      if np.all(p == p[0]):
        notes.append(f"{dim} predictions are constant: CCC and Pearson reported as 0, the challenge's scorer "
                     "gives NaN")
  else:
    groups = list(joined.groupby(level=0, sort=False))
    for dim in DIMENSIONS:
      scores = {"ccc": [], "ccc_covariance": [], "pearson": [], "mse": []}
      degenerate = constant = 0
      for _, group in groups:
        p, t = group[f"pred_{dim}"].values, group[dim].values
        if _video_is_degenerate(t):
          degenerate += 1
          if degenerate_videos == "skip":
            continue
        constant += int(np.all(p == p[0]))
        scores["ccc"].append(ccc_official(p, t))
        scores["ccc_covariance"].append(ccc(p, t))
        scores["pearson"].append(pearson(p, t))
        scores["mse"].append(mse(p, t))
      if not scores["ccc"]:
        raise ValueError(f"per_video protocol: every video is degenerate in {dim} (fewer than two utterances or "
                         "constant labels) and degenerate_videos='skip' leaves none to score")
      for name, values in scores.items():
        result[f"{dim}_{name}"] = float(np.mean(values))
      result[f"{dim}_degenerate_videos"] = degenerate
      if degenerate:
        notes.append(f"{dim}: {degenerate} videos have fewer than two utterances or constant labels: "
                     + ("left out of the averages" if degenerate_videos == "skip" else "their CCC counts as 0"))
      if constant:
        notes.append(f"{dim}: {constant} videos have constant predictions: their CCC counts as 0, the "
                     "challenge's earlier scorer gives NaN")
  result["notes"] = notes
  return result


# ----------------------------------------------------------------------------- prediction CSV
def write_prediction_csv(path: str, labels: pd.DataFrame, predictions: pd.DataFrame) -> None:
  """Writes predictions in the challenge's format: the label file with valence/arousal replaced.

  The challenge's scorer matches rows by position, so the file has exactly the label
  file's columns (`LABEL_COLUMNS`, in that order) and rows in the label table's order;
  every other field is the label table's (an `EmotionMaxVote` of -1, `read_omg_labels`'
  mark of an empty field, is written empty again). Predictions are matched by (video,
  utterance) first, so a table that does not line up is refused before anything is
  written. Floats are written with full precision (they read back bit-identical). The
  file appears atomically (temporary file in the same folder, then rename).

  Args:
    path: the CSV to write (its folder is created).
    labels: the split's label table with all `LABEL_COLUMNS` (e.g. `read_omg_labels` or
      the raw string table of `read_omg_table`).
    predictions: video, utterance, valence, arousal; any row order.

  Raises:
    ValueError: labels lacking columns, a field the challenge's plain comma split would
      break (a comma, quote or line break), or tables that do not line up.
  """
  missing = [c for c in LABEL_COLUMNS if c not in labels.columns]
  if missing:
    raise ValueError(f"labels lack the label file's columns {missing}; cannot write {path} in the challenge's format")
  joined = match_predictions(labels, predictions)
  out = labels[list(LABEL_COLUMNS)].copy().reset_index(drop=True)
  out["valence"] = joined["pred_valence"].values
  out["arousal"] = joined["pred_arousal"].values
  if pd.api.types.is_numeric_dtype(out["EmotionMaxVote"]):
    out["EmotionMaxVote"] = out["EmotionMaxVote"].map(lambda e: "" if e == -1 else str(e))
  for column in ("link", "start", "end", "video", "utterance", "EmotionMaxVote"):
    text = out[column].astype(str)
    bad = text.str.contains(r'[,"\r\n|]', regex=True)
    if bad.any():
      i = int(np.flatnonzero(bad.values)[0])
      raise ValueError(f"labels row {i + 1} ({out['video'].iat[i]}/{out['utterance'].iat[i]}): {column} "
                       f"{text.iat[i]!r} holds a comma, quote, '|' or line break, which the challenge's "
                       "unquoted CSV reader would split")
  # Atomically (creates the folder); float64 repr round-trips exactly: the scorer reads the very numbers scored here.
  with atomic.atomic_output(path) as tmp, open(tmp, "w", newline="") as f:
    out.to_csv(f, index=False, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)


def read_string_table(path: str, required, kind: str, error=ValueError) -> pd.DataFrame:
  """The one reader of label-like CSVs (label files, prediction CSVs, `--utterances` segments).

  Every field a stripped string (nothing parsed as a number or NaN), header names stripped,
  a spreadsheet's byte-order mark dropped (`utf-8-sig`).

  Args:
    path: the CSV.
    required: the columns it must have.
    kind: what the file is, for the messages ("label file", "prediction CSV", ...).
    error: the exception class raised.

  Raises:
    error: the file is missing or not a file, not a readable CSV, or lacks a required
      column (the message names the file and the columns).
  """
  if not os.path.exists(path):
    raise error(f"{path}: {kind} not found")
  if not os.path.isfile(path):
    raise error(f"{path}: not a file (a {kind} was expected)")
  try:
    table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
  except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
    raise error(f"{path}: not a readable CSV ({str(e).strip()})") from None
  table.columns = [str(c).strip() for c in table.columns]
  missing = [c for c in required if c not in table.columns]
  if missing:
    raise error(f"{path}: missing columns {missing} (found {list(table.columns)})")
  for c in table.columns:
    table[c] = table[c].astype(str).str.strip()
  return table


def read_prediction_csv(path: str) -> pd.DataFrame:
  """Reads a prediction (or label) CSV in the challenge's format.

  Args:
    path: a CSV with at least video, utterance, valence, arousal columns.

  Returns:
    Every column as a stripped string except valence and arousal (float64), in file
    order; ready for `evaluate_utterances`.

  Raises:
    ValueError: a missing or unreadable file, missing columns, or valence/arousal
      fields that are not numbers (naming the file, the line and the utterance).
  """
  table = read_string_table(path, (*KEYS, *DIMENSIONS), "prediction CSV")
  for dim in DIMENSIONS:
    values = pd.to_numeric(table[dim], errors="coerce")
    bad = np.flatnonzero(values.isna().values)
    if len(bad):
      shown = ", ".join(f"line {i + 2} ({table['video'].iat[i]}/{table['utterance'].iat[i]}: {table[dim].iat[i]!r})"
                        for i in bad[:_SHOWN])
      raise ValueError(f"{path}: {len(bad)} {dim} fields are not numbers: {shown}")
    table[dim] = values.astype(np.float64)
  return table
