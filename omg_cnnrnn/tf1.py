"""Converts the authors' released TF1 checkpoints (and the Keras VGG-Face weights) into a workdir.

    python -m omg_cnnrnn.tf1 --checkpoint=<TF1 prefix> --released_model=affwildnet_vggface_gru \\
        --output_dir=<dir> [--allow_partial] [--vggface_h5=rcmalli_vggface_tf_notop_vgg16.h5]
    python -m omg_cnnrnn.train --experiment=table3/cnn_3rnn_last_conv --init_from=<dir> ...
    python -m omg_cnnrnn.train ... --init_from=tf1:[<released model>@]<TF1 prefix>

Writes `<dir>/config.json`, `<dir>/checkpoints/ckpt-0` (what `--init_from=<dir>` reads),
`<dir>/conversion_report.json` and `<dir>/saved_model` (the serving signatures of
`omg_cnnrnn.serving`), and prints a summary of the report. The released models, the TF1
variable names and how they map to our layers: `omg_cnnrnn.tf1_weights` (the library; this
module is only the command line, imported by nothing).
"""

from __future__ import annotations

import json
import sys
from typing import Sequence

from omg_cnnrnn.tf1_weights import RELEASED_MODELS, convert


def main(argv: Sequence[str]) -> None:
  from absl import flags

  del argv
  f = flags.FLAGS
  try:
    report = convert(f.output_dir, f.released_model, checkpoint=f.checkpoint, allow_partial=f.allow_partial,
                     vggface_h5=f.vggface_h5, image_size=f.image_size, rnn_units=f.rnn_units,
                     experiment=f.experiment, seed=f.seed)
  except (ValueError, FileNotFoundError, KeyError) as e:
    sys.exit(f"error: {e}")
  tf1 = report.get("tf1", {})
  print(json.dumps({"output_dir": f.output_dir, "checkpoint": report["checkpoint"],
                    "saved_model": report["saved_model"], "loaded": len(tf1.get("loaded", [])),
                    "missing": len(tf1.get("missing", [])), "shape_mismatch": len(tf1.get("shape_mismatch", [])),
                    "unexpected": tf1.get("unexpected", []), "fresh": tf1.get("fresh", []),
                    "vggface_loaded": len((report.get("vggface_h5") or {}).get("loaded", []))}, indent=2))


if __name__ == "__main__":
  from absl import app, flags

  flags.DEFINE_string("checkpoint", None, "TF1 checkpoint prefix of a released model (e.g. .../model.ckpt-0).")
  flags.DEFINE_enum("released_model", None, sorted(RELEASED_MODELS), "The checkpoint's released model (layout).")
  flags.DEFINE_string("output_dir", None, "Where to write config.json, checkpoints/, the report and saved_model/.")
  flags.DEFINE_bool("allow_partial", False, "Load what fits; missing / mis-shaped layers start fresh.")
  flags.DEFINE_string("vggface_h5", None, "Keras VGGFace weights (rcmalli_vggface_tf_notop_vgg16.h5) for vgg16.")
  flags.DEFINE_integer("image_size", 96, "Input size of the converted model (96 in the released models).")
  flags.DEFINE_integer("rnn_units", None, "GRU size (default: the row's 128; the OMG code also used 256).")
  flags.DEFINE_string("experiment", None, "Build this registered row instead of the released model's.")
  flags.DEFINE_integer("seed", 0, "Seed of the layers that start fresh.")
  flags.mark_flags_as_required(["released_model", "output_dir"])
  app.run(main)
