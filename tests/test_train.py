"""Training loop tests on fake prepared shards: learning, resume, warm starts, end to end."""

import json
import os
import sys

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import tf_keras
from tensorflow.python.framework import config as tf_config

sys.path.insert(0, os.path.dirname(__file__))
import fake_data  # noqa: E402

from conftest import tiny  # noqa: E402
from omg_cnnrnn import evaluation, experiments, serving, training  # noqa: E402
from omg_cnnrnn import losses as losses_lib  # noqa: E402
from omg_cnnrnn import workdir as workdir_lib  # noqa: E402


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  root = tmp_path_factory.mktemp("data")
  fake_data.write_split(str(root / "records"), "train", num_videos=4, seed=0, faceless_every=5)
  labels = fake_data.write_split(str(root / "records"), "validation", num_videos=3, seed=1)
  labels.to_csv(root / "labels.csv", index=False)
  return root


def _config(**overrides):
  """The `testing` row with a tiny backbone (these tests are about the loop, not VGG-16)."""
  base = {"train.num_steps": 4, "train.checkpoint_every_steps": 2, "train.eval_every_steps": 0}
  return tiny(experiments.get("testing"), {**base, **overrides})


def _weights(model):
  return [w.numpy() for w in model.weights]


def test_loss_falls_on_a_learnable_set(data, tmp_path):
  config = _config(**{"train.num_steps": 60, "train.learning_rate": 3e-4, "train.checkpoint_every_steps": 60,
                      "data.batch_size": 4})
  training.configure_process()
  trainer = training.Trainer(config, str(tmp_path / "wd"), str(data / "records"), eval_split=None, log=lambda s: None)
  trainer.train()
  with open(tmp_path / "wd" / "history.jsonl") as f:
    losses = [json.loads(line)["loss"] for line in f]
  assert len(losses) == 60
  assert np.mean(losses[-15:]) < np.mean(losses[:15]) - 0.1, (np.mean(losses[:15]), np.mean(losses[-15:]))


def test_the_training_loss_adds_the_configured_share_of_the_mse(data, tmp_path):
  config = _config(**{"train.mse_weight": 0.5})
  training.configure_process()
  trainer = training.Trainer(config, str(tmp_path / "wd"), str(data / "records"), eval_split=None, log=lambda s: None)
  inputs, labels = next(trainer.iterator)
  got, _ = trainer.loss_and_gradients(inputs, labels, training=False)
  predictions = trainer.model(inputs, training=False)
  ccc = losses_lib.ccc_loss(labels, predictions, inputs["mask"])
  mse = losses_lib.ccc_loss(labels, predictions, inputs["mask"], loss_type="mse")
  np.testing.assert_allclose(got.numpy(), (ccc + 0.5 * mse).numpy(), rtol=1e-5)
  assert mse.numpy() > 1e-3


@pytest.fixture
def restored_process():
  """Op determinism and the dtype policy back as they were after the test (`training.configure_process` sets them)."""
  with training.restoring_process_settings():
    yield


def test_a_trainer_changes_no_process_wide_setting(data, tmp_path):
  with training.restoring_process_settings():
    training.configure_process(seed=0, deterministic=True, precision="mixed_bfloat16")
    assert tf_config.is_op_determinism_enabled()
    assert tf_keras.mixed_precision.global_policy().name == "mixed_bfloat16"
  assert not tf_config.is_op_determinism_enabled()
  assert tf_keras.mixed_precision.global_policy().name == "float32"
  np.random.seed(123)
  want = np.random.rand()
  np.random.seed(123)
  training.Trainer(_config(), str(tmp_path / "wd"), str(data / "records"), seed=0, eval_split=None, log=lambda s: None)
  assert np.random.rand() == want  # not reseeded (it was: set_random_seed(seed) in the constructor)
  assert not tf_config.is_op_determinism_enabled()
  assert tf_keras.mixed_precision.global_policy().name == "float32"


@pytest.mark.slow
def test_resumed_run_ends_with_the_same_step_and_weights(data, tmp_path, restored_process):
  config = _config(**{"train.num_steps": 6})
  kwargs = dict(data_dir=str(data / "records"), eval_split=None, log=lambda s: None)
  training.configure_process(deterministic=True)
  whole = training.Trainer(config, str(tmp_path / "whole"), **kwargs)
  whole.train()
  training.configure_process(deterministic=True)
  first = training.Trainer(config, str(tmp_path / "killed"), **kwargs)
  first.train(stop_after=3)  # killed after step 3: the last checkpoint is step 2
  assert first.manager.latest_checkpoint.endswith("ckpt-2")
  del first
  training.configure_process(deterministic=True)
  resumed = training.Trainer(config, str(tmp_path / "killed"), **kwargs)
  assert int(resumed.step.numpy()) == 2
  result = resumed.train()
  assert result["end_step"] == 6 == int(whole.step.numpy())
  for a, b in zip(_weights(whole.model), _weights(resumed.model)):
    np.testing.assert_array_equal(a, b)


