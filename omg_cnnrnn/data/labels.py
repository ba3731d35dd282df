"""Label files: the OMG-Emotion CSVs, Aff-Wild and Aff-Wild2 per-frame annotations.

OMG-Emotion (`omg_TrainVideos.csv`, `omg_ValidationVideos.csv`): plain CSV, one header,
columns `link,start,end,video,utterance,arousal,valence,EmotionMaxVote`, no quoting;
fields may carry trailing spaces (stripped here); times in float seconds; arousal in
[0, 1], valence in [-1, 1], EmotionMaxVote 0-6 (0 anger, 1 disgust, 2 fear, 3 happy,
4 neutral, 5 sad, 6 surprise). A file without these columns is unusable (an error naming
the file and the missing columns); a bad row is a `Problem` naming the row, and the rest
of the file stays usable.

Aff-Wild: `<video>.txt` per dimension, one value per frame in [-1, 1].
Aff-Wild2: `<video>.txt` with a `valence,arousal` header then one `v,a` line per frame;
`-5` marks a frame without annotation. Both readers return every frame (the timeline
stays aligned with the video) with a label mask.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pandas as pd

# The challenge's label-file columns: one tuple, in the TF-free metrics module (which writes such files).
from omg_cnnrnn.metrics import LABEL_COLUMNS as OMG_COLUMNS
from omg_cnnrnn.metrics import read_string_table

OMG_RANGES = {"arousal": (0.0, 1.0), "valence": (-1.0, 1.0)}
NUM_EMOTIONS = 7
AFFWILD_RANGE = (-1.0, 1.0)
AFFWILD2_MISSING = -5.0


class LabelFileError(ValueError):
  """A label file that cannot be used at all (missing, unreadable, missing columns)."""


@dataclasses.dataclass(frozen=True)
class Problem:
  """One bad row of a label file: reported by name, the rest is still processed."""

  path: str
  row: int  # 1-based data row (the header is line 1, so data row r is line r + 1)
  video: str
  utterance: str
  reason: str

  def __str__(self):
    return f"{self.path} row {self.row} (line {self.row + 1}, {self.video}/{self.utterance}): {self.reason}"


def read_omg_table(path: str) -> pd.DataFrame:
  """The raw OMG label table, every field a stripped string.

  Args:
    path: the CSV.

  Returns:
    DataFrame with (at least) the `OMG_COLUMNS`, in file order.

  Raises:
    LabelFileError: the file is missing, not a readable CSV, or lacks columns (the
      message names the file and the missing columns).
  """
  return read_string_table(path, OMG_COLUMNS, "label file", LabelFileError)


def _is_safe_name(name: str) -> bool:
  # Ids become path components under the video root: no separators, no parent links.
  return bool(name) and "/" not in name and "\\" not in name and name not in (".", "..")


def validate_omg_labels(table: pd.DataFrame, path: str) -> tuple[pd.DataFrame, list[Problem]]:
  """Splits a raw table into usable rows (typed) and problems.

  A row is a problem if its video or utterance is empty or not a plain file name, a label
  is not a number or outside its range, start/end are not numbers, start is negative,
  end <= start, EmotionMaxVote is neither empty nor a class 0-6, or its (video, utterance)
  repeats an earlier row (the earlier row is kept).

  Args:
    table: from `read_omg_table`.
    path: the file, for the messages.

  Returns:
    (good rows with float start/end/arousal/valence and int EmotionMaxVote (-1 where
    empty), in file order; problems, in file order).
  """
  problems = []
  keep = []
  numeric = {c: pd.to_numeric(table[c], errors="coerce") for c in ("start", "end", "arousal", "valence")}
  emotion = pd.to_numeric(table["EmotionMaxVote"].replace("", "-1"), errors="coerce")
  seen = {}
  for i in range(len(table)):
    video, utt = table["video"].iat[i], table["utterance"].iat[i]
    reasons = []
    if not _is_safe_name(video) or not _is_safe_name(utt):
      reasons.append(f"video {video!r} / utterance {utt!r} empty or not a plain file name")
    for c, (lo, hi) in OMG_RANGES.items():
      v = numeric[c].iat[i]
      if np.isnan(v):
        reasons.append(f"{c} is not a number ({table[c].iat[i]!r})")
      elif not lo <= v <= hi:
        reasons.append(f"{c} {v:g} outside [{lo:g}, {hi:g}]")
    start, end = numeric["start"].iat[i], numeric["end"].iat[i]
    if np.isnan(start) or np.isnan(end):
      reasons.append(f"start/end not numbers ({table['start'].iat[i]!r}, {table['end'].iat[i]!r})")
    elif start < 0:
      reasons.append(f"start {start:g} < 0")
    elif end <= start:
      reasons.append(f"end {end:g} <= start {start:g}")
    e = emotion.iat[i]
    if not (e == -1 or (e in range(NUM_EMOTIONS))):
      reasons.append(f"EmotionMaxVote {table['EmotionMaxVote'].iat[i]!r} is not a class 0-{NUM_EMOTIONS - 1}")
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
  good["EmotionMaxVote"] = emotion.iloc[keep].astype(int)
  return good.reset_index(drop=True), problems


def read_omg_labels(path: str, strict: bool = True) -> pd.DataFrame:
  """Reads and validates an OMG label CSV.

  Args:
    path: the CSV.
    strict: raise on any bad row (naming the rows); else leave them out (use
      `validate_omg_labels` to get them as problems).

  Returns:
    The good rows (see `validate_omg_labels`).

  Raises:
    LabelFileError: an unusable file, or bad rows when `strict`.
  """
  good, problems = validate_omg_labels(read_omg_table(path), path)
  if problems and strict:
    listed = "\n  ".join(str(p) for p in problems[:10])
    more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
    raise LabelFileError(f"{path}: {len(problems)} bad rows:\n  {listed}{more}")
  return good


@dataclasses.dataclass
class FrameLabels:
  """Per-frame labels of one video, every annotation line kept.

  Attributes:
    values: float [n, 2] (valence, arousal); 0 where masked.
    mask: bool [n], True where the frame's label is valid.
    invalid_lines: 1-based file lines holding a value that is neither in [-1, 1] nor the
      Aff-Wild2 "no annotation" mark (masked too; reported, since they mean a bad file).
    paths: the file(s) read.
  """

  values: np.ndarray
  mask: np.ndarray
  invalid_lines: list[int]
  paths: tuple[str, ...]

  def __len__(self):
    return len(self.values)

  def describe_invalid(self) -> str:
    """'' or a one-line account of the invalid values, naming the files and lines."""
    if not self.invalid_lines:
      return ""
    k = len(self.invalid_lines)
    lines = ", ".join(map(str, self.invalid_lines[:5])) + (" ..." if k > 5 else "")
    return (f"{k} label {'line' if k == 1 else 'lines'} outside [-1, 1] or not numbers, masked "
            f"({' / '.join(self.paths)} {'line' if k == 1 else 'lines'} {lines})")


def _check_file(path: str) -> None:
  if not os.path.exists(path):
    raise LabelFileError(f"{path}: annotation file not found")
  if os.path.getsize(path) == 0:
    raise LabelFileError(f"{path}: empty annotation file")


def _numbers(path: str, lines: list[str], columns: int, first_line: int) -> tuple[np.ndarray, np.ndarray]:
  """(values [n, columns], their 1-based file lines) of the non-empty lines; errors name the line."""
  out, where = [], []
  for j, line in enumerate(lines):
    text = line.strip()
    if not text:
      continue
    fields = [f.strip() for f in text.split(",")]
    if len(fields) != columns:
      raise LabelFileError(f"{path} line {first_line + j}: expected {columns} value(s), found {len(fields)} ({text!r})")
    try:
      out.append([float(f) for f in fields])
    except ValueError:
      raise LabelFileError(f"{path} line {first_line + j}: not a number ({text!r})") from None
    where.append(first_line + j)
  if not out:
    raise LabelFileError(f"{path}: no annotation lines")
  return np.asarray(out, np.float64).reshape(-1, columns), np.asarray(where)


def _frame_labels(values: np.ndarray, paths: tuple[str, ...], lines: np.ndarray, missing=None) -> FrameLabels:
  lo, hi = AFFWILD_RANGE
  valid = np.isfinite(values) & (values >= lo) & (values <= hi)
  marked = np.zeros_like(valid) if missing is None else (values == missing)
  mask = valid.all(axis=1)
  bad_rows = np.flatnonzero((~valid & ~marked).any(axis=1))
  return FrameLabels(values=np.where(mask[:, None], values, 0.0), mask=mask,
                     invalid_lines=[int(lines[r]) for r in bad_rows], paths=paths)


def read_affwild(valence_path: str, arousal_path: str) -> FrameLabels:
  """Aff-Wild per-frame labels: one value per line in each of the two files.

  Args:
    valence_path: `.../valence/<video>.txt`.
    arousal_path: `.../arousal/<video>.txt`.

  Returns:
    FrameLabels; values outside [-1, 1] or NaN are masked and listed.

  Raises:
    LabelFileError: a missing/empty file, a line that is not one number, or the two
      files disagreeing on the number of frames.
  """
  columns = []
  for path in (valence_path, arousal_path):
    _check_file(path)
    with open(path, encoding="utf-8-sig") as f:
      columns.append(_numbers(path, f.read().splitlines(), 1, first_line=1))
  (valence, lines), (arousal, _) = columns
  if len(valence) != len(arousal):
    raise LabelFileError(f"{valence_path} has {len(valence)} frames, {arousal_path} {len(arousal)}")
  return _frame_labels(np.concatenate([valence, arousal], axis=1), (valence_path, arousal_path), lines)


def read_affwild2(path: str) -> FrameLabels:
  """Aff-Wild2 `valence,arousal` file.

  Args:
    path: `<video>.txt`: header `valence,arousal`, then one `v,a` line per frame.

  Returns:
    FrameLabels; `-5` frames are masked (expected), other values outside [-1, 1] masked
    and listed.

  Raises:
    LabelFileError: a missing/empty file, another header (e.g. an expression or action
      unit file), or a line that is not two numbers.
  """
  _check_file(path)
  with open(path, encoding="utf-8-sig") as f:
    lines = f.read().splitlines()
  header = [h.strip().lower() for h in lines[0].split(",")]
  if header != ["valence", "arousal"]:
    raise LabelFileError(f"{path}: header {lines[0]!r}, expected 'valence,arousal' (an Aff-Wild2 VA file)")
  values, where = _numbers(path, lines[1:], 2, first_line=2)
  return _frame_labels(values, (path,), where, missing=AFFWILD2_MISSING)


# ------------------------------------------------ segments (omg-predict --utterances)
class UtterancesError(ValueError):
  """An unusable `--utterances` file; `str()` names the file (and the line) and the reason."""


def read_utterances(path: str, video: str) -> pd.DataFrame:
  """Segments of one video from a CSV with `start` and `end` seconds (the OMG layout works).

  Args:
    path: the CSV. Columns `start`, `end` (seconds) are required; `utterance` names the
      segments (default `segment_<n>`); with a `video` column holding several videos,
      only the rows of `video` are kept.
    video: the video's name (the file name without extension, OMG's `video` column).

  Returns:
    DataFrame `video, utterance, start, end` in file order.

  Raises:
    UtterancesError: missing or unreadable file, missing columns, bad numbers (naming the
      line), end <= start, no row for the video, duplicate names.
  """
  table = read_string_table(path, ("start", "end"), "utterance file", UtterancesError)
  table["_line"] = np.arange(len(table)) + 2
  if "video" in table.columns and table["video"].nunique() > 1:
    table = table[table["video"] == video]
    if table.empty:
      raise UtterancesError(f"{path}: no row for video {video!r} (the file lists several videos; its "
                            "'video' column must name this one, the video file's name without extension)")
  if table.empty:
    raise UtterancesError(f"{path}: no utterance rows")
  out = pd.DataFrame({"video": video, "line": table["_line"].to_numpy()})
  for column in ("start", "end"):
    values = pd.to_numeric(table[column], errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
      line = int(out["line"].to_numpy()[bad][0])
      raise UtterancesError(f"{path}, line {line}: {column} {table[column].to_numpy()[bad][0]!r} is not a "
                            "number of seconds")
    out[column] = values
  bad = (out["end"] <= out["start"]) | (out["start"] < 0)
  if bad.any():
    row = out[bad].iloc[0]
    raise UtterancesError(f"{path}, line {row['line']}: segment [{row['start']}, {row['end']}) s is empty or "
                          "starts before 0")
  names = (table["utterance"].to_numpy() if "utterance" in table.columns
           else np.array([f"segment_{i}" for i in range(1, len(table) + 1)]))
  out["utterance"] = names
  duplicated = out["utterance"].duplicated()
  if duplicated.any():
    raise UtterancesError(f"{path}: utterance names repeat for video {video!r}: "
                          f"{sorted(set(out['utterance'][duplicated]))[:5]}")
  return out[["video", "utterance", "start", "end"]].reset_index(drop=True)
