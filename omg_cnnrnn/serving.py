"""SavedModel serving: the uint8-in signatures (`ServingModule`) and `export_saved_model`.

The library behind `omg_cnnrnn.export` (the command line, imported by nothing); prediction
(`inference`), TFLite (`tflite`) and TF1 conversion (`tf1_weights`) use it.

Signatures (scaling to [-1, 1] happens inside the graph, `data.inputs.scale`):
- `serving_default(frames)`: frames uint8 (B, T, S, S, 3), every frame valid;
- `serve_with_mask(frames, mask)`: mask float (B, T), 1 for frames with a face.
Both return `per_frame` (B, T, 2), `valence` / `arousal` (B, T), and the per-utterance
values `utterance` (B, 2), `utterance_valence` / `utterance_arousal` (B,), the mean
(or median, per the experiment's config) of the valid frames.
- `serve_streaming(frames, mask, state)`: one chunk of a longer video; `state` float32
  (B, N, U) comes from the previous chunk's output (`streaming_initial_state` gives the
  first, zeros). Returns `per_frame`, `valence`, `arousal` and the next `state`. Chunks
  fed in order give the predictions of the whole sequence at once (to float rounding),
  in memory that does not grow with the video. Frames with mask 0 (no face) neither
  advance nor reset the state: it is carried over them, as in training (a chunk without
  any face returns its input state), and their predictions are meaningless.
- `streaming_initial_state(batch_size)`: int32 scalar -> `state` zeros (B, N, U).

The state is a fixed-shape tensor so a client needs no knowledge of the layers:
N = GRU layers of the network (`models.cnn_rnn.num_states`: RNN branches x 2), U = the
GRU units (128 in the paper); row `branch * rnn_layers + layer - 1`, branches in config
order (`models.cnn_rnn.build_streaming_model`). CNN-only rows have no recurrent state:
N = 0, a zero-width (B, 0, U) tensor passed through unchanged, so clients treat every
row alike. RNN rows are served by the streaming form of the network
(`models.cnn_rnn.streaming_twin`, the same weights) in every signature; the others by
the model itself. The SavedModel holds one copy of the weights.

The export directory also holds `config.json` (the experiment) and, when the workdir
has one, `postprocess.json` (the tuned post-processing choice). The SavedModel loads
with plain `tf.saved_model.load`, without this package.

`check_export_dir` refuses an `--export_dir` that is not new, empty or an earlier export; the
export is swapped in by rename. A SavedModel is a program: load only trusted ones (the
`omg_cnnrnn.export` help says more).
"""

from __future__ import annotations

import functools
import os
import shutil
import uuid

import tensorflow as tf
import tf_keras

from omg_cnnrnn import configs, losses
from omg_cnnrnn.data import inputs
from omg_cnnrnn.models import cnn_rnn

STREAMING_SIGNATURE = "serve_streaming"
INITIAL_STATE_SIGNATURE = "streaming_initial_state"


