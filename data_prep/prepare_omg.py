"""OMG-Emotion utterances -> tracked 96x96 face crops in sharded TFRecords.

    python -m data_prep.prepare_omg --labels=omg_TrainVideos.csv --videos=<root> --output_dir=<dir> \\
        [--layout=utterances|whole] [--split=train] [--num_workers=N] [--shard_index=i --num_shards=n] \\
        [--strict] [--detect_every=5 --detection_scale=0.5 --margin=0.1 --max_hold_frames=5 ...]

Layouts of `--videos`:
  utterances  `<root>/<video>/<utterance>`, the challenge's prepare_data.py output;
  whole       `<root>/<video>.mp4` (or another video extension), whole videos cut here by
              the CSV's [start, end) seconds.
Default: whichever the first rows' files are found in.

Writes `<dir>/<split>-NNNNN-of-MMMMM.tfrecord` (one SequenceExample per utterance, keys in
`omg_cnnrnn.data.features`; every frame carries the utterance's label) and
`<dir>/manifest.json`. The split name defaults from the CSV name (omg_TrainVideos.csv ->
train, omg_ValidationVideos.csv -> validation, omg_TestVideos.csv -> test); prepare each
CSV into the same directory. Bad rows and videos are reported by name and skipped; a CSV
without the official columns stops the command. Resumable, parallel and shardable: see
`data_prep.common`.
"""

from __future__ import annotations

import json
import os
import re
import sys

from absl import app, flags

from data_prep import common
from omg_cnnrnn import faces
from omg_cnnrnn.data import labels as label_files
from omg_cnnrnn.data import records

FLAGS = flags.FLAGS
LAYOUTS = ("utterances", "whole")


def split_from_name(path: str) -> str:
  """omg_TrainVideos.csv -> train, omg_ValidationVideos.csv -> validation; else the file stem."""
  name = os.path.basename(path)
  m = re.match(r"omg_([A-Za-z]+?)Videos", name)
  stem = m.group(1) if m else os.path.splitext(name)[0]
  return re.sub(r"[^A-Za-z0-9_]", "_", stem).lower()


def whole_video(root: str, video: str) -> str:
  """`<root>/<video>.mp4`, or the same stem with another video extension if that exists."""
  for ext in faces.VIDEO_EXTENSIONS:
    path = os.path.join(root, video + ext)
    if os.path.exists(path):
      return path
  return os.path.join(root, video + ".mp4")


def detect_layout(table, root: str, rows: int = 50) -> str:
  """'utterances' or 'whole', from where the first rows' files are."""
  counts = {"utterances": 0, "whole": 0}
  for video, utt in zip(table["video"][:rows], table["utterance"][:rows]):
    counts["utterances"] += os.path.isfile(os.path.join(root, video, utt))
    counts["whole"] += os.path.isfile(whole_video(root, video))
  return "whole" if counts["whole"] > counts["utterances"] else "utterances"


def build_items(labels_csv: str, videos: str, layout: str | None = None, split: str | None = None):
  """The work of one OMG label CSV.

  Args:
    labels_csv: the CSV.
    videos: the video root.
    layout: "utterances", "whole" or None (detected).
    split: split name (None: from the CSV name).

  Returns:
    (items in CSV order, problems (rejected rows as manifest rows), layout).

  Raises:
    labels.LabelFileError: an unusable CSV (missing, unreadable, missing columns).
    ValueError: a bad layout, split name or video root.
  """
  split = records.check_split(split or split_from_name(labels_csv))
  if not os.path.isdir(videos):
    raise ValueError(f"--videos={videos}: not a directory")
  table = label_files.read_omg_table(labels_csv)
  good, bad = label_files.validate_omg_labels(table, labels_csv)
  if layout is None:
    layout = detect_layout(good, videos)
    if len(good) and not any(os.path.isfile(p) for p in (
        [os.path.join(videos, v, u) for v, u in zip(good["video"][:50], good["utterance"][:50])] +
        [whole_video(videos, v) for v in good["video"][:50]])):
      print(f"prepare_omg: none of the first rows' videos is under --videos={videos} in either layout "
            f"(<video>/<utterance> or <video>.mp4): is it the right folder?", file=sys.stderr)
  elif layout not in LAYOUTS:
    raise ValueError(f"--layout={layout}: one of {LAYOUTS}")
  problems = [{"split": split, "video": p.video, "utterance": p.utterance, "row": p.row, "source": labels_csv,
               "dataset": "omg", "reason": p.reason} for p in bad]
  bad_rows = {p.row for p in bad}
  good_rows = [r for r in range(1, len(table) + 1) if r not in bad_rows]
  items = []
  for order, (row_number, row) in enumerate(zip(good_rows, good.itertuples(index=False))):
    if layout == "utterances":
      source, start, end = os.path.join(videos, row.video, row.utterance), None, None
    else:
      source, start, end = whole_video(videos, row.video), float(row.start), float(row.end)
    items.append(common.Item(
        key=common.safe_key(row.video, row.utterance), video=row.video, utterance=row.utterance, source=source,
        dataset="omg", split=split, row=row_number, order=order, start=start, end=end, valence=float(row.valence),
        arousal=float(row.arousal), emotion=int(row.EmotionMaxVote)))
  return items, problems, layout


def main(argv):
  del argv
  try:
    settings = common.settings_from_flags()
    items, problems, layout = build_items(FLAGS.labels, FLAGS.videos, FLAGS.layout, FLAGS.split)
  except (label_files.LabelFileError, ValueError) as e:
    raise SystemExit(f"prepare_omg: {e}") from None
  print(f"{FLAGS.labels}: {len(items)} utterances to prepare, {len(problems)} rows rejected, layout {layout}")
  manifest = common.run_from_flags(items, problems, settings)
  print(json.dumps(manifest["splits"], indent=1))


if __name__ == "__main__":
  flags.DEFINE_string("labels", None, "OMG label CSV (omg_TrainVideos.csv, omg_ValidationVideos.csv, ...).")
  flags.DEFINE_string("videos", None, "Video root (see --layout).")
  flags.DEFINE_enum("layout", None, list(LAYOUTS), "Video layout (default: detected from the first rows).")
  flags.DEFINE_string("split", None, "Split name (default: from the CSV name).")
  common.define_flags()
  flags.adopt_module_key_flags(common)  # --helpshort lists the shared flags too
  flags.mark_flags_as_required(["labels", "videos", "output_dir"])
  app.run(main)