def test_resume_refuses_a_different_config(data, tmp_path):
  training.configure_process()
  training.Trainer(_config(), str(tmp_path / "wd"), str(data / "records"), eval_split=None, log=lambda s: None)
  with pytest.raises(ValueError, match="different config"):
    training.configure_process()
    training.Trainer(_config(**{"train.learning_rate": 0.5}), str(tmp_path / "wd"), str(data / "records"))


@pytest.mark.slow
def test_warm_start_loads_matching_layers_and_reports_fresh_ones(data, tmp_path):
  training.configure_process()
  source = training.Trainer(_config(**{"train.num_steps": 1}), str(tmp_path / "src"), str(data / "records"),
                         eval_split=None, log=lambda s: None)
  source.train()
  # A different row: same VGG stream and fc1, but two RNN subnets instead of one, and wider GRUs.
  target_config = _config(**{"model.rnn_units": 6, "model.streams": [
      {"backbone": "vgg16", "fc_units": [16], "fc_dropout": [0.5], "rnn_inputs": [["pool5"], ["fc1"]]}]})
  training.configure_process()
  target = training.Trainer(target_config, str(tmp_path / "dst"), str(data / "records"), eval_split=None,
                         init_from=[str(tmp_path / "src")], log=lambda s: None)
  with open(tmp_path / "dst" / "init_report.json") as f:
    report = json.load(f)
  assert "vgg16/conv1_1" in report["loaded"] and "vgg16_fc1" in report["loaded"]
  assert "vgg16_rnn_fc1_gru1" in report["fresh"] and "output" in report["fresh"]
  np.testing.assert_array_equal(target.model.get_layer("vgg16").get_layer("conv5_3").kernel.numpy(),
                                source.model.get_layer("vgg16").get_layer("conv5_3").kernel.numpy())
  # Warm starts apply only to a fresh workdir: a resumed run keeps its own weights.
  assert target.resumed_from is None


def test_missing_data_and_init_sources_fail_clearly(data, tmp_path):
  with pytest.raises(FileNotFoundError, match="no shards match"):
    training.configure_process()
    training.Trainer(_config(), str(tmp_path / "a"), str(tmp_path / "nowhere"))
  with pytest.raises(FileNotFoundError, match="init_from"):
    training.configure_process()
    training.Trainer(_config(), str(tmp_path / "b"), str(data / "records"), init_from=[str(tmp_path / "nothing")])


@pytest.mark.slow
def test_train_evaluate_postprocess_export_end_to_end(data, tmp_path):
  workdir = str(tmp_path / "wd")
  training.configure_process()
  trainer = training.Trainer(_config(**{"train.eval_every_steps": 2}), workdir, str(data / "records"),
                          log=lambda s: None)
  result = trainer.train()
  assert result["end_step"] == 4 and os.path.exists(workdir_lib.best_weights_prefix(workdir) + ".index")
  assert os.path.exists(os.path.join(workdir, "config.json"))
  assert os.listdir(os.path.join(workdir, "tensorboard", "train"))

  out = str(tmp_path / "eval")
  res = evaluation.evaluate_workdir(workdir, str(data / "records"), "validation", out,
                                  labels_csv=str(data / "labels.csv"), tune_postprocess=True)
  assert {"valence_ccc", "arousal_ccc"} <= set(res["validation"])
  # The prediction CSV has the label file's columns and rows; an independent reader scores it.
  labels = pd.read_csv(data / "labels.csv")
  preds = pd.read_csv(os.path.join(out, "predictions_validation.csv"))
  assert list(preds.columns) == list(labels.columns) and len(preds) == len(labels)
  assert (preds["video"] == labels["video"]).all() and (preds["utterance"] == labels["utterance"]).all()
  for dim in ("valence", "arousal"):
    p, t = preds[dim].values, labels[dim].values
    rho = np.corrcoef(p, t)[0, 1]
    official = 2 * rho * p.std() * t.std() / (p.var() + t.var() + (p.mean() - t.mean()) ** 2)
    assert res["validation"][f"{dim}_ccc"] == pytest.approx(official, abs=1e-6)
  frames = pd.read_csv(os.path.join(out, "frame_predictions_validation.csv"))
  assert len(frames) == int(round(((labels["end"] - labels["start"]) * 10).sum()))
  assert os.path.exists(os.path.join(workdir, "postprocess.json"))

  model, config = workdir_lib.load_workdir_model(workdir)
  path = serving.export_saved_model(model, config, str(tmp_path / "sm"),
                                   postprocess_path=os.path.join(workdir, "postprocess.json"))
  loaded = tf.saved_model.load(path)
  frames_u8 = np.random.default_rng(0).integers(0, 256, (1, 4, 32, 32, 3), dtype=np.uint8)
  got = loaded.signatures["serving_default"](frames=tf.constant(frames_u8))["per_frame"].numpy()
  want = model({"frames": (frames_u8.astype(np.float32) - 128) / 128, "mask": np.ones((1, 4), np.float32)}).numpy()
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  assert os.path.exists(os.path.join(path, "postprocess.json"))