class ServingModule(tf.Module):
  """Wraps a trained model with uint8-in, valence/arousal-out functions (module docstring)."""

  def __init__(self, model: tf_keras.Model, config: configs.ExperimentConfig):
    super().__init__(name="omg_cnnrnn_serving")
    self.aggregate = config.data.utterance_aggregate
    self.streaming = config.model.has_rnn
    self.num_states = cnn_rnn.num_states(config.model)
    self.state_units = config.model.rnn_units
    size = config.data.image_size
    self.image_size = size
    # RNN rows: the streaming form serves every signature (whole sequences start from the
    # zero state, exactly as the model does), so the SavedModel holds one copy of the weights.
    net = cnn_rnn.streaming_twin(model, config.model, size) if self.streaming else model
    # The network is held untracked and only its weights tracked, so the SavedModel holds the
    # signatures and the variables, not Keras's own SavedModel form of every layer (which traces
    # each layer's call again: exporting the tiny testing row took 3.5 s with it, 1.0 s without,
    # at ~340 GFLOP/s). `tf.saved_model.load` gives the same signatures either way.
    object.__setattr__(self, "model", net)
    self.weights = list(net.weights)
    frames_spec = tf.TensorSpec((None, None, size, size, 3), tf.uint8, name="frames")
    mask_spec = tf.TensorSpec((None, None), tf.float32, name="mask")
    state_spec = tf.TensorSpec((None, self.num_states, self.state_units), tf.float32, name="state")
    # autograph=False: their branches are on Python values; nothing to convert.
    function = functools.partial(tf.function, autograph=False)
    self.serve = function(self._serve_all, input_signature=[frames_spec])
    self.serve_with_mask = function(self._serve, input_signature=[frames_spec, mask_spec])
    self.serve_streaming = function(self._serve_streaming, input_signature=[frames_spec, mask_spec, state_spec])
    self.initial_state = function(self._initial_state, input_signature=[tf.TensorSpec((), tf.int32, name="batch_size")])

  def _initial_state(self, batch_size):
    return {"state": tf.zeros(tf.stack([batch_size, self.num_states, self.state_units]), tf.float32)}

  def _run(self, frames, mask, state):
    """(per-frame predictions, next state) of a chunk of uint8 frames."""
    scaled = inputs.scale(frames)  # The signatures take frames at the model's size: `inputs` resized them.
    if not self.streaming:
      return tf.cast(self.model({"frames": scaled, "mask": mask}, training=False), tf.float32), state
    out = self.model({"frames": scaled, "mask": mask, "state": state}, training=False)
    return tf.cast(out["predictions"], tf.float32), tf.cast(out["state"], tf.float32)

  def _serve_all(self, frames):
    return self._serve(frames, tf.ones(tf.shape(frames)[:2], tf.float32))

  def _serve(self, frames, mask):
    state = self._initial_state(tf.shape(frames)[0])["state"]
    per_frame, _ = self._run(frames, mask, state)
    utterance, _ = losses.sequence_aggregate(per_frame, mask, self.aggregate)
    return {
        "per_frame": per_frame, "valence": per_frame[..., 0], "arousal": per_frame[..., 1],
        "utterance": utterance, "utterance_valence": utterance[:, 0], "utterance_arousal": utterance[:, 1],
    }

  def _serve_streaming(self, frames, mask, state):
    # The signature's shape is not enforced on every caller (a loaded SavedModel's
    # signature accepts any N): a state of another network fails here, loudly.
    state = tf.ensure_shape(state, (None, self.num_states, self.state_units))
    per_frame, state = self._run(frames, mask, state)
    return {"per_frame": per_frame, "valence": per_frame[..., 0], "arousal": per_frame[..., 1], "state": state}


# What an export folder holds (tf.saved_model.save's files plus ours): a non-empty folder with
# anything else, or without saved_model.pb and config.json, is not an export of this package.
EXPORT_FILES = frozenset({"saved_model.pb", "variables", "assets", "fingerprint.pb", "keras_metadata.pb",
                          "config.json", "postprocess.json", "model_float32.tflite", "model_dynamic_range.tflite"})


class ExportDirError(ValueError):
  """--export_dir is something export must not replace; names the folder and why."""

  def __init__(self, path: str, reason: str):
    super().__init__(f"--export_dir={path}: {reason}")


def check_export_dir(export_dir: str) -> None:
  """Refuses to replace anything but nothing, an empty folder or an earlier export of this package.

  Raises:
    ExportDirError: a file, or a non-empty folder that is not such an export (e.g. a training
      workdir given by mistake: its checkpoints would be deleted); names what it found.
  """
  if not os.path.lexists(export_dir):
    return
  if os.path.islink(export_dir) or not os.path.isdir(export_dir):
    raise ExportDirError(export_dir, "exists and is not a folder; export writes a SavedModel folder there")
  names = set(os.listdir(export_dir))
  if not names:
    return
  foreign = sorted(names - EXPORT_FILES)
  missing = sorted({"saved_model.pb", "config.json"} - names)
  if foreign or missing:
    why = (f"holds {foreign[:5]}{' ...' if len(foreign) > 5 else ''}" if foreign
           else f"lacks {missing}")
    raise ExportDirError(export_dir, f"a non-empty folder that is not a SavedModel written by omg_cnnrnn.export "
                         f"({why}); refusing to replace it: give a new or empty folder, or an earlier export")


