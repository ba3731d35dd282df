"""Tests of the experiment registry: every paper row, names, docstrings, the CLI."""

import dataclasses
import json

import pytest
from absl import flags

import cli_runner
from omg_cnnrnn import configs, experiments

PAPER_ROWS = {  # table -> (row name -> paper CCC valence, arousal), from the paper's Tables III-VI
    "III": {"table3/cnn_only": (38.1, 25.5), "table3/cnn_rnn": (44.7, 26.9), "table3/cnn_1rnn": (40.74, 30.05),
            "table3/cnn_2rnn": (42.74, 28.61), "table3/cnn_2rnn_fc": (42.11, 28.33),
            "table3/cnn_3rnn_2nd_last_conv": (45.34, 21.5), "table3/cnn_3rnn_last_conv": (45.6, 24.6)},
    "IV": {"table4/cnn_only": (38.4, 21.64), "table4/cnn_rnn": (44.4, 26.7), "table4/cnn_fc_rnn": (40.7, 26.4)},
    "V": {"table5/vgg_fc_rnn_resnet_rnn": (45.47, 27.47), "table5/vgg_fc_rnn_resnet_fc_rnn": (44.1, 27.3),
          "table5/vgg_fc_rnn_resnet_rnn_fc": (45.3, 25.07), "table5/vgg_fc_rnn_resnet_fc_rnn_fc": (45.0, 24.5)},
    "VI": {"table6/vgg16_1rnn_post": (43.1, 31.1), "table6/vgg16_3rnn_last_conv_post": (49.1, 26.1),
           "table6/resnet_rnn_post": (46.2, 28.1), "table6/fusion_post": (48.45, 28.86)},
}


@pytest.mark.parametrize("table", sorted(PAPER_ROWS))
def test_every_paper_row_is_registered_with_its_ccc(table):
  for name, (v, a) in PAPER_ROWS[table].items():
    config = experiments.get(name)
    assert config.table == table
    assert (config.paper_ccc_valence, config.paper_ccc_arousal) == (v, a)
    doc = experiments.EXPERIMENTS.lookup(name).__doc__
    assert f"Table {table}" in doc and f"{v:g}" in doc, f"{name}'s docstring must cite table and CCC"


def test_unknown_experiment_lists_the_valid_names():
  with pytest.raises(KeyError, match="table3/cnn_3rnn_last_conv"):
    experiments.get("table3/cnn_4rnn")


def test_table6_rows_point_at_registered_base_rows():
  for name in PAPER_ROWS["VI"]:
    config = experiments.get(name)
    base = experiments.get(config.base_experiment)
    assert config.model == base.model and config.postprocess is not None


def test_experiment_flag_lists_rows_in_help_and_rejects_unknown():
  fv = flags.FlagValues()
  experiments.define_flags(fv)
  help_text = fv["experiment"].help
  for name in experiments.names():
    assert name in help_text
  with pytest.raises(flags.IllegalFlagValueError, match="table3/cnn_rnn"):
    fv(["prog", "--experiment=nope"])
  fv(["prog", "--experiment=testing", "--override=train.num_steps=3"])
  assert experiments.from_flags(fv).train.num_steps == 3


def test_cli_json_lists_every_row():
  done = cli_runner.run("omg_cnnrnn.experiments", ["--json", "--no_params"])
  assert done.returncode == 0, done.stderr
  out = done.stdout
  rows = json.loads(out)
  assert [r["name"] for r in rows] == experiments.names()
  assert set(rows[0]) == {"name", "table", "row", "params", "paper_ccc_valence", "paper_ccc_arousal"}
  by_name = {r["name"]: r for r in rows}
  assert by_name["table5/vgg_fc_rnn_resnet_rnn"]["paper_ccc_arousal"] == 27.47


# Released-code twins of the paper rows (the authors' OMG_Challenge train_script.py / AffWildNet.py).
RELEASED_3RNN = {"table3/cnn_3rnn_2nd_last_conv_released": "table3/cnn_3rnn_2nd_last_conv",
                 "table3/cnn_3rnn_last_conv_released": "table3/cnn_3rnn_last_conv",
                 "table3/cnn_3rnn_fc_released": "table3/cnn_3rnn_fc"}
