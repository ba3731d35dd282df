"""Where a run starts: the paper's weights, the row before it, --init_from, or scratch with the recipe."""

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import fake_data  # noqa: E402

from conftest import tiny as tiny_backbone  # noqa: E402
from omg_cnnrnn import configs, experiments, start, training  # noqa: E402


def _fake_run(workdir, kind):
  """A workdir with a config.json recording `kind` and a best checkpoint index."""
  os.makedirs(os.path.join(workdir, "best"), exist_ok=True)
  config = configs.override(experiments.get("table3/cnn_only"), {"train.start": kind})
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json())
  open(os.path.join(workdir, "best", "model.index"), "w").close()


def test_paper_weights_win_when_the_user_has_them(tmp_path):
  row = experiments.get("table5/vgg_fc_rnn_resnet_rnn")
  paper = start.PaperWeights(affwildnet_vgg="/w/vgg/model.ckpt-1", affwildnet_resnet="/w/res/model.ckpt-2")
  got = start.resolve(row, str(tmp_path / "table5/vgg_fc_rnn_resnet_rnn/from_omg"), paper=paper)
  assert got.kind == "paper"
  assert got.sources == ("tf1:affwildnet_vggface_gru@/w/vgg/model.ckpt-1",
                         "tf1:affwildnet_resnet_gru@/w/res/model.ckpt-2")
  # VGG-Face alone starts a VGG row (its convolutions), not a ResNet one.
  vgg_face = start.PaperWeights(vggface_h5="/w/vggface.h5")
  assert start.resolve(experiments.get("table3/cnn_rnn"), str(tmp_path / "x"), paper=vgg_face).sources == (
      "vggface:/w/vggface.h5",)
  assert start.resolve(experiments.get("table4/cnn_rnn"), str(tmp_path / "y"), paper=vgg_face).kind == "scratch"


def test_without_paper_weights_a_row_starts_after_the_row_before_it(tmp_path):
  row = experiments.get("table3/cnn_3rnn_last_conv")
  workdir = str(tmp_path / "runs" / "table3" / "cnn_3rnn_last_conv")
  got = start.resolve(row, workdir)
  assert got.kind == "scratch" and got.sources == ()
  assert any("no trained run" in line for line in got.chain)
  _fake_run(str(tmp_path / "runs" / "table3" / "cnn_only"), "scratch")
  got = start.resolve(row, workdir)
  assert got.sources == (str(tmp_path / "runs" / "table3" / "cnn_only"),) and got.kind == "scratch"
  # A chain that began from the paper's weights stays a paper start.
  _fake_run(str(tmp_path / "paper" / "table3" / "cnn_only"), "paper")
  assert start.resolve(row, str(tmp_path / "paper" / "table3" / "cnn_3rnn_last_conv")).kind == "paper"
  # --init_from overrides the row's own start.
  explicit = start.resolve(row, workdir, init_from=["tf1:/x/model.ckpt-3"],
                           paper=start.PaperWeights(affwildnet_vgg="/w/v"))
  assert explicit.sources == ("tf1:/x/model.ckpt-3",) and explicit.kind == "paper"


def test_runs_root_strips_the_row_name():
  assert start.runs_root("/r/table3/cnn_rnn", "table3/cnn_rnn") == "/r"
  assert start.runs_root("/r/table5/vgg_fc_rnn_resnet_rnn/from_omg", "table5/vgg_fc_rnn_resnet_rnn") == "/r"
  assert start.runs_root("/r/somewhere", "table3/cnn_rnn") == "/r"


