"""Valence and arousal over time for any video, with a trained model.

    omg-predict --model=<SavedModel dir or training workdir> --video=<file> --output_dir=<dir> \\
        [--utterances=<CSV with start,end seconds>] [--annotated_video] [--chunk_frames=80]
    omg-predict --model=... --videos=<folder, glob or list file> --output_dir=<dir> [--num_workers=2]
        (one folder per video and index.csv; resumable: `omg_cnnrnn.batch`)
    omg-predict --model=... --video=<file> --faces=all --output_dir=<dir>
        (every person a track: frames.csv rows per (frame, track), plot_track<id>.png; `predict_all_faces`)
    omg-predict --model=... --video=<file> --target=largest|left|right|center|x,y --output_dir=<dir>
    omg-predict --model=... --video=<camera index or stream URL> --output_dir=<dir>   (`omg_cnnrnn.live`)
    omg-predict --model=... --video=<file> --live --output_dir=<dir>   (a file played at its frame rate)
    omg-predict --model=<dir>/model_float32.tflite ...   (`omg_cnnrnn.export --tflite`, `omg_cnnrnn.tflite`)
    python -m omg_cnnrnn.predict ...   (the same)

Trust: a SavedModel is a program (its graph may read and write files when loaded and run):
give `--model` only SavedModels from a trusted source. For weights from an untrusted source
give the training workdir instead (`config.json` + checkpoint tensors: the network is built
by this package and only numbers are read; no graph is loaded).

What it writes, how it runs and what happens to frames without a face:
`omg_cnnrnn.inference` (the library; this module is only the command line, imported by nothing).
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys

from omg_cnnrnn import faces
from omg_cnnrnn.data.labels import UtterancesError, read_utterances
from omg_cnnrnn.inference import ModelError, load_predictor, predict_all_faces, predict_video, value_ranges


# ------------------------------------------------------------------------------------ CLI
def define_flags() -> None:
  """The command's flags (defined on first use, not at import)."""
  from absl import flags

  d = faces.FaceConfig()
  flags.DEFINE_string("model", None, "SavedModel directory (omg_cnnrnn.export), training workdir, or .tflite file "
                      "(omg_cnnrnn.export --tflite; config.json beside it). A SavedModel "
                      "is a program (its graph may read and write files): load only one from a trusted source. "
                      "For untrusted weights pass a training workdir (config.json + checkpoint tensors, no graph).")
  flags.DEFINE_string("video", None, "The video: any file OpenCV reads; or a live source: a camera index (0) or a "
                      "stream URL (rtsp://..., http://...), processed as frames arrive (omg_cnnrnn.live).")
  flags.DEFINE_bool("live", False, "Play --video (a file) at its real frame rate as a live source: frames the "
                    "model has no time for are dropped and counted, rows are printed and appended as computed.")
  flags.DEFINE_integer("max_frames", None, "Live: stop after this many processed frames.")
  flags.DEFINE_float("max_seconds", None, "Live: stop after this many seconds.")
  flags.DEFINE_bool("print_rows", True, "Live: print each frame's values as they are computed.")
  flags.DEFINE_string("videos", None, "Many videos instead of --video: a folder, a glob pattern or a list file "
                      "(one path a line). One folder per video in --output_dir and index.csv; videos already done "
                      "are skipped (resumable); a bad video is reported in the index while the others go through.")
  flags.DEFINE_integer("num_workers", 0, "With --videos: threads running the face pipeline of upcoming videos "
                       "ahead of the network (0: in line).")
  flags.DEFINE_string("output_dir", None, "Where frames.csv, plot.png, summary.json ... go.")
  flags.DEFINE_string("utterances", None, "Optional CSV of segments (start,end seconds; OMG layout works): "
                      "writes utterances.csv.")
  flags.DEFINE_string("utterance_video", None, "The video's name in --utterances' 'video' column "
                      "(default: the file name without extension).")
  flags.DEFINE_bool("annotated_video", False, "Also write annotated.mp4 (face box, valence/arousal gauges).")
  flags.DEFINE_integer("chunk_frames", 80, "Frames per network call: memory, not results, depends on it.")
  flags.DEFINE_string("arousal_range", None, "lo,hi: the arousal labels' range of the model's training data; "
                      "arousal_post is clipped to it (default 0,1: OMG's labels; -1,1 for Aff-Wild). valence_post is "
                      "clipped to [-1, 1]; the raw valence/arousal columns are never clipped.")
  flags.DEFINE_enum("which", "best", ["best", "latest"], "For a workdir: best-validation or latest weights.")
  flags.DEFINE_integer("crop_size", d.crop_size, "Face crop side before resizing to the model's input "
                       "(data preparation's --crop_size).")
  flags.DEFINE_float("margin", d.margin, "Crop margin (data preparation's --margin).")
  flags.DEFINE_integer("detect_every", d.detect_every, "Run the detector every k frames (optical flow between).")
  flags.DEFINE_float("detection_scale", d.detection_scale, "Downscale of the frame for whole-frame searches.")
  flags.DEFINE_integer("min_face_size", d.min_face_size, "Smallest face accepted, source pixels.")
  flags.DEFINE_enum("initial_target", d.initial_target, list(faces.INITIAL_TARGETS), "Which face to follow.")
  flags.DEFINE_enum("faces", "one", ["one", "all"], "one: follow one person (--target); all: every person as "
                    "a track with a stable id and its own GRU state, frames.csv rows per (frame, track), a plot per "
                    "track (omg_cnnrnn.tracking).")
  flags.DEFINE_string("target", None, "Which person (--faces=one): largest, left, right, center (the rule of "
                      "--initial_target), or a point x,y in pixels: the face there when faces first show.")
  flags.DEFINE_bool("progress", True, "Show a progress bar.")
  flags.mark_flags_as_required(["model", "output_dir"])
  # --helpshort lists the flags of the main module: the console script's, or this one's with -m.
  for name in flags.FLAGS.get_flags_for_module(__name__):
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], name)


