"""Every file the project writes goes through `omg_cnnrnn.atomic` (temporary file beside it, fsync, rename):
a writer that fails half-way leaves the old file (or none) and no temporary file, for each family of writers."""

import importlib.util
import json
import os

import numpy as np
import pandas as pd
import pytest

import cli_runner
from data_prep import synthesize
from omg_cnnrnn import atomic, metrics, postprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _half_then_fail(path_or_file, *args, **kwargs):
  """A serializer that writes part of its output, then dies (as a kill or a full disk would)."""
  if hasattr(path_or_file, "write"):
    path_or_file.write("half")
  else:
    with open(path_or_file, "w") as f:
      f.write("half")
  raise OSError("no space left on device")


def _files(folder):
  return sorted(os.path.relpath(os.path.join(d, n), folder) for d, _, names in os.walk(folder) for n in names)


def test_atomic_output_keeps_the_extension_and_the_umask_mode(tmp_path):
  path = str(tmp_path / "new" / "clip.mp4")
  with atomic.atomic_output(path, suffix=".mp4") as tmp:
    assert tmp.endswith(".mp4") and os.path.basename(tmp).startswith(".clip.mp4.")
    with open(tmp, "w") as f:
      f.write("frames")
  umask = os.umask(0)
  os.umask(umask)
  assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask
  assert _files(tmp_path) == ["new/clip.mp4"]


def test_prediction_csv_write_that_fails_leaves_the_old_file(tmp_path, monkeypatch):
  labels = pd.DataFrame({"link": "l", "start": [0.0], "end": [1.0], "video": ["a"], "utterance": ["u.mp4"],
                         "arousal": [0.2], "valence": [0.1], "EmotionMaxVote": [1]})
  preds = pd.DataFrame({"video": ["a"], "utterance": ["u.mp4"], "valence": [0.5], "arousal": [0.5]})
  path = str(tmp_path / "pred.csv")
  metrics.write_prediction_csv(path, labels, preds)
  before = open(path).read()
  monkeypatch.setattr(pd.DataFrame, "to_csv", lambda self, f, *args, **kwargs: _half_then_fail(f))
  with pytest.raises(OSError, match="no space"):
    metrics.write_prediction_csv(path, labels, preds.assign(valence=0.9))
  assert open(path).read() == before and _files(tmp_path) == ["pred.csv"]


def test_postprocess_choice_write_that_fails_leaves_no_file(tmp_path, monkeypatch):
  path = str(tmp_path / "sub" / "postprocess.json")
  # Not JSON-serializable at the end: json.dump would have written the first fields already.
  monkeypatch.setattr(postprocess, "choice_to_dict", lambda choice: {"median_window": [1, 1], "x": object()})
  with pytest.raises(TypeError):
    postprocess.save_choice(postprocess.PostprocessChoice(), path)
  assert not os.path.exists(path) and _files(tmp_path) == []


def test_synthetic_video_write_that_fails_leaves_no_file(tmp_path, monkeypatch):
  frames = [np.full((32, 48, 3), i * 20, np.uint8) for i in range(4)]
  path = str(tmp_path / "videos" / "v.mp4")
  synthesize.write_mp4(path, frames, 5.0)
  before = open(path, "rb").read()
  calls = []

  def convert_then_fail(frame, code):
    calls.append(1)
    if len(calls) == 3:
      raise OSError("no space left on device")
    return frame

  monkeypatch.setattr(synthesize.cv2, "cvtColor", convert_then_fail)
  with pytest.raises(OSError, match="no space"):
    synthesize.write_mp4(path, frames[::-1], 5.0)
  assert open(path, "rb").read() == before and _files(tmp_path) == ["videos/v.mp4"]


def test_synthetic_set_whose_label_write_fails_leaves_no_partial_label_file(tmp_path, monkeypatch):
  out = tmp_path / "synth"
  monkeypatch.setattr(np, "savetxt", _half_then_fail)  # the Aff-Wild annotation files
  with pytest.raises(OSError, match="no space"):
    synthesize.synthesize(str(out), seed=0, preset="smoke")
  written = _files(out)
  assert not [f for f in written if f.endswith(".txt") or os.path.basename(f).startswith(".")], written
  # What came before it is whole: every OMG ground-truth file parses, the label CSVs have their rows.
  truths = [f for f in written if f.endswith(".json")]
  assert truths and all(json.load(open(out / f))["valence"] for f in truths)
  assert pd.read_csv(out / "omg" / "omg_TrainVideos.csv").shape[0] > 0


def test_report_plot_that_fails_leaves_no_partial_png(tmp_path, monkeypatch):
  """experiments/summary.py's figure (the script defines its absl flags at import: loaded under its own name
  and its flags removed afterwards, tests/cli_runner.py)."""
  from matplotlib.figure import Figure

  def half_then_fail(self, path, **kwargs):
    open(path, "w").write("half")
    raise OSError("no space left on device")

  row = {"row": "table3/cnn_rnn", "paper_valence": 44.7, "paper_arousal": 26.9, "network_valence": 1.0,
         "network_arousal": 2.0, "post_valence": None, "post_arousal": None}
  path = tmp_path / "results.png"
  with cli_runner.restoring_flags():
    spec = importlib.util.spec_from_file_location("_summary_script", os.path.join(REPO, "experiments", "summary.py"))
    summary = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(summary)
    monkeypatch.setattr(Figure, "savefig", half_then_fail)
    with pytest.raises(OSError, match="no space left"):
      summary.plot([row], str(path))
  assert _files(tmp_path) == []
