"""SavedModel export with serving signatures taking uint8 face frames.

    python -m omg_cnnrnn.export --workdir=<training workdir> --export_dir=<dir>

Signatures (scaling to [-1, 1] happens inside the graph):
- `serving_default(frames)`: frames uint8 (B, T, S, S, 3), every frame valid;
- `serve_with_mask(frames, mask)`: mask float (B, T), 1 for frames with a face.
Both return `per_frame` (B, T, 2), `valence` / `arousal` (B, T), and the per-utterance
values `utterance` (B, 2), `utterance_valence` / `utterance_arousal` (B,), the mean
(or median, per the experiment's config) of the valid frames.

The export directory also holds `config.json` (the experiment) and, when the workdir
has one, `postprocess.json` (the tuned post-processing choice). The SavedModel loads
with plain `tf.saved_model.load`, without this package.
"""

from __future__ import annotations

import json
import os
import shutil

import tensorflow as tf
import tf_keras

from omg_cnnrnn import configs, losses


class ServingModule(tf.Module):
  """Wraps a trained model with uint8-in, valence/arousal-out functions."""

  def __init__(self, model: tf_keras.Model, config: configs.ExperimentConfig):
    super().__init__(name="omg_cnnrnn_serving")
    self.model = model
    self.aggregate = config.data.utterance_aggregate
    size = config.data.image_size
    frames_spec = tf.TensorSpec((None, None, size, size, 3), tf.uint8, name="frames")
    mask_spec = tf.TensorSpec((None, None), tf.float32, name="mask")
    self.serve = tf.function(self._serve_all, input_signature=[frames_spec])
    self.serve_with_mask = tf.function(self._serve, input_signature=[frames_spec, mask_spec])

  def _serve_all(self, frames):
    return self._serve(frames, tf.ones(tf.shape(frames)[:2], tf.float32))

  def _serve(self, frames, mask):
    scaled = (tf.cast(frames, tf.float32) - 128.0) / 128.0  # released code's scaling
    per_frame = self.model({"frames": scaled, "mask": mask}, training=False)
    utterance, _ = losses.sequence_aggregate(per_frame, mask, self.aggregate)
    return {
        "per_frame": per_frame, "valence": per_frame[..., 0], "arousal": per_frame[..., 1],
        "utterance": utterance, "utterance_valence": utterance[:, 0], "utterance_arousal": utterance[:, 1],
    }


def export_saved_model(model: tf_keras.Model, config: configs.ExperimentConfig, export_dir: str,
                       postprocess_path: str | None = None) -> str:
  """Writes the SavedModel (atomically: a temp dir renamed into place); returns `export_dir`."""
  module = ServingModule(model, config)
  tmp = export_dir.rstrip("/") + ".tmp"
  shutil.rmtree(tmp, ignore_errors=True)
  tf.saved_model.save(module, tmp, signatures={"serving_default": module.serve,
                                               "serve_with_mask": module.serve_with_mask})
  with open(os.path.join(tmp, "config.json"), "w") as f:
    f.write(config.to_json())
  if postprocess_path and os.path.exists(postprocess_path):
    shutil.copy(postprocess_path, os.path.join(tmp, "postprocess.json"))
  shutil.rmtree(export_dir, ignore_errors=True)
  os.replace(tmp, export_dir)
  return export_dir


def main(argv):
  from absl import flags

  from omg_cnnrnn import train

  del argv
  f = flags.FLAGS
  model, config = train.load_workdir_model(f.workdir, which=f.which)
  post = os.path.join(f.workdir, "postprocess.json")
  path = export_saved_model(model, config, f.export_dir, postprocess_path=post)
  print(json.dumps({"export_dir": path, "experiment": config.name}))


if __name__ == "__main__":
  from absl import app, flags

  flags.DEFINE_string("workdir", None, "Training workdir to export.")
  flags.DEFINE_string("export_dir", None, "Where to write the SavedModel.")
  flags.DEFINE_enum("which", "best", ["best", "latest"], "Best-validation weights or the latest checkpoint.")
  flags.mark_flags_as_required(["workdir", "export_dir"])
  app.run(main)