def main(argv) -> None:
  from absl import flags

  if len(argv) > 1:
    raise SystemExit(f"omg-predict: unexpected arguments {argv[1:]}")
  f = flags.FLAGS
  try:
    face_config = faces.FaceConfig(crop_size=f.crop_size, margin=f.margin, detect_every=f.detect_every,
                                   detection_scale=f.detection_scale, min_face_size=f.min_face_size,
                                   initial_target=f.initial_target)
    if f.chunk_frames < 1:
      raise ValueError(f"--chunk_frames={f.chunk_frames} must be >= 1")
    if (f.video is None) == (f.videos is None):
      raise ValueError("give exactly one of --video (one video) and --videos (a folder, pattern or list file)")
    target = None
    if f.target is not None:
      from omg_cnnrnn import tracking

      target = tracking.parse_target(f.target)
      if f.faces == "all":
        raise ValueError("--target picks one person; --faces=all follows every person")
      if isinstance(target, str):
        if f.initial_target != faces.FaceConfig().initial_target and f.initial_target != target:
          raise ValueError(f"--target={target} and --initial_target={f.initial_target} disagree; give one")
        face_config = dataclasses.replace(face_config, initial_target=target)
    if f.videos is not None:
      if isinstance(target, tuple):
        raise ValueError("--target=x,y works with --video (a point in one video's first frame)")
      return _main_videos(f, face_config)
    if f.num_workers:
      raise ValueError("--num_workers applies to --videos only")
    from omg_cnnrnn import live

    if f.live or live.is_live_source(f.video):
      if f.faces == "all" or isinstance(target, tuple) or f.utterances or f.annotated_video:
        raise ValueError("a live source follows one face (--target=largest|left|right|center); --faces=all, --target=x,y, "
                         "--utterances and --annotated_video need a file")
      value_ranges(f.arousal_range)
      predictor = load_predictor(f.model, which=f.which, arousal_range=f.arousal_range)
      summary = live.run_live(predictor, f.video, f.output_dir, face_config=face_config, play_file=f.live,
                              max_frames=f.max_frames, max_seconds=f.max_seconds, quiet=not f.print_rows)
      print(json.dumps({k: summary[k] for k in ("frames_arrived", "frames_processed", "frames_dropped",
                                                "latency_ms")}))
      return
    # Cheap checks first: a bad video or segment file fails before the model loads.
    faces.probe_video(f.video)
    if f.utterances:
      read_utterances(f.utterances, f.utterance_video or os.path.splitext(os.path.basename(f.video))[0])
    value_ranges(f.arousal_range)  # A bad range fails before the model loads.
    if f.faces == "all" and (f.utterances or f.annotated_video):
      raise ValueError("--utterances and --annotated_video follow one face; not with --faces=all")
    predictor = load_predictor(f.model, which=f.which, arousal_range=f.arousal_range)
    if f.faces == "all":
      summary = predict_all_faces(predictor, f.video, f.output_dir, chunk_frames=f.chunk_frames,
                                  face_config=face_config, progress=f.progress)
    else:
      stream = None
      if isinstance(target, tuple):
        from omg_cnnrnn import tracking

        stream = tracking.follow_point(faces.read_frames(f.video), target, face_config)
      summary = predict_video(predictor, f.video, f.output_dir, utterances=f.utterances,
                              annotated_video=f.annotated_video, chunk_frames=f.chunk_frames,
                              face_config=face_config, utterance_video=f.utterance_video, progress=f.progress,
                              face_stream=stream)
  except (ModelError, faces.VideoError, UtterancesError, ValueError) as e:
    raise SystemExit(f"omg-predict: error: {e}") from None
  print(json.dumps({k: summary[k] for k in ("frames", "faces_found", "frames_per_second", "outputs")}))


