"""Table VI post-processing (paper Sec. III-E): per-frame median filter, within-video smoothing.

Input: a list of per-utterance records, each a dict with
- `video`, `utterance`: the keys of the label file (stripped strings);
- `frame_predictions`: float [n, 2] per-frame (valence, arousal) predictions in frame order;
- `mask`: [n], nonzero for frames that count (a face was found); optional, None or
  absent means every frame counts.
Other keys are ignored. `evaluation.predict_split` builds these from the network's
per-frame outputs; `records_from_frame_table` rebuilds them from a per-frame CSV.

The chain, per dimension (valence and arousal keep their own settings):
1. Median filter over each utterance's per-frame predictions, window `w` (the paper:
   81 valence, 3 arousal; 1 = off). Only the valid frames are filtered, as one sequence
   in frame order: a masked (face-less) frame neither enters a window nor receives a
   value that counts. Two ways to extend an utterance at its ends (the paper does not
   say which it used; the paper's procedure takes `PostprocessConfig.median_edge_mode`,
   the wider search tries both), both `np.pad` then `scipy.ndimage.median_filter`:
   - "reflect" (the default): the sequence mirrored at its ends, edge values included,
     repeatedly where the window is longer than the utterance. Every frame appears
     about equally often in a long window, so a window longer than the utterance gives
     (nearly) its median on every frame;
   - "nearest": each end value repeated w/2 times. Where w is much longer than the
     utterance every window is dominated by copies of the first and last frames, so the
     utterance value leans on its end frames (which can help: a recurrent network's
     last frames have seen the most context).
   Not `scipy.signal.medfilt`: it pads with zeros, pulling every frame within w/2 of
   either end toward 0; at w = 81 (about 3 s) that is a large share of a typical 8 s
   OMG utterance, and all of a short one.
2. The utterance value: mean (or median) of its valid filtered frames
   (`metrics.utterance_value`).
3. Smoothing within a video, aimed at utterances with few frames. Our reading of the
   paper's one sentence ("smoothing (especially to those that consisted of too few
   frames)"): each utterance value p, from n valid frames, is shrunk toward its video's
   mean m: `p' = (n p + k m) / (n + k)`, where m is the mean of the video's utterance
   values weighted by their valid frames (with the mean aggregate: the mean over all
   the video's valid frames). An utterance with many frames barely moves, one with few
   leans on its video (on OMG most of the label variance lies between videos, see
   SPEC), and one without any valid frame takes m. k = 0 turns the step off.
4. Utterances still without a value (no valid frame, and the step above off or the
   whole video face-less) take the mean of their video's other utterances, else the
   split's mean (the rule of `evaluation.fill_faceless`), so `apply` returns a complete,
   scoreable table.

Choosing the settings on validation (`tune`), two procedures, named in every choice
(`PostprocessChoice.procedure`) and so in every output that shows a post-processed figure:
- "paper" (the default; Sec. III-E): the settings are fixed by `configs.PostprocessConfig`
  (windows 81 valence / 3 arousal, one smoothing strength k, one edge mode). In the paper's
  order, per dimension, the median filter is kept only if it raises the validation CCC
  (official global protocol) over the raw predictions, then the smoothing only if it raises
  it over what was kept. Nothing is searched: two comparisons per dimension. This is what
  the Table VI rows run and what `evaluate --tune_postprocess` does.
- "search" (`search`; not in the paper, an explicit option): the same greedy chain, but each
  step picks the best of a grid (windows 1..161 with both edge modes, k up to 2560 frames)
  on the split it then reports. With most of OMG's label variance between videos, picking
  k on validation can move the CCC by several points, so its figures are optimistic and
  not comparable with Table VI.
Either way `save_choice`/`load_choice` store the choice as JSON and `apply` uses it
unchanged on another split (the paper's protocol). A choice built by hand (e.g. the
paper's windows when a model has no saved choice) says "fixed": validated on nothing.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
from typing import Iterable, Iterator

import numpy as np
import pandas as pd
from scipy import ndimage

from omg_cnnrnn import atomic, configs, metrics

DIMS = metrics.DIMENSIONS
# Candidate windows in frames (OMG video runs at 25-30 fps; utterances ~8 s); the paper's
# windows are added by `tune`. 1 = off.
WINDOW_GRID = (1, 3, 5, 9, 15, 27, 41, 81, 121, 161)
# The widest window a choice may hold: twice the widest searched one (~13 s at 25 fps, longer
# than an OMG utterance). `omg-predict` holds half a window of frames back, so an unchecked
# window read from postprocess.json (say 40001) would buffer 20k frames.
MAX_MEDIAN_WINDOW = 321
# Candidate k in frames: k equal to an utterance's frame count weighs it and its video alike.
SMOOTHING_GRID = (0.0, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 640.0, 1280.0, 2560.0)
EDGE_MODES = ("reflect", "nearest")
_NUMPY_PAD = {"reflect": "symmetric", "nearest": "edge"}  # ndimage's mode names -> np.pad's
SMOOTHING_METHODS = ("shrink_to_video_mean",)
# How a choice was made (module docstring): the paper's keep-or-drop, the wider search, or by hand.
PROCEDURES = configs.POSTPROCESS_PROCEDURES + ("fixed",)
PROCEDURE_DESCRIPTIONS = {
    "paper": "paper (Sec. III-E: fixed windows 81/3 and smoothing, each step kept only if it raised "
             "validation CCC)",
    "search": "search (not the paper's: windows, edge modes and smoothing strength searched on validation)",
    "fixed": "fixed (settings given by hand, not validated)",
}


@dataclasses.dataclass(frozen=True)
class PostprocessChoice:
  """The settings kept on validation, per dimension (valence, arousal).

  Attributes:
    median_window: odd window per dimension; 1 = median filter off.
    smoothing_k: shrinkage strength per dimension, in frames; 0 = smoothing off.
    aggregate: utterance value of the frames, "mean" or "median" (what it was tuned with).
    edge_mode: per dimension, how the median filter extends an utterance at its ends
      (`EDGE_MODES`, module docstring).
    smoothing: the smoothing method (one so far, see the module docstring).
    validation_ccc: for the record, per dimension, the tuning split's CCC after each
      stage: "raw", "median_filter", "smoothing" (a stage not kept repeats the previous).
    search: for the record, per dimension, the CCC of every candidate window and k
      ("paper": the configured window and k only, beside "1" = off).
    procedure: how the settings were chosen (`PROCEDURES`, module docstring).
  """

  median_window: tuple[int, int] = (1, 1)
  smoothing_k: tuple[float, float] = (0.0, 0.0)
  aggregate: str = "mean"
  edge_mode: tuple[str, str] = ("reflect", "reflect")
  smoothing: str = "shrink_to_video_mean"
  validation_ccc: dict = dataclasses.field(default_factory=dict)
  search: dict = dataclasses.field(default_factory=dict)
  procedure: str = "fixed"

  def __post_init__(self):
    windows = tuple(self.median_window)
    ks = tuple(self.smoothing_k)
    if len(windows) != len(DIMS) or len(ks) != len(DIMS):
      raise ValueError(f"median_window {windows} and smoothing_k {ks} need one value per dimension {DIMS}")
    for w in windows:
      _check_window(w)
    for k in ks:
      if isinstance(k, bool) or not isinstance(k, (int, float)) or not math.isfinite(k) or k < 0:
        raise ValueError(f"smoothing_k {k!r} must be a finite number >= 0 (0 = off)")
    if self.aggregate not in metrics.AGGREGATES:
      raise ValueError(f"aggregate {self.aggregate!r} must be one of {metrics.AGGREGATES}")
    modes = _edge_modes(self.edge_mode, len(DIMS))
    if self.smoothing not in SMOOTHING_METHODS:
      raise ValueError(f"smoothing {self.smoothing!r} must be one of {SMOOTHING_METHODS}")
    if self.procedure not in PROCEDURES:
      raise ValueError(f"procedure {self.procedure!r} must be one of {PROCEDURES}")
    object.__setattr__(self, "median_window", tuple(int(w) for w in windows))
    object.__setattr__(self, "smoothing_k", tuple(float(k) for k in ks))
    object.__setattr__(self, "edge_mode", modes)


def _edge_modes(edge_mode, num_dims: int) -> tuple[str, ...]:
  """One mode per dimension from a mode or a per-dimension sequence; ValueError if unknown."""
  modes = (edge_mode,) * num_dims if isinstance(edge_mode, str) else tuple(edge_mode)
  if len(modes) != num_dims:
    raise ValueError(f"edge_mode {edge_mode!r}: need one mode or {num_dims}")
  for m in modes:
    if m not in EDGE_MODES:
      raise ValueError(f"edge_mode {m!r} must be one of {EDGE_MODES}")
  return modes


def _check_window(w) -> None:
  if isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 1 or w % 2 == 0:
    raise ValueError(f"median window {w!r} must be an odd integer >= 1 (1 = off); an even window has no "
                     "centre frame")
  if w > MAX_MEDIAN_WINDOW:
    raise ValueError(f"median window {w} exceeds the cap of {MAX_MEDIAN_WINDOW} frames (a streaming "
                     "prediction holds half a window of frames back; the widest searched window is "
                     f"{max(WINDOW_GRID)})")


def choice_to_dict(choice: PostprocessChoice) -> dict:
  """The choice as a JSON-ready dict (`choice_from_dict` reads it back)."""
  d = dataclasses.asdict(choice)
  d["median_window"] = list(choice.median_window)
  d["smoothing_k"] = list(choice.smoothing_k)
  d["edge_mode"] = list(choice.edge_mode)
  return d


def choice_from_dict(d: dict) -> PostprocessChoice:
  """A choice from `choice_to_dict`'s dict; ValueError naming what is missing or wrong."""
  if not isinstance(d, dict):
    raise ValueError(f"expected a JSON object, got {type(d).__name__}")
  required = ("median_window", "smoothing_k", "aggregate", "edge_mode", "smoothing")
  missing = [k for k in required if k not in d]
  if missing:
    raise ValueError(f"missing fields {missing}")
  unknown = sorted(set(d) - {f.name for f in dataclasses.fields(PostprocessChoice)})
  if unknown:
    raise ValueError(f"unknown fields {unknown}")
  windows, ks = d["median_window"], d["smoothing_k"]
  if not isinstance(windows, list) or not isinstance(ks, list):
    raise ValueError(f"median_window {windows!r} and smoothing_k {ks!r} must be lists")
  # JSON has one number type: a window written as 81.0 is still 81, 81.5 is refused below.
  windows = [int(w) if isinstance(w, float) and w.is_integer() else w for w in windows]
  # A file without `procedure` predates the field, when `tune` was the wider search.
  return PostprocessChoice(median_window=tuple(windows), smoothing_k=tuple(ks), aggregate=d["aggregate"],
                           edge_mode=d["edge_mode"] if isinstance(d["edge_mode"], str) else tuple(d["edge_mode"]),
                           smoothing=d["smoothing"],
                           validation_ccc=d.get("validation_ccc", {}), search=d.get("search", {}),
                           procedure=d.get("procedure", "search"))


