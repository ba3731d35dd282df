"""Label files: the OMG-Emotion CSVs, Aff-Wild and Aff-Wild2 per-frame annotations.

OMG-Emotion (`omg_TrainVideos.csv`, `omg_ValidationVideos.csv`): plain CSV, one header,
columns `link,start,end,video,utterance,arousal,valence,EmotionMaxVote`; fields may
carry trailing spaces (stripped here); arousal in [0, 1], valence in [-1, 1].
Aff-Wild: `<video>.txt` per dimension, one value per frame in [-1, 1].
Aff-Wild2: `<video>.txt` with a `valence,arousal` header then one `v,a` line per
frame; `-5` marks a frame without annotation (kept, label-masked).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pandas as pd

OMG_COLUMNS = ("link", "start", "end", "video", "utterance", "arousal", "valence", "EmotionMaxVote")
AFFWILD2_MISSING = -5.0


class LabelFileError(ValueError):
  """A label file that cannot be used at all (missing, unreadable, missing columns)."""


@dataclasses.dataclass(frozen=True)
class Problem:
  """One bad row of a label file: reported by name, the rest is still processed."""

  path: str
  row: int  # 1-based data row (header excluded); -1 for file-level problems
  video: str
  utterance: str
  reason: str

  def __str__(self):
    where = f"row {self.row}" if self.row >= 0 else "file"
    return f"{self.path} {where} ({self.video}/{self.utterance}): {self.reason}"


def read_omg_table(path: str) -> pd.DataFrame:
  """The raw OMG label table with stripped string fields; fails clearly on unusable files."""
  if not os.path.exists(path):
    raise LabelFileError(f"{path}: label file not found")
  try:
    table = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
  except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
    raise LabelFileError(f"{path}: not a readable CSV ({e})") from None
  table.columns = [c.strip() for c in table.columns]
  missing = [c for c in OMG_COLUMNS if c not in table.columns]
  if missing:
    raise LabelFileError(f"{path}: missing columns {missing} (found {list(table.columns)})")
  for c in table.columns:
    table[c] = table[c].astype(str).str.strip()
  return table


def validate_omg_labels(table: pd.DataFrame, path: str) -> tuple[pd.DataFrame, list[Problem]]:
  """Splits a raw table into usable rows (typed) and problems (NaN/out-of-range labels, bad times, duplicates)."""
  problems = []
  keep = []
  numeric = {c: pd.to_numeric(table[c], errors="coerce") for c in ("start", "end", "arousal", "valence")}
  emotion = pd.to_numeric(table["EmotionMaxVote"], errors="coerce")
  seen = {}
  for i in range(len(table)):
    video, utt = table["video"].iat[i], table["utterance"].iat[i]
    reasons = []
    if not video or not utt:
      reasons.append("empty video or utterance")
    for c, lo, hi in (("arousal", 0.0, 1.0), ("valence", -1.0, 1.0)):
      v = numeric[c].iat[i]
      if np.isnan(v):
        reasons.append(f"{c} is not a number ({table[c].iat[i]!r})")
      elif not lo <= v <= hi:
        reasons.append(f"{c} {v:g} outside [{lo:g}, {hi:g}]")
    start, end = numeric["start"].iat[i], numeric["end"].iat[i]
    if np.isnan(start) or np.isnan(end):
      reasons.append(f"start/end not numbers ({table['start'].iat[i]!r}, {table['end'].iat[i]!r})")
    elif end <= start:
      reasons.append(f"end {end:g} <= start {start:g}")
    key = (video, utt)
    if key in seen:
      reasons.append(f"duplicate (video, utterance) of row {seen[key] + 1}")
    else:
      seen[key] = i
    if reasons:
      problems.append(Problem(path, i + 1, video, utt, "; ".join(reasons)))
    else:
      keep.append(i)
  good = table.iloc[keep].copy()
  for c in ("start", "end", "arousal", "valence"):
    good[c] = numeric[c].iloc[keep].astype(float)
  good["EmotionMaxVote"] = emotion.iloc[keep].fillna(-1).astype(int)
  return good.reset_index(drop=True), problems


def read_omg_labels(path: str, strict: bool = True) -> pd.DataFrame:
  """Reads and validates an OMG label CSV.

  Args:
    path: the CSV.
    strict: raise on any bad row (naming the rows); else drop them silently (use
      `validate_omg_labels` to get the problems).
  """
  good, problems = validate_omg_labels(read_omg_table(path), path)
  if problems and strict:
    listed = "\n  ".join(str(p) for p in problems[:10])
    raise LabelFileError(f"{path}: {len(problems)} bad rows:\n  {listed}")
  return good


def read_affwild(valence_path: str, arousal_path: str) -> tuple[np.ndarray, np.ndarray]:
  """Aff-Wild per-frame labels -> ([n, 2] valence/arousal, [n] label mask)."""
  values = []
  for path in (valence_path, arousal_path):
    if not os.path.exists(path):
      raise LabelFileError(f"{path}: annotation file not found")
    try:
      values.append(np.loadtxt(path, dtype=np.float64, ndmin=1))
    except ValueError as e:
      raise LabelFileError(f"{path}: not one number per line ({e})") from None
  if len(values[0]) != len(values[1]):
    raise LabelFileError(f"{valence_path} has {len(values[0])} frames, {arousal_path} {len(values[1])}")
  labels = np.stack(values, axis=1)
  mask = np.all(np.isfinite(labels) & (np.abs(labels) <= 1.0), axis=1)
  return np.where(mask[:, None], labels, 0.0), mask


def read_affwild2(path: str) -> tuple[np.ndarray, np.ndarray]:
  """Aff-Wild2 `valence,arousal` file -> ([n, 2], [n] mask; -5 frames masked)."""
  if not os.path.exists(path):
    raise LabelFileError(f"{path}: annotation file not found")
  try:
    labels = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
  except ValueError as e:
    raise LabelFileError(f"{path}: expected a 'valence,arousal' header and 'v,a' lines ({e})") from None
  if labels.shape[1] != 2:
    raise LabelFileError(f"{path}: expected 2 columns, found {labels.shape[1]}")
  mask = np.all((labels != AFFWILD2_MISSING) & np.isfinite(labels) & (np.abs(labels) <= 1.0), axis=1)
  return np.where(mask[:, None], labels, 0.0), mask
