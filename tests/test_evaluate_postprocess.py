"""Evaluation's post-processing: a Table VI row's registered settings reach it, every figure names its
procedure, and Table VI's fused row post-processes the better of its two training ways."""

import dataclasses
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import fake_data  # noqa: E402

from conftest import tiny  # noqa: E402
from omg_cnnrnn import configs, evaluation, experiments, postprocess, runs, training  # noqa: E402

TABLE6 = [n for n in experiments.names() if experiments.get(n).table == "VI"]


def test_every_table6_row_brings_its_own_settings_to_evaluation():
  assert len(TABLE6) == 6
  for name in TABLE6:
    row = experiments.get(name)
    base = experiments.get(row.base_experiment)  # the config a base workdir holds: no post-processing
    assert base.postprocess is None
    settings, source = evaluation.postprocess_config(base, name)
    assert settings == row.postprocess and source == name
    assert (settings.procedure, settings.median_window_valence, settings.median_window_arousal) == ("paper", 81, 3)
  # Without a row: the workdir's own settings, else the paper's defaults; a procedure replaces the settings'.
  testing = experiments.get("testing")
  assert evaluation.postprocess_config(testing) == (testing.postprocess, "testing")
  settings, source = evaluation.postprocess_config(experiments.get("table3/cnn_rnn"), procedure="search")
  assert settings == configs.PostprocessConfig(procedure="search") and "paper's defaults" in source
  with pytest.raises(ValueError, match="table6/fusion_post post-processes 'table5/vgg_fc_rnn_resnet_rnn', but the "
                                       "workdir holds a trained 'table3/cnn_1rnn'"):
    evaluation.postprocess_config(experiments.get("table3/cnn_1rnn"), "table6/fusion_post")
  with pytest.raises(ValueError, match="registers no post-processing"):
    evaluation.postprocess_config(experiments.get("table3/cnn_1rnn"), "table3/cnn_1rnn")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  """A trained `testing` workdir (2 steps) and its prepared data."""
  root = tmp_path_factory.mktemp("eval")
  fake_data.write_split(str(root / "records"), "train", num_videos=3, seed=0)
  labels = fake_data.write_split(str(root / "records"), "validation", num_videos=4, seed=1)
  labels.to_csv(root / "labels.csv", index=False)
  config = tiny(experiments.get("testing"), {"train.eval_every_steps": 0})
  training.configure_process()
  training.Trainer(config, str(root / "wd"), str(root / "records"), eval_split=None, log=lambda s: None).train()
  return root


@pytest.fixture
def table6_testing_row(monkeypatch):
  """A Table VI row over the `testing` row with settings of its own: valence window 5, arousal off, no smoothing."""
  name = "table6/testing_post"
  settings = configs.PostprocessConfig(median_window_valence=5, median_window_arousal=1, smooth_utterances=False)

  def build():
    return dataclasses.replace(experiments.get("testing"), name=name, table="VI", postprocess=settings,
                               base_experiment="testing")

  monkeypatch.setitem(experiments.EXPERIMENTS._items, name, build)
  return name


