"""OMG-Emotion utterances -> tracked 96x96 face crops in TFRecords.

    python -m data_prep.prepare_omg --labels=omg_TrainVideos.csv --videos=<root> --output_dir=<dir> \\
        [--layout=utterances|whole] [--split=train] [--num_workers=N] [--shard_index=i --num_shards=n] [--strict]

Layouts of `--videos`: `utterances`, the challenge's prepare_data.py output
`<root>/<video>/<utterance>`; `whole`, `<root>/<video>.mp4` whole videos cut by the
CSV's start/end seconds. Default: detected from the first rows. The split name
defaults from the CSV name (omg_TrainVideos.csv -> train, omg_ValidationVideos.csv ->
validation, omg_TestVideos.csv -> test). Writes `<dir>/<split>-*.tfrecord` and
`<dir>/manifest.json`; bad rows and videos are reported by name and skipped (see common).
"""

from __future__ import annotations

import json
import os
import re

from absl import app, flags

from data_prep import common
from omg_cnnrnn.data import labels as label_files

FLAGS = flags.FLAGS


def split_from_name(path: str) -> str:
  m = re.match(r"omg_(\w+?)Videos", os.path.basename(path))
  return m.group(1).lower() if m else os.path.splitext(os.path.basename(path))[0].lower()


def detect_layout(table, root: str) -> str:
  for video, utt in zip(table["video"][:20], table["utterance"][:20]):
    if os.path.exists(os.path.join(root, video, utt)):
      return "utterances"
    if os.path.exists(os.path.join(root, f"{video}.mp4")):
      return "whole"
  return "utterances"


def build_items(labels_csv: str, videos: str, layout: str | None = None, split: str | None = None):
  """(items, problems, layout) of an OMG label CSV; fatal errors for unusable files."""
  split = split or split_from_name(labels_csv)
  table = label_files.read_omg_table(labels_csv)
  good, bad = label_files.validate_omg_labels(table, labels_csv)
  layout = layout or detect_layout(good, videos)
  problems = [{"split": split, "video": p.video, "utterance": p.utterance, "row": p.row, "source": labels_csv,
               "status": "rejected", "reason": p.reason} for p in bad]
  items = []
  for order, row in enumerate(good.itertuples(index=False)):
    if layout == "utterances":
      source, start, end = os.path.join(videos, row.video, row.utterance), None, None
    else:
      source, start, end = os.path.join(videos, f"{row.video}.mp4"), float(row.start), float(row.end)
    items.append(common.Item(
        key=common.safe_key(row.video, row.utterance), video=row.video, utterance=row.utterance, source=source,
        dataset="omg", split=split, start=start, end=end, valence=float(row.valence), arousal=float(row.arousal),
        emotion=int(row.EmotionMaxVote), order=order))
  return items, problems, layout


def main(argv):
  del argv
  items, problems, layout = build_items(FLAGS.labels, FLAGS.videos, FLAGS.layout, FLAGS.split)
  print(f"{FLAGS.labels}: {len(items)} utterances, {len(problems)} rejected rows, layout {layout}")
  manifest = common.run(items, FLAGS.output_dir, problems, common.face_config_from_flags(), FLAGS.num_workers,
                        FLAGS.shard_index, FLAGS.num_shards, FLAGS.output_shards, FLAGS.strict, FLAGS.progress)
  print(json.dumps(manifest["splits"], indent=1))


if __name__ == "__main__":
  flags.DEFINE_string("labels", None, "OMG label CSV (omg_TrainVideos.csv, ...).")
  flags.DEFINE_string("videos", None, "Video root (see --layout).")
  flags.DEFINE_enum("layout", None, ["utterances", "whole"], "Video layout (default: detected).")
  flags.DEFINE_string("split", None, "Split name (default: from the CSV name).")
  common.define_flags()
  flags.mark_flags_as_required(["labels", "videos", "output_dir"])
  app.run(main)