def save_choice(choice: PostprocessChoice, path: str) -> None:
  """Writes the choice as JSON, atomically (`atomic.write_atomic`); creates the folder."""
  atomic.write_atomic(path, json.dumps(choice_to_dict(choice), indent=2) + "\n")


def load_choice(path: str) -> PostprocessChoice:
  """Reads a saved choice; ValueError naming the file and what is wrong with it."""
  try:
    with open(path) as f:
      d = json.load(f)
  except FileNotFoundError:
    raise ValueError(f"{path}: post-processing choice not found") from None
  except json.JSONDecodeError as e:
    raise ValueError(f"{path} is not a post-processing choice: not JSON ({e})") from None
  try:
    return choice_from_dict(d)
  except (TypeError, ValueError) as e:
    raise ValueError(f"{path} is not a post-processing choice: {e}") from None


# ----------------------------------------------------------------------------- the steps
def _median_1d(x: np.ndarray, window: int, edge_mode: str) -> np.ndarray:
  """`scipy.ndimage.median_filter` of a 1-D sequence, ends extended by `np.pad` first.

  Why pad by hand: SciPy's 1-D median filter (1.15 to at least 1.17) is wrong when the
  window is much longer than the sequence (e.g. 2 frames, window 17: uninitialized
  memory comes back; see scipy/scipy#23075 for the same family), which is the common
  case here (window 81, utterances of a few frames). Padded, every window lies inside
  the array and the boundary mode no longer matters.
  """
  if window == 1 or len(x) == 0:
    return np.array(x, dtype=np.float64, copy=True)
  h = window // 2
  padded = np.pad(np.asarray(x, dtype=np.float64), h, mode=_NUMPY_PAD[edge_mode])
  return ndimage.median_filter(padded, size=window, mode="nearest")[h:h + len(x)]


