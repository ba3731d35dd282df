"""Evaluation's outputs: written as a unit and last; unprepared utterances filled; non-finite predictions refused."""

import json
import os
import sys

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import fake_data  # noqa: E402

from conftest import tiny  # noqa: E402
from omg_cnnrnn import evaluation, experiments, metrics, postprocess, training  # noqa: E402

pytestmark = pytest.mark.slow  # the module's fixture trains a model


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """A trained `testing` workdir (1 step), its prepared validation split and the split's labels."""
  root = tmp_path_factory.mktemp("evalout")
  fake_data.write_split(str(root / "records"), "train", num_videos=2, seed=0)
  labels = fake_data.write_split(str(root / "records"), "validation", num_videos=3, seed=1)
  labels.to_csv(root / "labels.csv", index=False)
  config = tiny(experiments.get("testing"), {"train.num_steps": 1, "train.eval_every_steps": 0})
  training.configure_process()
  training.Trainer(config, str(root / "wd"), str(root / "records"), eval_split=None, log=lambda s: None).train()
  return root, labels


def _evaluate(root, out, labels_csv, **kwargs):
  return evaluation.evaluate_workdir(str(root / "wd"), str(root / "records"), "validation", str(out),
                                   labels_csv=str(labels_csv), which="latest", **kwargs)


def _snapshot(*folders):
  return {os.path.join(d, n): open(os.path.join(d, n), "rb").read()
          for d in folders for n in sorted(os.listdir(d)) if os.path.isfile(os.path.join(d, n))}


def test_a_labelled_utterance_that_was_not_prepared_is_filled_counted_and_named(run, tmp_path):
  root, labels = run
  first = labels.iloc[0]
  # One more utterance of a prepared video, and a whole video that failed in data prep.
  extra = [dict(first, utterance="utterance_9.mp4", start=90.0, end=91.0),
           dict(first, video="failedvideo", link="https://youtu.be/failedvideo", utterance="utterance_1.mp4")]
  full = pd.concat([labels, pd.DataFrame(extra)], ignore_index=True)
  full.to_csv(tmp_path / "labels.csv", index=False)
  res = _evaluate(root, tmp_path / "out", tmp_path / "labels.csv", tune_postprocess=True)
  for key in ("validation_raw", "validation_postprocessed"):
    assert res[key]["utterances_not_prepared"] == 2
    assert res[key]["not_prepared"] == [f"{first.video}/utterance_9.mp4", "failedvideo/utterance_1.mp4"]
  with open(tmp_path / "out" / "metrics.json") as f:
    assert json.load(f)["validation"]["not_prepared"] == res["validation"]["not_prepared"]
  preds = pd.read_csv(tmp_path / "out" / "predictions_validation.csv")
  assert len(preds) == len(full) and (preds["utterance"] == full["utterance"]).all()
  # Filled the face-less way: the mean of the video's other utterances, else the global mean.
  same_video = preds.iloc[:len(labels)][preds["video"].iloc[:len(labels)] == first.video]
  np.testing.assert_allclose(preds.iloc[len(labels)][["valence", "arousal"]].to_numpy(float),
                             same_video[["valence", "arousal"]].mean().to_numpy(float))
  np.testing.assert_allclose(preds.iloc[len(labels) + 1][["valence", "arousal"]].to_numpy(float),
                             preds.iloc[:len(labels)][["valence", "arousal"]].mean().to_numpy(float))
  # The scores are the challenge scorer's on the written CSV, the filled rows included.
  for dim in ("valence", "arousal"):
    assert res["validation"][f"{dim}_ccc"] == pytest.approx(metrics.ccc(preds[dim].values, full[dim].values),
                                                            abs=1e-9)