def _main_videos(f, face_config: faces.FaceConfig) -> None:
  from omg_cnnrnn import batch

  if f.num_workers < 0:
    raise ValueError(f"--num_workers={f.num_workers} must be >= 0")
  if f.utterance_video:
    raise ValueError("--utterance_video names one video; with --videos each video's name is its file name")
  try:
    videos = batch.list_videos(f.videos)
  except batch.VideosError as e:
    raise ValueError(str(e)) from None
  if f.utterances:
    read_utterances_file_check(f.utterances)
  value_ranges(f.arousal_range)
  predictor = load_predictor(f.model, which=f.which, arousal_range=f.arousal_range)
  if f.faces == "all" and (f.utterances or f.annotated_video):
    raise ValueError("--utterances and --annotated_video follow one face; not with --faces=all")
  index = batch.predict_videos(predictor, videos, f.output_dir, face_config=face_config, faces_mode=f.faces,
                               chunk_frames=f.chunk_frames, num_workers=f.num_workers, progress=f.progress,
                               utterances=f.utterances, annotated_video=f.annotated_video)
  status = index["status"].astype(str)
  failed = index.loc[status.str.startswith("error"), "video"].tolist()
  print(json.dumps({"videos": len(index), "ok": int((status == "ok").sum()),
                    "done_earlier": int((status == "done earlier").sum()), "errors": len(failed),
                    "index": os.path.join(f.output_dir, "index.csv")}))
  if failed:
    raise SystemExit(f"omg-predict: {len(failed)} of {len(index)} videos failed (see index.csv): "
                     + ", ".join(failed[:10]) + (" ..." if len(failed) > 10 else ""))


def read_utterances_file_check(path: str) -> None:
  """Fails early on a missing or unreadable segment file (per-video rows are checked per video)."""
  if not os.path.isfile(path):
    raise UtterancesError(f"{path}: utterance file not found" if not os.path.exists(path) else f"{path}: not a file")


def run() -> None:
  """Console entry point `omg-predict`."""
  from absl import app

  define_flags()
  app.run(main)


if __name__ == "__main__":
  run()