def test_a_scratch_start_gets_the_recipe_and_a_paper_start_the_papers_values():
  row = experiments.get("table3/cnn_rnn")
  scratch = start.apply(row, start.Start("scratch", (), ()))
  recipe = row.scratch_recipe
  assert scratch.train.start == "scratch" and scratch.train.learning_rate == recipe.learning_rate
  assert scratch.model.kernel_initializer == recipe.kernel_initializer == "he_normal"
  assert scratch.model.batch_norm_momentum == recipe.batch_norm_momentum < 0.997
  assert scratch.train.warmup_steps == recipe.warmup_steps > 0
  assert scratch.train.clip_global_norm == recipe.clip_global_norm > 0
  paper = start.apply(row, start.Start("paper", ("tf1:x",), ()))
  assert paper.train.start == "paper" and paper.train.learning_rate == 1e-3  # Sec. IV-1
  assert paper.model.kernel_initializer == "glorot_uniform" and paper.train.warmup_steps == 0
  assert paper.model.batch_norm_momentum == 0.997  # TF-slim resnet_arg_scope
  assert paper.train.clip_global_norm == 0 and paper.train.freeze_loaded_steps == 0


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
  """(runs root, records) with `<root>/first`: the tiny testing row trained from scratch for 2 steps.

  The run the tests below start a second row from; shared read-only (each writes its own workdirs).
  """
  root = tmp_path_factory.mktemp("runs")
  data = str(tmp_path_factory.mktemp("records"))
  fake_data.write_split(data, "train", num_videos=4, seed=0)
  tiny = {"train.num_steps": 2, "train.checkpoint_every_steps": 2, "train.eval_every_steps": 0,
          "data.batch_size": 4, "train.warmup_steps": 0}
  first = tiny_backbone(start.apply(experiments.get("testing"), start.Start("scratch", (), ())), tiny)
  with training.restoring_process_settings():
    training.configure_process()
    training.Trainer(first, str(root / "first"), data, eval_split=None, log=lambda s: None).train()
  return root, data


@pytest.mark.slow
def test_train_resolves_the_chain_records_it_and_reports_every_layer(first_run):
  root, data = first_run
  tiny = {"train.num_steps": 3, "train.checkpoint_every_steps": 3, "train.eval_every_steps": 0,
          "data.batch_size": 4}
  # A second row registered to start after the first (resolved by name under the same root),
  # with wider GRUs: its GRUs and output start fresh, the convolutions and FC1 load.
  second = configs.override(experiments.get("testing"), {"init.after": ["first"], "model.rnn_units": 6})
  resolved = start.resolve(second, str(root / "second"))
  assert resolved.sources == (str(root / "first"),) and resolved.kind == "scratch"
  config = tiny_backbone(start.apply(second, resolved), tiny)
  training.configure_process()
  trainer = training.Trainer(config, str(root / "second"), data, eval_split=None,
                          init_from=resolved.sources, log=lambda s: None)
  with open(root / "second" / "config.json") as f:
    saved = json.load(f)
  assert saved["train"]["start"] == "scratch" and saved["model"]["kernel_initializer"] == "he_normal"
  with open(root / "second" / "init_report.json") as f:
    layers = json.load(f)["layers"]
  assert layers["vgg16/conv1_1"].startswith(str(root / "first"))
  assert layers["vgg16_rnn_conv5_3_pool5_fc1_gru1"] == "fresh" and layers["output"] == "fresh"
  assert set(layers) == {p for p, _ in training.named_layers(trainer.model)}
  # The recipe freezes the loaded layers for its first steps: they do not move, the fresh ones do.
  before = {w.name: w.numpy().copy() for w in trainer.model.trainable_weights}
  trainer.train()
  after = {w.name: w.numpy() for w in trainer.model.trainable_weights}
  assert config.train.freeze_loaded_steps > 3
  moved = {k for k in before if abs(before[k] - after[k]).max() > 0}
  assert not any("conv1_1" in k for k in moved) and any("gru" in k for k in moved), sorted(moved)


def test_paper_values_recorded_for_a_paper_start(tmp_path):
  config, resolved = training.resolve_run("table3/cnn_rnn", str(tmp_path / "table3" / "cnn_rnn"),
                                       overrides=["train.num_steps=7"],
                                       paper=start.PaperWeights(affwildnet_vgg="/w/model.ckpt-9"))
  assert resolved.kind == "paper" and config.train.start == "paper" and config.train.num_steps == 7
  config, resolved = training.resolve_run("table3/cnn_rnn", str(tmp_path / "table3" / "cnn_rnn"),
                                       overrides=["train.learning_rate=0.0005"])
  # The user's overrides come after the recipe.
  assert resolved.kind == "scratch" and config.train.learning_rate == 0.0005
  assert config.train.warmup_steps == config.scratch_recipe.warmup_steps


@pytest.fixture
def restored_process():
  """Op determinism back as it was after the test (`training.configure_process(deterministic=True)` sets it)."""
  with training.restoring_process_settings():
    yield