RELEASED_TABLE6 = {"table6/vgg16_1rnn_released_post": ("table6/vgg16_1rnn_post", "table3/cnn_1rnn_released"),
                   "table6/vgg16_3rnn_last_conv_released_post": ("table6/vgg16_3rnn_last_conv_post",
                                                                 "table3/cnn_3rnn_last_conv_released")}


def test_released_cnn_3rnn_rows_differ_from_their_paper_rows_only_by_the_released_settings():
  for name, paper_name in RELEASED_3RNN.items():
    released, paper = experiments.get(name), experiments.get(paper_name)
    # train_script.py --h_units help "256 for CNN_GRU_3RNN"; DropoutWrapper keep_prob 1 (no GRU dropout).
    assert (released.model.rnn_units, released.model.rnn_dropout) == (256, 0.0)
    assert (paper.model.rnn_units, paper.model.rnn_dropout) == (128, 0.2)  # Table II, Sec. IV-2
    assert released.model == dataclasses.replace(paper.model, rnn_units=256, rnn_dropout=0.0)
    assert released.init == paper.init == experiments.get("table3/cnn_1rnn_released").init
    assert (released.table, released.paper_ccc_valence, released.paper_ccc_arousal) == (
        paper.table, paper.paper_ccc_valence, paper.paper_ccc_arousal)
    assert released.row == f"{paper.row} (released code)" and experiments.is_released_code(name)
    doc = experiments.EXPERIMENTS.lookup(name).__doc__
    assert "train_script.py line 26" in doc and "AffWildNet.py" in doc and "line 135" in doc, name
    assert f"--experiment={name}" in doc


def test_released_table6_rows_post_process_the_released_networks():
  for name, (paper_name, base) in RELEASED_TABLE6.items():
    released, paper = experiments.get(name), experiments.get(paper_name)
    assert released.base_experiment == base and experiments.is_released_code(base)
    assert released.model == experiments.get(base).model and released.postprocess == paper.postprocess
    assert (released.paper_ccc_valence, released.paper_ccc_arousal) == (paper.paper_ccc_valence,
                                                                         paper.paper_ccc_arousal)
    assert experiments.is_released_code(name) and not experiments.is_released_code(paper_name)
  assert [n for n in experiments.names() if experiments.is_released_code(n)] == [
      "table3/cnn_1rnn_released", *RELEASED_3RNN, *RELEASED_TABLE6]


def test_table6_rows_register_the_papers_postprocessing():
  for name in [*PAPER_ROWS["VI"], *RELEASED_TABLE6]:
    post = experiments.get(name).postprocess
    # Sec. III-E: windows 81 / 3, then smoothing; each step kept only if it raises validation CCC.
    assert post == configs.PostprocessConfig(median_window_valence=81, median_window_arousal=3,
                                             smooth_utterances=True, procedure="paper")


# What the CPU-size variants replaced: experiments/common.sh's SMOKE override list and experiments/demo.py's
# own hyperparameter flags (image_size 32, sequence_length 8, cnn_steps 130, rnn_steps 60, logging/checkpoints); since then the
# CNN-only stage runs 170 steps of 40 frames (issue 11: the demo in 10 minutes on a 2-core AVX2 machine).
SMOKE_OVERRIDES = ["data.image_size=32", "data.sequence_length=4", "data.batch_size=2", "data.shuffle_buffer=8",
                   "train.num_steps=2", "train.log_every_steps=1", "train.checkpoint_every_steps=1",
                   "train.eval_every_steps=2"]
DEMO_COMMON = ["data.image_size=32", "train.log_every_steps=25", "train.checkpoint_every_steps=50"]
DEMO_STAGES = {"table3/cnn_only": DEMO_COMMON + ["data.batch_size=40", "train.num_steps=170",
                                                 "train.eval_every_steps=85"],
               "table3/cnn_rnn": DEMO_COMMON + ["data.sequence_length=8", "train.num_steps=60",
                                                "train.eval_every_steps=30"]}


