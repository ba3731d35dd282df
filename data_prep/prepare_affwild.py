"""Aff-Wild / Aff-Wild2 videos with per-frame annotations -> tracked face crops in TFRecords.

    python -m data_prep.prepare_affwild --videos=<dir> --annotations=<dir> --format=affwild|affwild2 \\
        --output_dir=<dir> [--split=train] [--num_workers=N] ...

Aff-Wild: `<annotations>/<split>/valence/<video>.txt` and `.../arousal/<video>.txt`, one
value per frame in [-1, 1]; every split folder found is prepared. Aff-Wild2:
`<annotations>/<video>.txt` (header `valence,arousal`, then `v,a` per frame; `-5` frames
are kept but label-masked), for the split named by `--split`. One SequenceExample per
video; videos without annotation (or annotations without video) are reported.
"""

from __future__ import annotations

import json
import os

from absl import app, flags

from data_prep import common
from omg_cnnrnn import faces
from omg_cnnrnn.data import labels as label_files

FLAGS = flags.FLAGS


def _videos(root: str) -> dict:
  if not os.path.isdir(root):
    raise SystemExit(f"--videos={root}: not a directory")
  return {os.path.splitext(n)[0]: os.path.join(root, n) for n in sorted(os.listdir(root))
          if n.lower().endswith(faces.VIDEO_EXTENSIONS)}


def build_items(videos: str, annotations: str, fmt: str, split: str = "train"):
  """(items, problems) of an Aff-Wild(2) set."""
  found = _videos(videos)
  items, problems = [], []
  if fmt == "affwild":
    if not os.path.isdir(annotations):
      raise SystemExit(f"--annotations={annotations}: not a directory")
    plan = []
    for sp in sorted(os.listdir(annotations)):
      vdir = os.path.join(annotations, sp, "valence")
      if os.path.isdir(vdir):
        plan += [(sp, os.path.splitext(n)[0]) for n in sorted(os.listdir(vdir)) if n.endswith(".txt")]
  else:
    plan = [(split, os.path.splitext(n)[0]) for n in sorted(os.listdir(annotations)) if n.endswith(".txt")]
  for order, (sp, video) in enumerate(plan):
    problem = {"split": sp, "video": video, "utterance": video, "row": order + 1, "status": "rejected"}
    if video not in found:
      problems.append({**problem, "source": os.path.join(videos, video), "reason": "annotation without a video"})
      continue
    try:
      if fmt == "affwild":
        frame_labels = label_files.read_affwild(os.path.join(annotations, sp, "valence", f"{video}.txt"),
                                                os.path.join(annotations, sp, "arousal", f"{video}.txt"))
      else:
        frame_labels = label_files.read_affwild2(os.path.join(annotations, f"{video}.txt"))
      lab, mask = frame_labels.values, frame_labels.mask
    except label_files.LabelFileError as e:
      problems.append({**problem, "source": found[video], "reason": str(e)})
      continue
    items.append(common.Item(key=common.safe_key(video), video=video, utterance=video, source=found[video],
                             dataset=fmt, split=sp, frame_labels=lab, frame_mask=mask, order=order))
  annotated = {v for _, v in plan}
  for video, path in found.items():
    if video not in annotated:
      problems.append({"split": split, "video": video, "utterance": video, "row": -1, "source": path,
                       "status": "rejected", "reason": "video without annotation"})
  return items, problems


def main(argv):
  del argv
  items, problems = build_items(FLAGS.videos, FLAGS.annotations, FLAGS.format, FLAGS.split)
  print(f"{FLAGS.annotations}: {len(items)} videos, {len(problems)} rejected")
  manifest = common.run(items, FLAGS.output_dir, problems, common.face_config_from_flags(), FLAGS.num_workers,
                        FLAGS.shard_index, FLAGS.num_shards, FLAGS.output_shards, FLAGS.strict, FLAGS.progress)
  print(json.dumps(manifest["splits"], indent=1))


if __name__ == "__main__":
  flags.DEFINE_string("videos", None, "Folder of videos (<video>.mp4).")
  flags.DEFINE_string("annotations", None, "Annotation folder (see the module docstring).")
  flags.DEFINE_enum("format", "affwild", ["affwild", "affwild2"], "Annotation format.")
  flags.DEFINE_string("split", "train", "Split name for Aff-Wild2 (Aff-Wild: the folder names).")
  common.define_flags()
  flags.mark_flags_as_required(["videos", "annotations", "output_dir"])
  app.run(main)