@pytest.mark.slow
def test_evaluation_refuses_labels_that_do_not_line_up(data, tmp_path):
  workdir = str(tmp_path / "wd")
  training.configure_process()
  training.Trainer(_config(**{"train.num_steps": 1}), workdir, str(data / "records"), eval_split=None,
                log=lambda s: None).train()
  labels = pd.read_csv(data / "labels.csv")
  labels.iloc[1:].to_csv(tmp_path / "short.csv", index=False)
  with pytest.raises(ValueError, match="do not line up"):
    evaluation.evaluate_workdir(workdir, str(data / "records"), "validation", str(tmp_path / "e"),
                              labels_csv=str(tmp_path / "short.csv"), which="latest")


@pytest.mark.slow
def test_warm_start_from_a_workdir_loads_its_best_weights_not_its_last(data, tmp_path, monkeypatch):
  """The paper's second fusion start ("the networks that had the best performance")."""
  workdir = str(tmp_path / "src")
  training.configure_process()
  trainer = training.Trainer(_config(**{"train.num_steps": 6, "train.eval_every_steps": 2}), workdir,
                          str(data / "records"), log=lambda s: None)
  at_eval = {}
  scores = {2: 0.1, 4: 0.5, 6: 0.2}  # The best step (4) is neither the first nor the last.

  def fake_evaluate():
    step = int(trainer.step.numpy())
    at_eval[step] = _weights(trainer.model)
    return {"valence_ccc": scores[step], "arousal_ccc": scores[step]}

  monkeypatch.setattr(trainer, "evaluate", fake_evaluate)
  result = trainer.train()
  assert result["best"]["step"] == 4 and result["end_step"] == 6
  assert any(not np.array_equal(a, b) for a, b in zip(at_eval[4], at_eval[6]))
  # One set of best weights, swapped in (the step-2 prefix is gone), recorded in best.json.
  with open(os.path.join(workdir, "best.json")) as f:
    recorded = json.load(f)
  assert recorded["step"] == 4 and recorded["weights"] == "model-2"
  assert sorted(n for n in os.listdir(os.path.join(workdir, "best")) if n.endswith(".index")) == ["model-2.index"]
  # A prefix half-written by a killed run (never recorded in best/checkpoint) is not read.
  with open(os.path.join(workdir, "best", "model-9.index"), "wb") as f:
    f.write(b"truncated")

  training.configure_process()
  target = training.Trainer(_config(**{"train.num_steps": 1}), str(tmp_path / "dst"), str(data / "records"),
                         eval_split=None, init_from=[workdir], log=lambda s: None)
  for a, b in zip(_weights(target.model), at_eval[4]):
    np.testing.assert_array_equal(a, b)
  with open(tmp_path / "dst" / "init_report.json") as f:
    assert json.load(f)["sources"][0]["checkpoint"].endswith(os.path.join("best", "model-2"))
  best_model, _ = workdir_lib.load_workdir_model(workdir, which="best")
  for a, b in zip(_weights(best_model), at_eval[4]):
    np.testing.assert_array_equal(a, b)
  latest_model, _ = workdir_lib.load_workdir_model(workdir, which="latest")
  for a, b in zip(_weights(latest_model), at_eval[6]):
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_best_weights_of_an_earlier_layout_are_still_read(data, tmp_path):
  """Workdirs written before the atomic swap hold one fixed `best/model` prefix."""
  workdir = str(tmp_path / "old")
  training.configure_process()
  trainer = training.Trainer(_config(**{"train.num_steps": 2}), workdir, str(data / "records"), eval_split=None,
                          log=lambda s: None)
  want = _weights(trainer.model)
  tf.train.Checkpoint(model=trainer.model).write(os.path.join(workdir, "best", "model"))
  trainer.train()
  assert workdir_lib.best_weights_prefix(workdir) == os.path.join(workdir, "best", "model")
  model, _ = workdir_lib.load_workdir_model(workdir)
  for a, b in zip(_weights(model), want):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(ValueError, match="which='newest'"):
    workdir_lib.load_workdir_model(workdir, which="newest")