def _siblings(export_dir: str, kind: str) -> list[str]:
  parent, name = os.path.split(os.path.abspath(export_dir))
  prefix = f".{name}.{kind}-"
  return [os.path.join(parent, n) for n in sorted(os.listdir(parent)) if n.startswith(prefix)] if os.path.isdir(
      parent) else []


def _alive(path: str) -> bool:
  """Whether the process that named a sibling folder `.<name>.<kind>-<pid>-<hex>` still runs."""
  try:
    pid = int(os.path.basename(path).rsplit("-", 2)[-2])
    os.kill(pid, 0)
    return pid != os.getpid()
  except (ValueError, IndexError, ProcessLookupError):
    return False
  except PermissionError:
    return True


def _recover(export_dir: str) -> None:
  """Undoes what a killed export left: the old model back if the swap was cut, temp folders swept."""
  old = [p for p in _siblings(export_dir, "old") if not _alive(p)]
  if old and not os.path.lexists(export_dir):
    os.replace(old[-1], export_dir)  # Killed between the two renames: the old export returns.
    old = old[:-1]
  for path in old + [p for p in _siblings(export_dir, "new") if not _alive(p)]:
    shutil.rmtree(path, ignore_errors=True)


def export_saved_model(model: tf_keras.Model, config: configs.ExperimentConfig, export_dir: str,
                       postprocess_path: str | None = None, tflite_chunk_frames: int | None = None) -> str:
  """Writes the SavedModel and swaps it in; returns `export_dir`.

  With `tflite_chunk_frames`, the folder also gets the streaming model as float32 and
  dynamic-range-quantised `.tflite` files taking that many frames a call
  (`omg_cnnrnn.tflite`), written before the swap like the rest.

  The new export is written beside the old one (`.<name>.new-<pid>-<hex>`), then the old is
  renamed aside, the new renamed into place, and only then the old deleted: a failure or a
  kill leaves a complete model at `export_dir` (a kill between the two renames is undone by
  the next export, which also sweeps temporary folders of killed runs).

  Raises:
    ExportDirError: `export_dir` is a file or a non-empty folder that is not an export of
      this package (`check_export_dir`); nothing is written.
  """
  export_dir = os.path.abspath(export_dir).rstrip("/")
  os.makedirs(os.path.dirname(export_dir), exist_ok=True)
  _recover(export_dir)
  check_export_dir(export_dir)
  module = ServingModule(model, config)
  parent, name = os.path.split(export_dir)
  tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
  new, old = os.path.join(parent, f".{name}.new-{tag}"), os.path.join(parent, f".{name}.old-{tag}")
  try:
    tf.saved_model.save(module, new, signatures={"serving_default": module.serve,
                                                 "serve_with_mask": module.serve_with_mask,
                                                 STREAMING_SIGNATURE: module.serve_streaming,
                                                 INITIAL_STATE_SIGNATURE: module.initial_state})
    with open(os.path.join(new, "config.json"), "w") as f:
      f.write(config.to_json())
    if tflite_chunk_frames:
      from omg_cnnrnn import tflite  # Lazy: only --tflite needs it.

      tflite.write_files(module, new, tflite_chunk_frames)
    if postprocess_path and os.path.exists(postprocess_path):
      shutil.copy(postprocess_path, os.path.join(new, "postprocess.json"))
    check_export_dir(export_dir)  # Still ours (or gone): it may have changed while we wrote.
    if os.path.lexists(export_dir):
      os.replace(export_dir, old)
    try:
      os.replace(new, export_dir)
    except BaseException:
      if os.path.lexists(old) and not os.path.lexists(export_dir):
        os.replace(old, export_dir)  # The old export stays in place.
      raise
  finally:
    shutil.rmtree(new, ignore_errors=True)
  shutil.rmtree(old, ignore_errors=True)
  return export_dir
