"""Figures and videos of predictions: the valence/arousal plot and the annotated video (omg-predict)."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd

from omg_cnnrnn import faces, metrics
from omg_cnnrnn.data import records as record_files
from omg_cnnrnn.postprocess import OMG_AROUSAL_RANGE, VALENCE_RANGE


def plot(frames: pd.DataFrame, path: str, title: str = "", segments: pd.DataFrame | None = None,
         ranges=(VALENCE_RANGE, OMG_AROUSAL_RANGE)) -> None:
  """Valence and arousal over time, and the trajectory in the valence-arousal plane (PNG).

  Draws the `_post` columns (median-filtered, clipped to `ranges`): the raw network values
  can lie far outside the labels' range (a linear output), where the axes would hide the
  rest; how many frames' raw values were clipped is written on the figure.
  """
  import matplotlib

  matplotlib.use("Agg")
  from matplotlib import pyplot as plt

  fig, (ax, plane) = plt.subplots(1, 2, figsize=(14, 4.8), gridspec_kw={"width_ratios": [2.4, 1]})
  t = frames["time"].to_numpy()
  colours = {"valence": "tab:blue", "arousal": "tab:red"}
  notes = []
  for dim, (lo, hi) in zip(metrics.DIMENSIONS, ranges):
    ax.plot(t, frames[f"{dim}_post"], color=colours[dim], linewidth=1.6,
            label=f"{dim} (median-filtered, in [{lo:g}, {hi:g}])")
    raw = frames[dim].to_numpy(np.float64)
    outside = int(((raw < lo) | (raw > hi)).sum())
    if outside:
      notes.append(f"{dim}: {outside} frames' network values outside [{lo:g}, {hi:g}] "
                   f"(min {np.nanmin(raw):+.2f}, max {np.nanmax(raw):+.2f}), clipped")
  if notes:
    ax.text(0.01, 0.02, "\n".join(notes), transform=ax.transAxes, fontsize=7, color="0.3", va="bottom")
  missing = frames["face_found"].to_numpy() == 0
  if missing.any():
    ax.fill_between(t, 0, 1, where=missing, color="0.85", transform=ax.get_xaxis_transform(), step="mid",
                    label="no face", linewidth=0)
  if segments is not None:
    for seg in segments.itertuples(index=False):
      ax.axvline(seg.start, color="0.4", linewidth=0.6, linestyle=":")
  ax.axhline(0, color="0.6", linewidth=0.5)
  ax.set_xlabel("time (s)")
  ax.set_ylabel("prediction")
  ax.set_xlim(t[0] if len(t) else 0, t[-1] if len(t) > 1 else 1)
  ax.set_ylim(min(r[0] for r in ranges) - 0.05, max(r[1] for r in ranges) + 0.05)
  # Below the axes: clipped values sit on the range's edges, where a legend inside would hide them.
  ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), fontsize=8, ncol=3, frameon=False)
  ax.set_title(title, fontsize=9)

  valid = ~missing
  v = frames["valence_post"].to_numpy()[valid]
  a = frames["arousal_post"].to_numpy()[valid]
  plane.plot(v, a, color="0.7", linewidth=0.5, zorder=1)
  points = plane.scatter(v, a, c=t[valid], cmap="viridis", s=6, zorder=2, rasterized=True)
  fig.colorbar(points, ax=plane, label="time (s)")
  plane.axhline(0, color="0.6", linewidth=0.5)
  plane.axvline(0, color="0.6", linewidth=0.5)
  plane.set_xlim(ranges[0][0], ranges[0][1])
  plane.set_ylim(min(-1.0, ranges[1][0]), max(1.0, ranges[1][1]))
  plane.set_aspect("equal")
  plane.set_xlabel("valence (median-filtered, clipped)")
  plane.set_ylabel("arousal (median-filtered, clipped)")
  plane.set_title("valence-arousal trajectory", fontsize=9)
  fig.tight_layout()
  try:
    with record_files.atomic_output(path) as tmp:
      fig.savefig(tmp, dpi=110, format="png")
  finally:
    plt.close(fig)


def _gauge(image: np.ndarray, origin: tuple[int, int], width: int, value: float, label: str, colour) -> None:
  """A horizontal bar from the centre of [-1, 1] to `value`, with its label."""
  x, y = origin
  h = max(8, width // 12)
  cv2.rectangle(image, (x, y), (x + width, y + h), (40, 40, 40), -1)
  centre = x + width // 2
  if np.isfinite(value):
    end = int(round(centre + np.clip(value, -1, 1) * width / 2))
    cv2.rectangle(image, (min(centre, end), y), (max(centre, end), y + h), colour, -1)
    text = f"{label} {value:+.2f}"
  else:
    text = f"{label}  --"
  cv2.line(image, (centre, y - 2), (centre, y + h + 2), (255, 255, 255), 1)
  cv2.putText(image, text, (x + width + 6, y + h), cv2.FONT_HERSHEY_SIMPLEX, max(0.35, h / 25), (255, 255, 255),
              1, cv2.LINE_AA)


def write_annotated_video(video: str, frames_csv: str, path: str, fps: float) -> None:
  """The video with the face box and valence/arousal gauges (median-filtered values), as mp4.

  A second pass over the video, reading `frames.csv` alongside: nothing is held but
  one frame and a block of rows.
  """
  # The temporary file ends in .mp4: OpenCV picks the container from the extension.
  with record_files.atomic_output(path, suffix=".mp4") as tmp:
    writer = None
    rows = pd.read_csv(frames_csv, chunksize=1024)
    block = iter(())
    try:
      for _, frame in faces.read_frames(video):
        row = next(block, None)
        if row is None:
          block = next(rows, pd.DataFrame()).itertuples(index=False)
          row = next(block, None)
          if row is None:
            raise faces.VideoError(video, f"decodes to more frames than {frames_csv} lists (changed meanwhile?)")
        image = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
        h, w = image.shape[:2]
        if writer is None:
          writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
          if not writer.isOpened():
            raise OSError(f"{path}: cannot open a video writer (mp4v)")
        if row.face_found:
          cv2.rectangle(image, (int(row.x0), int(row.y0)), (int(row.x1), int(row.y1)), (80, 220, 80), 2)
        width = max(60, w // 4)
        _gauge(image, (10, h - 2 * (width // 12 + 10) - 4), width, row.valence_post, "valence", (230, 160, 40))
        _gauge(image, (10, h - (width // 12 + 10) - 4), width, row.arousal_post, "arousal", (60, 60, 230))
        writer.write(image)
    finally:
      if writer is not None:
        writer.release()
    if writer is None:
      raise faces.VideoError(video, "no decodable frames")