@pytest.mark.slow
def test_loaded_layers_ramp_up_after_the_freeze(first_run, tmp_path, restored_process):
  """train.loaded_warmup_steps: the first thawed step moves a loaded layer 1/warmup as far as without the ramp."""
  import numpy as np

  root, data = first_run
  tiny = {"train.num_steps": 2, "train.checkpoint_every_steps": 100, "train.eval_every_steps": 0,
          "data.batch_size": 4, "train.warmup_steps": 0}
  moves = {}
  for ramp in (0, 4):
    config = tiny_backbone(start.apply(experiments.get("testing"), start.Start("scratch", (), ())),
                           {**tiny, "train.freeze_loaded_steps": 2, "train.num_steps": 3,
                            "train.loaded_lr_scale": 1.0, "train.fresh_lr_scale": 1.0,
                            "train.loaded_warmup_steps": ramp, "model.rnn_units": 6})
    training.configure_process(deterministic=True)
    trainer = training.Trainer(config, str(tmp_path / f"ramp{ramp}"), data, eval_split=None,
                            init_from=(str(root / "first"),), log=lambda s: None)
    kernel = trainer.model.get_layer("vgg16").get_layer("conv1_1").kernel
    trainer.train(num_steps=2)  # frozen: the loaded kernel does not move
    frozen = kernel.numpy().copy()
    trainer.train(num_steps=3)  # the first thawed step
    moves[ramp] = kernel.numpy() - frozen
  assert np.abs(moves[0]).max() > 0
  # float32: the step is a difference of weights ~1e4 times larger, exact to ~3e-8.
  np.testing.assert_allclose(moves[4], moves[0] / 4, rtol=1e-2, atol=1e-7)


def _op_types(concrete) -> set:
  """Every op type in a traced function, its nested functions (the GRU's loop bodies) included."""
  graph_def = concrete.graph.as_graph_def()
  return {n.op for n in graph_def.node} | {n.op for f in graph_def.library.function for n in f.node_def}


@pytest.mark.slow
def test_frozen_steps_take_no_gradient_through_the_loaded_layers(first_run, tmp_path, restored_process):
  """While frozen, the step's backward pass stops at the loaded layers; the fresh ones get their own gradients."""
  import numpy as np

  root, data = first_run
  tiny = {"train.num_steps": 1, "train.checkpoint_every_steps": 100, "train.eval_every_steps": 0,
          "data.batch_size": 2, "data.sequence_length": 4}
  scratch = start.apply(experiments.get("testing"), start.Start("scratch", (), ()))
  training.configure_process()
  # Other GRU sizes: the GRUs and the output start fresh, the backbone and FC load.
  config = tiny_backbone(scratch, {**tiny, "train.freeze_loaded_steps": 5, "model.rnn_units": 6})
  trainer = training.Trainer(config, str(tmp_path / "second"), data, eval_split=None,
                          init_from=(str(root / "first"),), log=lambda s: None)
  frozen = trainer._frozen  # pylint: disable=protected-access
  assert any(frozen) and not all(frozen)
  inputs, labels = next(trainer.iterator)
  # The fresh layers' gradients are those of the whole model's backward pass.
  variables = trainer.model.trainable_variables
  _, full = trainer.loss_and_gradients(inputs, labels, training=False)
  free = [v for v, f in zip(variables, frozen) if not f]
  _, part = trainer.loss_and_gradients(inputs, labels, training=False, variables=free)
  for got, want in zip(part, [g for g, f in zip(full, frozen) if not f]):
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-7)
  # The frozen step's graph has no convolution backward pass; the thawed step's has.
  step = trainer._train_step  # pylint: disable=protected-access
  assert not {"Conv2DBackpropFilter", "Conv2DBackpropInput"} & _op_types(step.get_concrete_function(inputs, labels, True))
  assert "Conv2DBackpropFilter" in _op_types(step.get_concrete_function(inputs, labels, False))
  before = [v.numpy().copy() for v in variables]
  step(inputs, labels, True)
  moved = [bool(np.abs(v.numpy() - b).max() > 0) for v, b in zip(variables, before)]
  assert moved == [not f for f in frozen]
