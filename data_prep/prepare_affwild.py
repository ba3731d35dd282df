"""Aff-Wild / Aff-Wild2 videos with per-frame annotations -> tracked face crops in TFRecords.

    python -m data_prep.prepare_affwild --videos=<dir> --annotations=<dir> --format=affwild|affwild2 \\
        --output_dir=<dir> [--split=train] [--num_workers=N] [--shard_index=i --num_shards=n] [--strict] ...

Annotation layouts:
  affwild   `<annotations>/<split>/valence/<video>.txt` and `.../arousal/<video>.txt`, one
            value per frame in [-1, 1]; every split folder found is prepared.
  affwild2  `<annotations>/<video>.txt`: header `valence,arousal`, then one `v,a` line per
            frame, `-5` where a frame is not annotated (kept, label_mask 0); the split is
            `--split`. If the folder holds split folders instead (ABAW's `Train_Set`,
            `Validation_Set`), each is a split (`train`, `validation`). Two-person videos
            are annotated as `<video>_left.txt` / `<video>_right.txt` for one `<video>.mp4`:
            each becomes its own example tracking the left / right face.

Videos are found anywhere under `--videos` by file stem. One SequenceExample per annotated
video (utterance = video); the utterance-level valence/arousal are the means of the
valid frame labels. An annotation without a video, a malformed annotation file, a frame
count far from the video's (more than max(2, --frame_mismatch_tolerance x frames)) are
errors; a small frame-count difference and out-of-range label values (masked) are
warnings; videos without an annotation are listed as ignored (e.g. test videos).
"""

from __future__ import annotations

import json
import os
import re

from absl import app, flags

from data_prep import common
from omg_cnnrnn import faces
from omg_cnnrnn.data import labels as label_files
from omg_cnnrnn.data import records

FLAGS = flags.FLAGS
FORMATS = ("affwild", "affwild2")
_SIDES = ("left", "right")


def find_videos(root: str) -> tuple[dict, list[str]]:
  """{stem: path} of every video under `root`, and the stems found more than once."""
  if not os.path.isdir(root):
    raise ValueError(f"--videos={root}: not a directory")
  found, duplicates = {}, []
  for folder, dirs, files in os.walk(root):
    dirs.sort()
    for name in sorted(files):
      stem, ext = os.path.splitext(name)
      if ext.lower() in faces.VIDEO_EXTENSIONS:
        if stem in found:
          duplicates.append(stem)
        else:
          found[stem] = os.path.join(folder, name)
  return found, sorted(set(duplicates))


def _split_name(folder: str) -> str:
  return re.sub(r"[^a-z0-9_]", "_", re.sub(r"_set$", "", folder.lower()))


def _plan(annotations: str, fmt: str, split: str) -> list[tuple[str, str, list[str]]]:
  """[(split, annotation stem, annotation files)] in a fixed order."""
  if not os.path.isdir(annotations):
    raise ValueError(f"--annotations={annotations}: not a directory")
  plan = []
  if fmt == "affwild":
    for sp in sorted(os.listdir(annotations)):
      vdir, adir = (os.path.join(annotations, sp, d) for d in ("valence", "arousal"))
      if os.path.isdir(vdir):
        for name in sorted(n for n in os.listdir(vdir) if n.endswith(".txt")):
          plan.append((_split_name(sp), name[:-4], [os.path.join(vdir, name), os.path.join(adir, name)]))
    if not plan:
      raise ValueError(f"--annotations={annotations}: no <split>/valence/<video>.txt files (Aff-Wild layout)")
    return plan
  direct = sorted(n for n in os.listdir(annotations) if n.endswith(".txt"))
  if direct:
    return [(split, n[:-4], [os.path.join(annotations, n)]) for n in direct]
  for sp in sorted(os.listdir(annotations)):
    folder = os.path.join(annotations, sp)
    if os.path.isdir(folder):
      plan += [(_split_name(sp), n[:-4], [os.path.join(folder, n)]) for n in sorted(os.listdir(folder))
               if n.endswith(".txt")]
  if not plan:
    raise ValueError(f"--annotations={annotations}: no <video>.txt files (Aff-Wild2 layout)")
  return plan