def median_filter_frames(frame_predictions, mask=None, windows=(81, 3), edge_mode="reflect") -> np.ndarray:
  """Median filter of one utterance's per-frame predictions, per dimension, over its valid frames.

  Args:
    frame_predictions: [n, D] predictions in frame order.
    mask: [n], nonzero for valid frames (None: all). The valid frames are filtered as
      one sequence; masked frames are returned unchanged and never enter a window.
    windows: one odd window per dimension (1 = that dimension unfiltered). Windows
      longer than the utterance are fine (see the module docstring).
    edge_mode: one of `EDGE_MODES` (module docstring), or one per dimension.

  Returns:
    float64 [n, D].
  """
  p = np.array(frame_predictions, dtype=np.float64, copy=True)
  if p.ndim != 2:
    raise ValueError(f"frame_predictions must be [n, D], got shape {p.shape}")
  windows = tuple(windows)
  if len(windows) != p.shape[1]:
    raise ValueError(f"{len(windows)} windows for {p.shape[1]} dimensions")
  for w in windows:
    _check_window(w)
  modes = _edge_modes(edge_mode, p.shape[1])
  valid = np.ones(len(p), bool) if mask is None else np.asarray(mask).reshape(-1) != 0
  if valid.shape[0] != p.shape[0]:
    raise ValueError(f"mask has {valid.shape[0]} frames, frame_predictions {p.shape[0]}")
  if valid.any():
    for d, w in enumerate(windows):
      if w > 1:
        p[valid, d] = _median_1d(p[valid, d], int(w), modes[d])
  return p


