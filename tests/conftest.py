"""Shared pytest set-up: quiet TensorFlow, deterministic seeds, the shared/ folder, tiny models.

Test tiers (pytest.ini): tests marked `slow` (training runs, SavedModel and TFLite exports and the
tests that load them, full-size models beyond a few representatives, SIGKILL runs of the command
lines, tf.distribute, the end-to-end table script) run in `make test`; `pytest -m "not slow"`
(`make test-fast`) leaves them out for the edit-test loop: every module's cheap tests, one training
run, one TF1 parity check, the VGG-16 rows' forward passes and three pinned full-size counts.

Speed: each model a test run needs is built once (the session-scoped fixtures below, shared
read-only: a test that changes one copies it first), and tests not about VGG-16 itself use the
1/16-width backbone of `tiny()`.
"""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# As the Makefile: tf.keras is tf_keras, so `import tensorflow` skips Keras 3 (0.8 s of every
# process start here, the tests' subprocesses included: they inherit the environment).
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


def _threads_per_worker() -> int | None:
  """TensorFlow threads for each pytest-xdist worker: its share of the cores; None outside xdist.

  TensorFlow sizes its intra-op and inter-op pools to every core in each process; with more workers
  than cores their idle threads spin for work the tiny test models seldom have. One thread each on
  2 cores, 3 workers: the whole suite 318 -> 297 s and 311 -> 282 s, two back-to-back pairs (README,
  Contributing).
  """
  workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
  if workers < 1:
    return None
  from omg_cnnrnn import hardware  # no TensorFlow

  return max(1, hardware.usable_cores() // workers)


_THREADS = _threads_per_worker()
if _THREADS:
  # Before TensorFlow starts its pools; the tests' subprocesses inherit it. A value set by the user stands.
  for _name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
    os.environ.setdefault(_name, str(_THREADS))

import pytest  # noqa: E402

from omg_cnnrnn import experiments  # noqa: E402  (the registry only: no TensorFlow)

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_OMG = REPO.parent / "shared" / "omg"

# Channel multiplier of the VGG-16 backbone in tests that are not about VGG-16 itself: 1/16 of
# Table I's widths (conv1 4 ... conv5 32 channels), every layer and tap still there, so a step
# costs milliseconds instead of the full backbone's 15 M parameters (StreamConfig.backbone_width);
# the same width as the table scripts' smoke variant.
TINY_WIDTH = experiments.TINY_BACKBONE_WIDTH


def tiny(config, overrides=None):
  """`config` (an ExperimentConfig) with every stream's backbone at TINY_WIDTH, then `overrides`.

  Streams given in `overrides["model.streams"]` get TINY_WIDTH too unless they set their own.
  """
  from omg_cnnrnn import configs

  overrides = dict(overrides or {})
  streams = overrides.pop("model.streams", None)
  if streams is None:
    streams = [{**s, "backbone_width": TINY_WIDTH} for s in config.to_dict()["model"]["streams"]]
  else:
    streams = [{"backbone_width": TINY_WIDTH, **s} for s in streams]
  return configs.override(config, {"model.streams": streams, **overrides})


@pytest.fixture(scope="session")
def predict_model(tmp_path_factory):
  """The prediction tests' model, built once per run and shared read-only.

  `predict_helpers.config()` (the tiny testing row) at seed 0 as (Keras model, config, SavedModel
  path, workdir path); the SavedModel and the workdir hold the Keras model's weights.
  """
  import predict_helpers as helpers
  import tensorflow as tf
  from omg_cnnrnn import serving

  config = helpers.config()
  model = helpers.model(config)
  root = tmp_path_factory.mktemp("predict_model")
  saved = serving.export_saved_model(model, config, str(root / "saved_model"))
  workdir = root / "workdir"
  tf.train.Checkpoint(model=model).write(str(workdir / "best" / "model"))
  (workdir / "config.json").write_text(config.to_json())
  return model, config, saved, str(workdir)


@pytest.fixture
def omg_labels_dir():
  """The real OMG-Emotion label files beside the checkout; skips where they are absent."""
  if not (SHARED_OMG / "omg_TrainVideos.csv").exists():
    pytest.skip(f"real OMG label files not found at {SHARED_OMG}")
  return SHARED_OMG


# The longest tests, longest first (measured with --durations, README "Contributing"); everything
# else keeps pytest's order (one module after another). Under pytest-xdist (`-n N`) the tests are
# shared by work stealing (`--dist worksteal`, set below unless --dist is given): each worker starts
# on a contiguous share of this order (the first worker's holds all the longest tests, run one after
# another), and a worker that runs out takes the second half of the longest queue, so the workers
# end together and a module's tests mostly stay on one worker (its module fixtures built once).
# Dealing the longest tests out over the workers' shares instead was no faster (360 s against 351 s
# for the whole suite on 2 cores, 3 workers: more module fixtures built twice). `--dist load`,
# `-n`'s default, hands each worker a quarter of its share up front, all the longest tests to one.
LONGEST_FIRST = (
    "test_kill.py::test_train_killed",
    "test_table_scripts.py::test_table6_script_smoke_mode_applies_the_rows_postprocessing",
    "test_prepare.py::test_a_dead_worker",
    "test_learning.py::",
    "test_kill.py::test_export_killed",
    "test_start.py::test_loaded_layers_ramp_up",
    "test_distribute.py::test_two_workers",
    "test_distribute.py::test_two_replicas",
    "test_kill.py::test_evaluate_killed",
    "test_prepare.py::test_command_line_with_workers",
    "test_tf1.py::test_command_writes",
    "test_kill.py::test_prepare_killed",
)


def _rank(item):
  name = item.nodeid.rsplit("/", 1)[-1]
  return next((i for i, prefix in enumerate(LONGEST_FIRST) if name.startswith(prefix)), len(LONGEST_FIRST))


def pytest_collection_modifyitems(config, items):
  items.sort(key=_rank)  # stable: the rest in collection order


def pytest_configure(config):
  if not config.pluginmanager.hasplugin("xdist") or getattr(config.option, "dist", "no") != "load":
    return
  given = [*config.invocation_params.args, *config.getini("addopts"), *os.environ.get("PYTEST_ADDOPTS", "").split()]
  if not any(a.startswith("--dist") or a == "-d" for a in given):  # `-n N` alone: its default, load
    config.option.dist = "worksteal"