@pytest.mark.slow
def test_the_rows_settings_are_what_evaluation_applies_and_outputs_name_the_procedure(workdir, table6_testing_row):
  wd, data = str(workdir / "wd"), str(workdir / "records")
  out = str(workdir / "row")
  result = evaluation.evaluate_workdir(wd, data, "validation", out, tune_postprocess=True,
                                     postprocess_experiment=table6_testing_row)
  with open(os.path.join(out, "metrics.json")) as f:
    written = json.load(f)
  post = written["validation_postprocessed"]
  assert written["postprocess_procedure"] == post["postprocess_procedure"] == "paper"
  assert post["postprocess_description"].startswith("paper (Sec. III-E")
  assert table6_testing_row in post["postprocess_source"]
  # Exactly the row's settings were tried: window 5 for valence, nothing for arousal, no smoothing
  # (the workdir's own config, `testing`, would have tried windows 3 / 3 and smoothing k = 80).
  tried = post["postprocess"]["search"]
  assert set(tried["valence"]["median_window"]["reflect"]) == {"1", "5"}
  assert set(tried["arousal"]["median_window"]["reflect"]) == {"1"}
  assert tried["valence"]["smoothing_k"] == tried["arousal"]["smoothing_k"] == {}
  assert post["postprocess"]["median_window"][1] == 1 and post["postprocess"]["smoothing_k"] == [0.0, 0.0]
  assert result["validation"] == written["validation"]
  # The saved choice applied unchanged (as to a test split) gives the same figures and keeps the procedure.
  again = evaluation.evaluate_workdir(wd, data, "validation", str(workdir / "applied"),
                                    postprocess_path=os.path.join(wd, "postprocess.json"))
  applied = again["validation_postprocessed"]
  assert applied["postprocess_procedure"] == "paper" and "applied unchanged" in applied["postprocess_source"]
  assert (applied["valence_ccc"], applied["arousal_ccc"]) == (post["valence_ccc"], post["arousal_ccc"])
  # The wider search only when asked for, and it says so.
  wide = evaluation.evaluate_workdir(wd, data, "validation", str(workdir / "search"), tune_postprocess=True,
                                   postprocess_procedure="search")["validation_postprocessed"]
  assert wide["postprocess_procedure"] == "search" and "not the paper's" in wide["postprocess_description"]
  assert len(wide["postprocess"]["search"]["valence"]["median_window"]["reflect"]) > 2
  with pytest.raises(ValueError, match="need tune_postprocess"):
    evaluation.evaluate_workdir(wd, data, "validation", str(workdir / "x"), postprocess_experiment=table6_testing_row)
  with pytest.raises(ValueError, match="post-processes 'table3/cnn_1rnn', but the workdir holds a trained 'testing'"):
    evaluation.evaluate_workdir(wd, data, "validation", str(workdir / "x"), tune_postprocess=True,
                              postprocess_experiment="table6/vgg16_1rnn_post")


def _metrics(workdir, valence, arousal):
  os.makedirs(os.path.join(workdir, "eval_validation"))
  raw = {"valence_ccc": valence, "arousal_ccc": arousal}
  with open(os.path.join(workdir, "eval_validation", "metrics.json"), "w") as f:
    json.dump({"validation": raw, "validation_raw": raw}, f)


def test_table6_fused_row_takes_the_better_training_way_on_validation(tmp_path):
  root = str(tmp_path)
  base = os.path.join(root, "table5", "vgg_fc_rnn_resnet_rnn")
  # from_affwild wins on the mean of the two CCCs (0.35 vs 0.325) though from_omg has the better valence.
  _metrics(os.path.join(base, "from_affwild"), 0.30, 0.40)
  _metrics(os.path.join(base, "from_omg"), 0.45, 0.20)
  out = os.path.join(root, "table6", "fusion_post", "base_run.json")
  decision = runs.choose_base_run(root, "table6/fusion_post", output=out)
  assert decision["run"] == "from_affwild" and decision["workdir"] == os.path.join(base, "from_affwild")
  assert decision["scores"] == {"from_affwild": pytest.approx(0.35), "from_omg": pytest.approx(0.325)}
  assert "better of its training ways" in decision["reason"] and "from_omg 0.3250" in decision["reason"]
  with open(out) as f:
    assert json.load(f)["run"] == "from_affwild"
  # A single base row has one run; a way that was not evaluated does not compete.
  single = runs.choose_base_run(root, "table6/resnet_rnn_post")
  assert single["workdir"] == os.path.join(root, "table4", "cnn_rnn") and single["run"] == ""
  os.remove(os.path.join(base, "from_affwild", "eval_validation", "metrics.json"))
  only = runs.choose_base_run(root, "table6/fusion_post")
  assert only["run"] == "from_omg" and "['from_affwild'] not evaluated" in only["reason"]
  with pytest.raises(ValueError, match="not a Table VI row"):
    runs.choose_base_run(root, "table3/cnn_rnn")


def test_procedure_descriptions_cover_every_config_procedure():
  assert set(configs.POSTPROCESS_PROCEDURES) <= set(postprocess.PROCEDURE_DESCRIPTIONS)