def test_cpu_and_smoke_variants_are_the_rows_with_the_replaced_overrides():
  for name, overrides in DEMO_STAGES.items():
    cpu = experiments.get(f"{name}:cpu")
    assert cpu == configs.override(experiments.get(name), overrides) and cpu.name == name
    assert experiments.variant_overrides(f"{name}:cpu") == overrides  # the demo prints them
  for name in experiments.names():
    smoke = experiments.get(f"{name}:smoke")
    # The smoke variant's VGG-16 streams are also at 1/16 width, their FC layers at 1/16 of the units.
    streams = [{**s, "backbone_width": 0.0625, "fc_units": [u // 16 for u in s["fc_units"]]}
               if s["backbone"] == "vgg16" else s for s in experiments.get(name).to_dict()["model"]["streams"]]
    assert smoke == configs.override(configs.override(experiments.get(name), SMOKE_OVERRIDES), {"model.streams": streams})
    assert smoke.name == name
    assert smoke.model.streams[0].backbone != "vgg16" or smoke.model.streams[0].backbone_width == 0.0625
    assert experiments.get(f"{name}:cpu").data.image_size == 32
  assert experiments.get("table4/cnn_fc_rnn:cpu").train.num_steps == 60
  assert experiments.get("table4/cnn_only:cpu").data.sequence_length == 1
  assert experiments.variant_overrides("table3/cnn_rnn") == []
  with pytest.raises(KeyError, match="cpu, smoke"):
    experiments.get("table3/cnn_rnn:gpu")


def test_experiment_flag_takes_a_variant():
  fv = flags.FlagValues()
  experiments.define_flags(fv)
  fv(["prog", "--experiment=table3/cnn_rnn:smoke", "--override=train.num_steps=3"])
  config = experiments.from_flags(fv)
  assert (config.name, config.train.num_steps, config.data.image_size) == ("table3/cnn_rnn", 3, 32)
  with pytest.raises(flags.IllegalFlagValueError, match="cpu, smoke"):
    fv(["prog", "--experiment=table3/cnn_rnn:gpu"])
  with pytest.raises(flags.IllegalFlagValueError, match="table3/cnn_rnn"):
    fv(["prog", "--experiment=nope:cpu"])


def test_fusion_rows_register_their_two_training_ways():
  from omg_cnnrnn import runs

  for name in PAPER_ROWS["V"]:
    ways = experiments.get(name).init.ways
    # Sec. III-C: (a) from the Aff-Wild-pretrained branches, (b) from the row's own start.
    assert [(w.name, w.start) for w in ways] == [("from_affwild", "pretrained_branches"), ("from_omg", "registered")]
    # choose_base_run and the summary look for the runs where the ways put them.
    assert runs.run_workdirs("/root", name) == {w.name: f"/root/{name}/{w.name}" for w in ways}
    assert len(experiments.get(name).init.after) == len(experiments.get(name).model.streams)
  for name in [*PAPER_ROWS["III"], *PAPER_ROWS["IV"]]:
    assert experiments.get(name).init.ways == ()
    assert runs.run_workdirs("/root", name) == {"": f"/root/{name}"}
  with pytest.raises(ValueError, match="pretrained_branches"):
    configs.TrainingWay("x", start="elsewhere")


def test_cli_prints_one_config_field_for_the_table_scripts():
  def get(name, key):
    done = cli_runner.run("omg_cnnrnn.experiments", [f"--get={name}", f"--field={key}"])
    assert done.returncode == 0, done.stderr
    return done.stdout

  assert get("table5/vgg_fc_rnn_resnet_fc_rnn", "init.after") == "table3/cnn_rnn table4/cnn_fc_rnn\n"
  assert get("table5/vgg_fc_rnn_resnet_rnn", "init.ways") == "from_affwild pretrained_branches\nfrom_omg registered\n"
  assert get("table3/cnn_rnn", "init.ways") == "\n"
  assert get("table6/fusion_post", "base_experiment") == "table5/vgg_fc_rnn_resnet_rnn\n"
  assert get("table3/cnn_rnn:smoke", "train.num_steps") == "2\n"
  with pytest.raises(KeyError, match="init.nope"):
    experiments.field("table3/cnn_rnn", "init.nope")
