"""SavedModel export with serving signatures taking uint8 face frames.

    python -m omg_cnnrnn.export --workdir=<training workdir> --export_dir=<dir> [--tflite]

`--tflite` also writes `model_float32.tflite` and `model_dynamic_range.tflite` (the streaming
signature, batch 1, `--tflite_chunk_frames` frames a call) into `<dir>`: `omg_cnnrnn.tflite`.

Signatures, files and the swap: `omg_cnnrnn.serving` (the library; this module is only
the command line, imported by nothing).

`--export_dir` must be new, empty or an earlier export of this package (anything else, e.g.
a training workdir given by mistake, is refused); the new export is written beside the old
and swapped in by rename, the old deleted last.

Trust: a SavedModel is a program: its graph may read and write files when loaded and run.
Load (`omg-predict --model=<dir>`, `tf.saved_model.load`) only SavedModels from a trusted
source. For weights from an untrusted source, use a training workdir instead
(`--model=<workdir>`: `config.json` and checkpoint tensors, no graph; the network is built
by this package's code and only numbers are read).
"""

from __future__ import annotations

import json
import os

from omg_cnnrnn.serving import export_saved_model


def main(argv):
  from absl import flags

  from omg_cnnrnn import workdir

  del argv
  f = flags.FLAGS
  model, config = workdir.load_workdir_model(f.workdir, which=f.which)
  post = os.path.join(f.workdir, "postprocess.json")
  if f.tflite_chunk_frames < 1:
    raise SystemExit(f"export: error: --tflite_chunk_frames={f.tflite_chunk_frames} must be >= 1")
  path = export_saved_model(model, config, f.export_dir, postprocess_path=post,
                            tflite_chunk_frames=f.tflite_chunk_frames if f.tflite else None)
  out = {"export_dir": path, "experiment": config.name}
  if f.tflite:
    out["tflite"] = {name: os.path.getsize(os.path.join(path, name)) for name in
                     ("model_float32.tflite", "model_dynamic_range.tflite")}
  print(json.dumps(out))


if __name__ == "__main__":
  from absl import app, flags

  flags.DEFINE_string("workdir", None, "Training workdir to export.")
  flags.DEFINE_string("export_dir", None, "Where to write the SavedModel: a new or empty folder, or an earlier "
                      "export (replaced atomically); anything else is refused. A SavedModel is a program (its graph "
                      "may read and write files): share it only with people who trust you, and load only trusted "
                      "ones; for untrusted weights pass the training workdir (--model=<workdir>: no graph).")
  flags.DEFINE_enum("which", "best", ["best", "latest"], "Best-validation weights or the latest checkpoint.")
  flags.DEFINE_bool("tflite", False, "Also write the streaming model as model_float32.tflite and "
                    "model_dynamic_range.tflite (dynamic-range quantised) into --export_dir (omg_cnnrnn.tflite).")
  flags.DEFINE_integer("tflite_chunk_frames", 16, "Frames per call fixed in the .tflite files (results do not "
                       "depend on it; 1 gives the lowest latency per frame).")
  flags.mark_flags_as_required(["workdir", "export_dir"])
  app.run(main)
