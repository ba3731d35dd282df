"""The streaming network as TensorFlow Lite: conversion and a runner (issue 15 item 4).

    python -m omg_cnnrnn.export --workdir=<workdir> --export_dir=<dir> --tflite [--tflite_chunk_frames=16]
    omg-predict --model=<dir>/model_float32.tflite --video=clip.mp4 --output_dir=out/

`omg_cnnrnn.export --tflite` writes, beside the SavedModel in `<dir>`, the
`serve_streaming` function (`serving.ServingModule`: uint8 frames, mask and state in,
`per_frame` / `valence` / `arousal` and the next state out) converted by
`tf.lite.TFLiteConverter` twice:
- `model_float32.tflite`: float32 weights and arithmetic (equal to the SavedModel to float
  rounding; tested to 1e-4);
- `model_dynamic_range.tflite`: dynamic-range quantisation (`tf.lite.Optimize.DEFAULT`
  without a representative dataset): weights stored as int8 (about 4x smaller), activations
  float, the big matmuls and convolutions computed in int8 where the kernels allow.
Both take a fixed shape, batch 1 and `chunk_frames` frames per call: fixed shapes let the
converter lower the GRUs' loop to TFLite builtin ops (no Flex / Select-TF-ops delegate
needed on a phone). `TFLiteStreaming` runs any number of frames by calling it chunk by chunk
and padding the last chunk with mask-0 frames, which the network skips exactly (they carry
the state unchanged), so the results do not depend on `chunk_frames`. `config.json` and
`postprocess.json` in the same folder say what the model is and how to post-process it;
`omg_cnnrnn.inference` and `omg_cnnrnn.load` read a `.tflite` with them.

A `.tflite` file holds a flatbuffer of builtin operators and weights: running it executes no
code from the file (unlike a SavedModel's graph, which may read and write files).
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from omg_cnnrnn.data import records as record_files

FLOAT32_FILE = "model_float32.tflite"
DYNAMIC_RANGE_FILE = "model_dynamic_range.tflite"
FILES = (FLOAT32_FILE, DYNAMIC_RANGE_FILE)
DEFAULT_CHUNK_FRAMES = 16


class TFLiteError(Exception):
  """A .tflite file that cannot be used here; `str()` names the file and why."""

  def __init__(self, path: str, reason: str):
    super().__init__(f"{path}: {reason}")
    self.path, self.reason = str(path), reason


def convert(module, chunk_frames: int = DEFAULT_CHUNK_FRAMES, quantize: bool = False) -> bytes:
  """The flatbuffer of `module.serve_streaming` at batch 1 and `chunk_frames` frames.

  Args:
    module: a `serving.ServingModule`.
    chunk_frames: frames per call (fixed in the file).
    quantize: dynamic-range quantisation (int8 weights) instead of float32.
  """
  if chunk_frames < 1:
    raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
  size = module.image_size
  specs = [tf.TensorSpec((1, chunk_frames, size, size, 3), tf.uint8, name="frames"),
           tf.TensorSpec((1, chunk_frames), tf.float32, name="mask"),
           tf.TensorSpec((1, module.num_states, module.state_units), tf.float32, name="state")]
  # The serving function's own signature leaves batch and time free; a fixed-shape wrapper
  # lets the converter turn the GRUs' TensorList loop into builtin ops.
  fixed = tf.function(lambda frames, mask, state: module._serve_streaming(frames, mask, state), input_signature=specs)
  converter = tf.lite.TFLiteConverter.from_concrete_functions([fixed.get_concrete_function()], module)
  if quantize:
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
  return converter.convert()


def write_files(module, folder: str, chunk_frames: int = DEFAULT_CHUNK_FRAMES) -> list[str]:
  """Writes `FLOAT32_FILE` and `DYNAMIC_RANGE_FILE` of `module` into `folder`; returns their paths."""
  paths = []
  for name, quantize in ((FLOAT32_FILE, False), (DYNAMIC_RANGE_FILE, True)):
    path = os.path.join(folder, name)
    record_files.write_atomic(path, convert(module, chunk_frames, quantize))
    paths.append(path)
  return paths


def _interpreter(path: str, num_threads: int | None):
  try:  # LiteRT, TensorFlow Lite's successor, where installed; else TensorFlow's own.
    from ai_edge_litert.interpreter import Interpreter
  except ImportError:
    import warnings

    with warnings.catch_warnings():
      warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice, once per load
      return tf.lite.Interpreter(model_path=path, num_threads=num_threads)
  return Interpreter(model_path=path, num_threads=num_threads)


class TFLiteStreaming:
  """Runs a streaming `.tflite` (`convert`) on any number of frames, chunk by chunk.

  Attributes:
    path: the file.
    chunk_frames, image_size, num_states, state_units: read from the file's input shapes.
  """

  def __init__(self, path: str, num_threads: int | None = None):
    self.path = os.fspath(path)
    if not os.path.isfile(self.path):
      raise TFLiteError(self.path, "file not found" if not os.path.exists(self.path) else "not a file")
    try:
      self._interpreter = _interpreter(self.path, num_threads)
      self._runner = self._interpreter.get_signature_runner()
    except (ValueError, RuntimeError) as e:
      raise TFLiteError(self.path, f"not a loadable TFLite model ({str(e).splitlines()[0][:200]})") from None
    inputs = self._runner.get_input_details()
    outputs = self._runner.get_output_details()
    if sorted(inputs) != ["frames", "mask", "state"] or not {"per_frame", "state"} <= set(outputs):
      raise TFLiteError(self.path, f"not a streaming model of omg_cnnrnn.export --tflite (inputs {sorted(inputs)}, "
                        f"outputs {sorted(outputs)}; expected frames, mask, state -> per_frame, state)")
    frames, state = inputs["frames"], inputs["state"]
    if (len(frames["shape"]) != 5 or frames["shape"][0] != 1 or frames["dtype"] != np.uint8
        or frames["shape"][2] != frames["shape"][3] or frames["shape"][4] != 3):
      raise TFLiteError(self.path, f"frames input {frames['shape'].tolist()} {frames['dtype']}, expected uint8 "
                        "(1, T, S, S, 3)")
    self.chunk_frames = int(frames["shape"][1])
    self.image_size = int(frames["shape"][2])
    self.num_states, self.state_units = int(state["shape"][1]), int(state["shape"][2])

  def initial_state(self, batch_size: int = 1) -> np.ndarray:
    if batch_size != 1:
      raise ValueError(f"{self.path}: a TFLite model runs one sequence at a time (batch 1), asked for {batch_size}")
    return np.zeros((1, self.num_states, self.state_units), np.float32)

  def __call__(self, frames: np.ndarray, mask: np.ndarray, state: np.ndarray) -> dict:
    """`per_frame` (1, t, 2) and the next `state` of t frames (any t), as `serve_streaming`."""
    frames = np.asarray(frames, np.uint8)
    mask = np.asarray(mask, np.float32)
    state = np.asarray(state, np.float32)
    if frames.shape[0] != 1 or frames.shape[2:] != (self.image_size, self.image_size, 3):
      raise ValueError(f"{self.path}: frames of shape {frames.shape}, expected (1, t, {self.image_size}, "
                       f"{self.image_size}, 3)")
    if state.shape != (1, self.num_states, self.state_units):
      raise ValueError(f"{self.path}: state of shape {state.shape}, expected (1, {self.num_states}, "
                       f"{self.state_units})")
    t, k = frames.shape[1], self.chunk_frames
    out = np.zeros((1, t, 2), np.float32)
    for a in range(0, t, k):
      piece, piece_mask = frames[:, a:a + k], mask[:, a:a + k]
      n = piece.shape[1]
      if n < k:  # Padding frames have mask 0: the network skips them, the state is carried.
        piece = np.concatenate([piece, np.zeros((1, k - n) + piece.shape[2:], np.uint8)], axis=1)
        piece_mask = np.concatenate([piece_mask, np.zeros((1, k - n), np.float32)], axis=1)
      result = self._runner(frames=piece, mask=piece_mask, state=state)
      out[:, a:a + n] = result["per_frame"][:, :n]
      state = np.array(result["state"], np.float32)
    return {"per_frame": out, "state": state}