def test_a_failed_evaluation_leaves_every_earlier_output_and_the_saved_choice(run, tmp_path, monkeypatch):
  root, labels = run
  out = tmp_path / "out"
  _evaluate(root, out, root / "labels.csv", tune_postprocess=True)
  assert sorted(os.listdir(out)) == ["frame_predictions_validation.csv", "metrics.json", "postprocess.json",
                                     "predictions_validation.csv"]
  before = _snapshot(str(out), str(root / "wd"))

  # Fails while the outputs are written (after the network ran and the choice was tuned).
  def broken(*args, **kwargs):
    raise OSError("disk full")

  monkeypatch.setattr(metrics, "write_prediction_csv", broken)
  with pytest.raises(OSError, match="disk full"):
    _evaluate(root, out, root / "labels.csv", tune_postprocess=True,
              postprocess_procedure="search")
  monkeypatch.undo()
  assert _snapshot(str(out), str(root / "wd")) == before
  assert not [n for n in os.listdir(out) if n.startswith(".evaluate-")]  # no staging left behind

  # Labels of another split: refused before anything is written.
  labels.iloc[1:].to_csv(tmp_path / "short.csv", index=False)
  with pytest.raises(ValueError, match="do not line up.*not in the labels"):
    _evaluate(root, out, tmp_path / "short.csv", tune_postprocess=True)
  assert _snapshot(str(out), str(root / "wd")) == before


def test_the_saved_choice_is_written_after_the_metrics(run, tmp_path, monkeypatch):
  root, _ = run
  out = tmp_path / "out"
  seen = []
  save = postprocess.save_choice

  def recording(choice, path):
    seen.append((path, os.path.exists(out / "metrics.json")))
    save(choice, path)

  monkeypatch.setattr(postprocess, "save_choice", recording)
  res = _evaluate(root, out, root / "labels.csv", tune_postprocess=True)
  workdir_choice = os.path.join(str(root / "wd"), "postprocess.json")
  assert seen[-1] == (workdir_choice, True)  # metrics.json existed when the workdir's choice was written
  assert res["files"] == ["frame_predictions_validation.csv", "postprocess.json", "predictions_validation.csv"]
  # A killed run leaves a staging folder; the next evaluation sweeps it.
  stale = out / ".evaluate-999999999-deadbeef.tmp"
  stale.mkdir()
  (stale / "metrics.json").write_text("{}")
  _evaluate(root, out, root / "labels.csv")
  assert not stale.exists()


def test_non_finite_predictions_are_an_error_naming_the_utterance(run, tmp_path, monkeypatch):
  root, _ = run
  real = evaluation.predict_split
  spoiled = []

  def with_inf(*args, **kwargs):
    records = real(*args, **kwargs)
    valid = np.flatnonzero(records[2]["mask"] > 0)
    records[2]["frame_predictions"][valid[1], 1] = np.inf
    spoiled.append(f"{records[2]['video']}/{records[2]['utterance']}")
    return records

  monkeypatch.setattr(evaluation, "predict_split", with_inf)
  with pytest.raises(ValueError) as error:
    _evaluate(root, tmp_path / "out", root / "labels.csv")
  message = str(error.value)
  assert "non-finite predictions (NaN/inf) on 1 of its" in message and f"utterance {spoiled[0]}:" in message
  assert not os.path.exists(tmp_path / "out" / "metrics.json")


def test_one_predictor_serves_repeated_predictions_with_one_trace_and_the_same_numbers(run):
  """The Trainer validates with one `frame_predictor` a run: a function made per call retraces per call."""
  from omg_cnnrnn import workdir as workdir_lib

  root, labels = run
  model, config = workdir_lib.load_workdir_model(str(root / "wd"), which="latest")
  data = str(root / "records")
  predictor = evaluation.frame_predictor(model, config.data)
  # Batches of 2 windows: the split's last batch is smaller (a second shape the trace must cover).
  first = evaluation.predict_split(model, config, data, "validation", batch_size=2, predictor=predictor)
  again = evaluation.predict_split(model, config, data, "validation", batch_size=2, predictor=predictor)
  assert predictor.experimental_get_tracing_count() == 1
  alone = evaluation.predict_split(model, config, data, "validation", batch_size=2)
  assert len(first) == len(labels)
  for a, b, c in zip(first, again, alone):
    np.testing.assert_array_equal(a["frame_predictions"], b["frame_predictions"])
    np.testing.assert_array_equal(a["frame_predictions"], c["frame_predictions"])
    assert np.isfinite(a["frame_predictions"][a["mask"] > 0]).all()