def _match(stem: str, found: dict) -> tuple[str | None, str | None]:
  """(video path, initial target) of an annotation stem; `X_left` / `X_right` -> X."""
  if stem in found:
    return found[stem], None
  for side in _SIDES:
    if stem.endswith("_" + side) and stem[:-len(side) - 1] in found:
      return found[stem[:-len(side) - 1]], side
  return None, None


def build_items(videos: str, annotations: str, fmt: str, split: str = "train"):
  """The work of an Aff-Wild(2) set.

  Args:
    videos: folder searched (recursively) for videos.
    annotations: annotation folder (layout in the module docstring).
    fmt: "affwild" or "affwild2".
    split: Aff-Wild2's split name when the folder holds the files directly.

  Returns:
    (items, problems): one item per annotation with a video; problems for annotations
    without a video, unreadable annotations, duplicate video names (errors) and videos
    without annotation (ignored).

  Raises:
    ValueError: a bad format, split name or folder.
  """
  if fmt not in FORMATS:
    raise ValueError(f"--format={fmt}: one of {FORMATS}")
  records.check_split(split)
  found, duplicates = find_videos(videos)
  plan = _plan(annotations, fmt, split)
  items, problems = [], []
  first_split = {}
  for order, (sp, stem, files) in enumerate(plan):
    records.check_split(sp)
    problem = {"split": sp, "video": stem, "utterance": stem, "row": order + 1, "dataset": fmt,
               "source": files[0]}
    if stem in first_split:
      problems.append({**problem, "reason": f"{stem} is annotated in split {first_split[stem]!r} too"})
      continue
    first_split[stem] = sp
    source, side = _match(stem, found)
    if source is None:
      problems.append({**problem, "reason": f"annotation without a video: no {stem}.* (or, for _left/_right, "
                                            f"its base name) under {videos}"})
      continue
    if os.path.splitext(os.path.basename(source))[0] in duplicates:
      problems.append({**problem, "reason": f"several videos named {stem} under {videos}: which one is ambiguous"})
      continue
    try:
      frame_labels = (label_files.read_affwild(*files) if fmt == "affwild" else label_files.read_affwild2(files[0]))
    except label_files.LabelFileError as e:
      problems.append({**problem, "reason": str(e)})
      continue
    warnings = (frame_labels.describe_invalid(),) if frame_labels.invalid_lines else ()
    items.append(common.Item(key=common.safe_key(stem), video=stem, utterance=stem, source=source, dataset=fmt,
                             split=sp, row=order + 1, order=order, frame_labels=frame_labels,
                             initial_target=side, warnings=warnings))
  used = {it.source for it in items} | {_match(stem, found)[0] for _, stem, _ in plan}
  for stem, path in found.items():
    if path not in used:
      problems.append({"split": "unannotated", "video": stem, "utterance": stem, "row": 0, "dataset": fmt,
                       "source": path, "status": "ignored", "reason": "video without an annotation (not prepared)"})
  return items, problems


def main(argv):
  del argv
  try:
    settings = common.settings_from_flags(frame_mismatch_tolerance=FLAGS.frame_mismatch_tolerance)
    items, problems = build_items(FLAGS.videos, FLAGS.annotations, FLAGS.format, FLAGS.split)
  except ValueError as e:
    raise SystemExit(f"prepare_affwild: {e}") from None
  print(f"{FLAGS.annotations}: {len(items)} videos to prepare, {len(problems)} problems or unannotated videos")
  manifest = common.run_from_flags(items, problems, settings)
  print(json.dumps(manifest["splits"], indent=1))


if __name__ == "__main__":
  flags.DEFINE_string("videos", None, "Folder of videos (searched recursively, matched by file stem).")
  flags.DEFINE_string("annotations", None, "Annotation folder (see the module docstring).")
  flags.DEFINE_enum("format", "affwild", list(FORMATS), "Annotation format.")
  flags.DEFINE_string("split", "train", "Aff-Wild2 split name when the annotation files sit directly in the folder.")
  flags.DEFINE_float("frame_mismatch_tolerance", common.Settings().frame_mismatch_tolerance,
                     "Annotation lines may differ from the video's frames by max(2, this x frames) (a warning).")
  common.define_flags()
  flags.adopt_module_key_flags(common)  # --helpshort lists the shared flags too
  flags.mark_flags_as_required(["videos", "annotations", "output_dir"])
  app.run(main)