def smooth_within_video(values, videos, counts, k) -> np.ndarray:
  """Shrinks utterance values toward their video's frame-weighted mean: `(n p + k m) / (n + k)`.

  Args:
    values: [N, D] utterance values; NaN for utterances without a valid frame.
    videos: [N] video of each utterance.
    counts: [N] valid frames of each utterance (the weight n).
    k: one strength per dimension, >= 0 (0: that dimension unchanged).

  Returns:
    float64 [N, D]. Where k > 0, an utterance without a value takes m; a video without
    any value stays NaN.
  """
  out = np.array(values, dtype=np.float64, copy=True)
  if out.ndim != 2 or len(k) != out.shape[1]:
    raise ValueError(f"values must be [N, {len(k)}] for {len(k)} strengths, got shape {out.shape}")
  codes = pd.factorize(np.asarray(videos, dtype=object))[0]
  n = np.asarray(counts, dtype=np.float64).reshape(-1)
  if len(codes) != len(out) or len(n) != len(out):
    raise ValueError(f"{len(out)} values, {len(codes)} videos and {len(n)} counts differ")
  for d, kd in enumerate(k):
    if kd < 0 or not math.isfinite(kd):
      raise ValueError(f"smoothing strength {kd!r} must be finite and >= 0")
    if kd == 0:
      continue
    p = out[:, d]
    has = ~np.isnan(p)
    weight = np.where(has, n, 0.0)
    total = np.bincount(codes, weights=np.where(has, p, 0.0) * weight)
    mass = np.bincount(codes, weights=weight)
    with np.errstate(invalid="ignore", divide="ignore"):
      m = (total / mass)[codes]
    out[:, d] = np.where(has, (n * np.where(has, p, 0.0) + kd * m) / (n + kd), m)
  return out


def fill_missing(values, videos) -> np.ndarray:
  """NaN utterance values: the mean of their video's other values, else the mean of all, else 0.

  The rule of `evaluation.fill_faceless`, so a choice with every step off scores exactly
  as the raw evaluation does.
  """
  out = np.array(values, dtype=np.float64, copy=True)
  codes = pd.factorize(np.asarray(videos, dtype=object))[0]
  if out.ndim != 2 or len(codes) != len(out):
    raise ValueError(f"values must be [N, D] with one video each, got shape {out.shape} and {len(codes)} videos")
  for d in range(out.shape[1]):
    p = out[:, d]
    has = ~np.isnan(p)
    if has.all():
      continue
    total = np.bincount(codes, weights=np.where(has, p, 0.0), minlength=codes.max() + 1)
    num = np.bincount(codes, weights=has.astype(np.float64), minlength=codes.max() + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
      video_mean = (total / num)[codes]
    overall = p[has].mean() if has.any() else 0.0
    out[:, d] = np.where(has, p, np.where(np.isnan(video_mean), overall, video_mean))
  return out


# ----------------------------------------------------------------------------- records
@dataclasses.dataclass(frozen=True)
class _Split:
  """Records checked once: keys, valid frames only, and their counts."""

  videos: list
  utterances: list
  frames: list  # float64 [n_valid, 2] per utterance
  counts: np.ndarray


def _check_records(records) -> _Split:
  if len(records) == 0:
    raise ValueError("no utterance records to post-process")
  videos, utterances, frames, seen = [], [], [], {}
  for i, r in enumerate(records):
    missing = [k for k in ("video", "utterance", "frame_predictions") if k not in r]
    if missing:
      raise ValueError(f"record {i} lacks {missing} (has {sorted(r)})")
    key = (str(r["video"]).strip(), str(r["utterance"]).strip())
    where = f"record {i} ({key[0]}/{key[1]})"
    if key in seen:
      raise ValueError(f"{where} repeats record {seen[key]}: one record per (video, utterance)")
    seen[key] = i
    p = np.asarray(r["frame_predictions"], dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != len(DIMS):
      raise ValueError(f"{where}: frame_predictions must be [n, {len(DIMS)}] (valence, arousal), got {p.shape}")
    mask = r.get("mask")
    valid = np.ones(len(p), bool) if mask is None else np.asarray(mask).reshape(-1) != 0
    if valid.shape[0] != len(p):
      raise ValueError(f"{where}: mask has {valid.shape[0]} frames, frame_predictions {len(p)}")
    p = p[valid]
    if not np.isfinite(p).all():
      raise ValueError(f"{where}: NaN/inf predictions on {int((~np.isfinite(p).all(axis=1)).sum())} valid frames")
    videos.append(key[0])
    utterances.append(key[1])
    frames.append(p)
  return _Split(videos, utterances, frames, np.array([len(f) for f in frames], np.float64))


def _dimension_values(split: _Split, d: int, window: int, aggregate: str, edge_mode: str) -> np.ndarray:
  """[N] utterance values of dimension d after a median filter of `window` (NaN: no valid frame)."""
  reduce = np.mean if aggregate == "mean" else np.median
  out = np.full(len(split.frames), np.nan)
  for i, f in enumerate(split.frames):
    if len(f):
      out[i] = reduce(_median_1d(f[:, d], window, edge_mode))
  return out


def utterance_values(records, windows=(1, 1), aggregate: str = "mean", edge_mode="reflect") -> np.ndarray:
  """[N, 2] utterance values after the median filter (NaN where an utterance has no valid frame)."""
  split = _check_records(records)
  for w in windows:
    _check_window(w)
  if aggregate not in metrics.AGGREGATES:
    raise ValueError(f"aggregate {aggregate!r} must be one of {metrics.AGGREGATES}")
  modes = _edge_modes(edge_mode, len(DIMS))
  return np.stack([_dimension_values(split, d, int(windows[d]), aggregate, modes[d]) for d in range(len(DIMS))],
                  axis=1)


def apply(choice: PostprocessChoice, records: list[dict], aggregate: str | None = None) -> np.ndarray:
  """Utterance predictions of `records` post-processed with a (saved) choice, unchanged.

  Args:
    choice: from `tune` or `load_choice`.
    records: per-utterance records (module docstring).
    aggregate: None, or the caller's aggregate, which must be the one the choice was
      tuned with (a choice is applied unchanged).

  Returns:
    float64 [N, 2] (valence, arousal) in the records' order, without NaN (step 4).
  """
  if aggregate is not None and aggregate != choice.aggregate:
    raise ValueError(f"the post-processing choice was tuned with aggregate {choice.aggregate!r}, "
                     f"asked to apply it with {aggregate!r}; re-tune or use {choice.aggregate!r}")
  split = _check_records(records)
  values = np.stack([_dimension_values(split, d, choice.median_window[d], choice.aggregate, choice.edge_mode[d])
                     for d in range(len(DIMS))], axis=1)
  values = smooth_within_video(values, split.videos, split.counts, choice.smoothing_k)
  return fill_missing(values, split.videos)


def records_from_frame_table(table: pd.DataFrame) -> list[dict]:
  """Per-utterance records from a per-frame table (e.g. `frame_predictions_<split>.csv`).

  Args:
    table: columns video, utterance, valence, arousal (per-frame predictions), and
      optionally frame (order within the utterance; else row order) and mask (else all 1).

  Returns:
    Records in order of first appearance of each (video, utterance).
  """
  missing = [c for c in ("video", "utterance", *DIMS) if c not in table.columns]
  if missing:
    raise ValueError(f"frame table lacks columns {missing} (has {list(table.columns)})")
  t = table.copy()
  for k in ("video", "utterance"):
    t[k] = t[k].astype(str).str.strip()
  t["_row"] = np.arange(len(t))
  order = ["video", "utterance", "frame"] if "frame" in t.columns else ["video", "utterance", "_row"]
  records = []
  for (video, utterance), g in t.groupby(["video", "utterance"], sort=False):
    g = g.sort_values(order[2], kind="stable")
    if "frame" in g.columns and g["frame"].duplicated().any():
      raise ValueError(f"frame table: {video}/{utterance} repeats frame numbers "
                       f"{g.loc[g['frame'].duplicated(), 'frame'].tolist()[:5]}")
    mask = g["mask"].to_numpy(np.float64) if "mask" in g.columns else np.ones(len(g))
    records.append({"video": video, "utterance": utterance,
                    "frame_predictions": g[list(DIMS)].to_numpy(np.float64), "mask": mask})
  return records


# ----------------------------------------------------------------------------- tuning
def _labels_in_record_order(split: _Split, labels: pd.DataFrame) -> np.ndarray:
  keys = pd.DataFrame({"video": split.videos, "utterance": split.utterances})
  placeholder = keys.assign(valence=0.0, arousal=0.0)
  # The same refusal as evaluation: every labelled utterance has exactly one record.
  joined = metrics.match_predictions(labels, placeholder)
  return joined.loc[list(zip(split.videos, split.utterances)), list(DIMS)].to_numpy(np.float64)


def tune(records: list[dict], labels: pd.DataFrame, aggregate: str = "mean",
         config: configs.PostprocessConfig | None = None, procedure: str | None = None,
         min_improvement: float = 1e-9) -> PostprocessChoice:
  """Chooses the post-processing on one split (validation) with the configured procedure.

  Args:
    records: per-utterance records of the split (module docstring).
    labels: the split's labels (video, utterance, valence, arousal); must line up with
      the records one to one (`metrics.match_predictions` refuses otherwise).
    aggregate: utterance value of the frames, "mean" or "median".
    config: the settings (None: `configs.PostprocessConfig()`, the paper's).
    procedure: None for `config.procedure`; "paper" (`tune_paper`, the default) or
      "search" (`search`, with its default grids).
    min_improvement: the CCC gain a step needs to be kept.

  Returns:
    The choice, naming its procedure.
  """
  config = configs.PostprocessConfig() if config is None else config
  procedure = procedure or config.procedure
  if procedure == "paper":
    return tune_paper(records, labels, aggregate, config, min_improvement=min_improvement)
  if procedure == "search":
    return search(records, labels, aggregate, config, min_improvement=min_improvement)
  raise ValueError(f"post-processing procedure {procedure!r} must be one of {configs.POSTPROCESS_PROCEDURES}")


def _scorer(split: _Split, truth: np.ndarray, d: int):
  """CCC (official global protocol) of dimension d's [N] utterance values, filled as `apply` fills them."""

  def score(values):
    filled = fill_missing(values[:, None], split.videos)[:, 0]
    return metrics.ccc_official(filled, truth[:, d])

  return score


def tune_paper(records: list[dict], labels: pd.DataFrame, aggregate: str = "mean",
               config: configs.PostprocessConfig | None = None, min_improvement: float = 1e-9) -> PostprocessChoice:
  """The paper's procedure (Sec. III-E): fixed settings, each step kept only if it helps on this split.

  Per dimension, in the paper's order: the median filter of the configured window is kept
  only if the split's CCC (official global protocol, on `apply`'s complete output) rises
  over the raw predictions by more than `min_improvement`; then the smoothing of strength
  `config.smoothing_k`, on top of what was kept, only if it rises over that stage. A
  window of 1 or smoothing turned off (`smooth_utterances=False` or k = 0) is not tried.

  Args:
    records, labels, aggregate, min_improvement: as `tune`.
    config: the fixed settings (None: the paper's, `configs.PostprocessConfig()`).

  Returns:
    The choice (procedure "paper"), with the CCC after each stage and of each step tried.
  """
  config = configs.PostprocessConfig() if config is None else config
  if aggregate not in metrics.AGGREGATES:
    raise ValueError(f"aggregate {aggregate!r} must be one of {metrics.AGGREGATES}")
  fixed = (int(config.median_window_valence), int(config.median_window_arousal))
  for w in fixed:
    _check_window(w)
  mode = _edge_modes(config.median_edge_mode, 1)[0]
  k = float(config.smoothing_k) if config.smooth_utterances else 0.0
  if not math.isfinite(k) or k < 0:
    raise ValueError(f"smoothing_k {config.smoothing_k!r} must be a finite number >= 0 (0 = off)")
  split = _check_records(records)
  truth = _labels_in_record_order(split, labels)
  windows, ks, history, tried = [1, 1], [0.0, 0.0], {}, {}
  for d, dim in enumerate(DIMS):
    score = _scorer(split, truth, d)
    kept = _dimension_values(split, d, 1, aggregate, mode)
    raw = best = score(kept)
    tried[dim] = {"median_window": {mode: {"1": raw}}, "smoothing_k": {}}
    if fixed[d] > 1:
      filtered = _dimension_values(split, d, fixed[d], aggregate, mode)
      tried[dim]["median_window"][mode][str(fixed[d])] = s = score(filtered)
      if s > best + min_improvement:
        windows[d], best, kept = fixed[d], s, filtered
    after_median = best
    if k > 0:
      smoothed = smooth_within_video(kept[:, None], split.videos, split.counts, (k,))[:, 0]
      tried[dim]["smoothing_k"][f"{k:g}"] = s = score(smoothed)
      if s > best + min_improvement:
        ks[d], best = k, s
    history[dim] = {"raw": raw, "median_filter": after_median, "smoothing": best}
  return PostprocessChoice(median_window=tuple(windows), smoothing_k=tuple(ks), aggregate=aggregate,
                           edge_mode=(mode, mode), validation_ccc=history, search=tried, procedure="paper")


def search(records: list[dict], labels: pd.DataFrame, aggregate: str = "mean",
           config: configs.PostprocessConfig | None = None, window_grid=WINDOW_GRID, smoothing_grid=SMOOTHING_GRID,
           edge_modes=EDGE_MODES, min_improvement: float = 1e-9) -> PostprocessChoice:
  """The wider search (not the paper's): median windows, edge modes and smoothing strengths on one split.

  Per dimension, greedily in the paper's order: the best (edge mode, window) of
  `edge_modes` x (`window_grid` plus the paper's window from `config`) is kept only if
  it raises the split's CCC (official global protocol, on `apply`'s complete output)
  over the raw predictions by more than `min_improvement`; then the best k of
  `smoothing_grid`, on top of the kept filter, only if it raises CCC over that stage.
  Ties go to the earlier mode, the smaller window, the smaller k. Every candidate
  tried makes the tuning split's score more optimistic; the other split is the honest
  measure.

  Args:
    records: per-utterance records of the split (module docstring).
    labels: the split's labels (video, utterance, valence, arousal); must line up with
      the records one to one (`metrics.match_predictions` refuses otherwise).
    aggregate: utterance value of the frames, "mean" or "median".
    config: a `configs.PostprocessConfig` (paper windows, whether to try smoothing) or
      None for the paper's defaults.
    window_grid, smoothing_grid: candidates (1 / 0 = off are always included).
    edge_modes: the median filter's end handling to try (`EDGE_MODES`).
    min_improvement: the CCC gain a step needs to be kept.

  Returns:
    The choice (procedure "search"), with the CCC after each stage and of every candidate.
  """
  paper = (81, 3) if config is None else (config.median_window_valence, config.median_window_arousal)
  try_smoothing = True if config is None else bool(config.smooth_utterances)
  if aggregate not in metrics.AGGREGATES:
    raise ValueError(f"aggregate {aggregate!r} must be one of {metrics.AGGREGATES}")
  edge_modes = _edge_modes(edge_modes, len(edge_modes) if not isinstance(edge_modes, str) else 1)
  if not edge_modes:
    raise ValueError("edge_modes is empty: no median filter to try")
  split = _check_records(records)
  truth = _labels_in_record_order(split, labels)
  windows, ks, modes, history, tried = [1, 1], [0.0, 0.0], [edge_modes[0]] * 2, {}, {}
  for d, dim in enumerate(DIMS):
    candidates = sorted({int(w) for w in window_grid} | {int(paper[d]), 1})
    for w in candidates:
      _check_window(w)
    score = _scorer(split, truth, d)
    unfiltered = _dimension_values(split, d, 1, aggregate, edge_modes[0])
    raw = best = score(unfiltered)
    kept = unfiltered
    window_scores = {}
    for mode in edge_modes:
      window_scores[mode] = {"1": raw}
      for w in candidates[1:]:
        values = _dimension_values(split, d, w, aggregate, mode)
        window_scores[mode][str(w)] = s = score(values)
        if s > best + min_improvement:
          windows[d], modes[d], best, kept = w, mode, s, values
    after_median = best
    k_scores = {}
    if try_smoothing:
      for k in sorted({float(k) for k in smoothing_grid} - {0.0}):
        k_scores[f"{k:g}"] = s = score(smooth_within_video(kept[:, None], split.videos, split.counts, (k,))[:, 0])
        if s > best + min_improvement:
          ks[d], best = k, s
    history[dim] = {"raw": raw, "median_filter": after_median, "smoothing": best}
    tried[dim] = {"median_window": window_scores, "smoothing_k": k_scores}
  return PostprocessChoice(median_window=tuple(windows), smoothing_k=tuple(ks), aggregate=aggregate,
                           edge_mode=tuple(modes), validation_ccc=history, search=tried,
                           procedure="search")


# ----------------------------------------------------------- streaming (omg-predict)
# What users read is kept in the labels' range (issue 15): the network's output is linear (as in
# the paper), and an untrained or out-of-domain model can say |valence| > 2. The raw `valence`
# and `arousal` columns keep the network's values; the `_post` columns are clipped.
VALENCE_RANGE = (-1.0, 1.0)
# SPEC "Inputs": OMG arousal labels lie in [0, 1] (Aff-Wild's in [-1, 1]); every registered row
# trains on OMG, so that is the default; a model trained on Aff-Wild labels takes (-1, 1).
OMG_AROUSAL_RANGE = (0.0, 1.0)


class StreamingMedianFilter:
  """`median_filter_frames` of a sequence that arrives in pieces.

  A value is final once `max(windows) // 2` later values have arrived (or at `finish`);
  memory holds about a window of values. Results equal filtering the whole sequence at
  once, edge modes included.
  """

  def __init__(self, windows: tuple[int, ...], edge_modes: tuple[str, ...]):
    self.windows, self.edge_modes = tuple(windows), tuple(edge_modes)
    self.half = max(self.windows) // 2
    self._reset()

  def _reset(self) -> None:
    self._values: list[np.ndarray] = []
    self._start = 0  # index in the sequence of _values[0]
    self._done = 0  # values before this index were returned

  @property
  def pending(self) -> int:
    """Values pushed whose filtered value was not returned yet."""
    return self._start + len(self._values) - self._done

  def push(self, values: np.ndarray) -> np.ndarray:
    """Adds values `[k, D]`; returns the filtered values that became final, in order."""
    self._values.extend(np.asarray(values, np.float64).reshape(-1, len(self.windows)))
    return self._emit(final=False)

  def finish(self) -> np.ndarray:
    """The remaining filtered values (the sequence ends here); the filter starts afresh."""
    out = self._emit(final=True)
    self._reset()
    return out

  def _emit(self, final: bool) -> np.ndarray:
    total = self._start + len(self._values)
    stop = total if final else total - self.half
    if stop <= self._done:
      return np.zeros((0, len(self.windows)))
    # Rows in [done, stop) see neither padded end that the buffer adds and the whole
    # sequence would not: `half` values before them are kept (or the sequence starts
    # there), and `half` after them have arrived (or the sequence ends there).
    filtered = median_filter_frames(np.stack(self._values), None, self.windows, self.edge_modes)
    out = filtered[self._done - self._start:stop - self._start]
    self._done = stop
    keep = max(self._start, stop - self.half)
    del self._values[:keep - self._start]
    self._start = keep
    return out


def clip_values(values: np.ndarray, ranges) -> np.ndarray:
  """`[..., 2]` valence, arousal clipped to `ranges` ((lo, hi) each); NaN stays NaN."""
  values = np.asarray(values, np.float64)
  lo = np.array([r[0] for r in ranges], np.float64)
  hi = np.array([r[1] for r in ranges], np.float64)
  return np.clip(values, lo, hi)


def postprocess_stream(results: Iterable, choice: PostprocessChoice,
                       max_gap: int | None = None, ranges=None) -> Iterator:
  """Fills `post` with the median filter of the frames with a face, keeping frame order.

  Args:
    results: `inference.FrameResult`s in frame order (from `inference.stream_predictions`):
      `face_found`, `prediction` are read, `post` and `post_ready` set.
    choice: its `median_window` and `edge_mode` per dimension are used.
    max_gap: face-less frames after which the filter restarts (default: the longest
      window), which bounds how long a row waits for its value.
    ranges: ((lo, hi) valence, (lo, hi) arousal) the filtered values are clipped to
      (`Predictor.ranges`); None: not clipped. A median filter commutes with clipping, so
      this equals filtering the clipped values.
  """
  median = StreamingMedianFilter(choice.median_window, choice.edge_mode)
  max_gap = max(choice.median_window) if max_gap is None else max_gap
  queue: collections.deque = collections.deque()
  waiting: collections.deque = collections.deque()
  gap = 0

  def assign(values):
    if ranges is not None and len(values):
      values = clip_values(values, ranges)
    for v in values:
      r = waiting.popleft()
      r.post, r.post_ready = v, True

  def ready():
    while queue and (not queue[0].face_found or queue[0].post_ready):
      yield queue.popleft()

  for r in results:
    queue.append(r)
    if r.face_found:
      gap = 0
      waiting.append(r)
      assign(median.push(r.prediction[np.newaxis]))
    else:
      gap += 1
      if gap > max_gap and median.pending:
        assign(median.finish())
    yield from ready()
  assign(median.finish())
  yield from ready()
  assert not queue and not waiting

