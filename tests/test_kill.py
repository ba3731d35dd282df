"""SIGKILL tests (issue 14, item 9): export, train, evaluate and prepare_omg, each killed and rerun.

Each command line runs as a process of its own, is killed with SIGKILL at several points (a file
appearing, a count of finished items, a moment into start-up) and run again; the final
outputs must equal an uninterrupted run's: the same model, the same weights on CPU, the
same metrics and CSVs, byte-identical shards, every utterance once.
"""

import glob
import json
import os
import signal
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

sys.path.insert(0, os.path.dirname(__file__))
import fake_data  # noqa: E402

import cli_runner  # noqa: E402
import prelaunch  # noqa: E402
from conftest import tiny  # noqa: E402
from omg_cnnrnn import experiments, training  # noqa: E402
from omg_cnnrnn import workdir as workdir_lib  # noqa: E402

# Each test starts its command line 1 to 5 times as a process of its own, the runs it kills, forked with
# TensorFlow and the package already imported (tests/prelaunch.py); the runs it does not kill, the
# references and the final reruns, run in this process (tests/cli_runner.py): a minute on 2 cores. The models
# are the testing row with the 1/16-width VGG (conftest.tiny): these tests are about resuming.
pytestmark = pytest.mark.slow


def _outputs(path):
  frames = np.random.default_rng(0).integers(0, 256, (1, 3, 32, 32, 3), dtype=np.uint8)
  return tf.saved_model.load(path).signatures["serving_default"](frames=tf.constant(frames))["per_frame"].numpy()


def _in_process(cmd):
  """A run that is not killed: the command line in this process (tests/cli_runner.py), no start-up to pay."""
  done = cli_runner.run(cmd[2], cmd[3:])
  assert done.returncode == 0, done.stderr[-3000:]


def _export(workdir, export_dir, kill_when=None):
  cmd = [sys.executable, "-m", "omg_cnnrnn.export", f"--workdir={workdir}", f"--export_dir={export_dir}",
         "--which=latest"]
  if kill_when is None:
    _in_process(cmd)
    return True
  proc = prelaunch.start(cmd, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
  deadline = time.time() + 300
  while proc.poll() is None and time.time() < deadline:
    if glob.glob(kill_when):
      proc.send_signal(signal.SIGKILL)
      proc.wait(60)
      return proc.returncode == -signal.SIGKILL
    time.sleep(0.002)
  proc.wait(60)
  return False  # finished before the point was seen


def test_export_killed_while_writing_leaves_the_old_model_and_a_rerun_completes(tmp_path):
  data = str(tmp_path / "records")
  fake_data.write_split(data, "train", num_videos=2, seed=0)
  config = tiny(experiments.get("testing"), {"train.num_steps": 1, "train.eval_every_steps": 0})
  first, second = str(tmp_path / "first"), str(tmp_path / "second")
  training.configure_process()
  training.Trainer(config, first, data, eval_split=None, log=lambda s: None).train()
  training.configure_process(seed=7)
  training.Trainer(config, second, data, seed=7, eval_split=None, log=lambda s: None).train()
  export_dir = str(tmp_path / "sm")
  _export(first, export_dir)
  old = _outputs(export_dir)
  _export(second, str(tmp_path / "uninterrupted"))
  new = _outputs(str(tmp_path / "uninterrupted"))
  assert not np.allclose(old, new)

  killed = _export(second, export_dir, kill_when=str(tmp_path / ".sm.new-*" / "variables"))
  assert killed, "the export finished before the kill point"
  np.testing.assert_array_equal(_outputs(export_dir), old)  # the old model, complete, still in place
  assert glob.glob(str(tmp_path / ".sm.new-*"))  # the half-written new one, beside it

  _export(second, export_dir)  # the rerun sweeps it and swaps the new one in
  np.testing.assert_allclose(_outputs(export_dir), new, rtol=0, atol=0)
  assert sorted(n for n in os.listdir(tmp_path) if n.startswith(".sm.")) == []


# ------------------------------------------------------------------ train, evaluate, prepare
def _run(cmd, kill_when=None, timeout=600):
  """Runs a command line; with `kill_when` (a test of the files), SIGKILLs it once that holds.

  Returns True if it was killed, False if it ended first (asserted to have succeeded when
  no kill was asked for). A run that is not killed runs in this process.
  """
  if kill_when is None:
    _in_process(cmd)
    return False
  proc = prelaunch.start(cmd, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
  deadline = time.time() + timeout
  while proc.poll() is None and time.time() < deadline:
    if kill_when():
      proc.send_signal(signal.SIGKILL)
      proc.wait(60)
      return True
    time.sleep(0.002)
  proc.wait(timeout=max(1.0, deadline - time.time()))  # ended before its kill point: the caller counts
  return False


def _exists(pattern):
  return lambda: bool(glob.glob(pattern))


def _validated(path, step):
  """True once the history holds a validation row for `step` (whole lines only: one may be mid-write)."""
  def seen():
    try:
      with open(path) as f:
        lines = [line for line in f if line.endswith("\n")]
    except OSError:
      return False
    return any(row["step"] == step and row["split"] != "train" for row in map(json.loads, lines))
  return seen


def _after(seconds):
  """True from `seconds` after it was made: a kill during start-up."""
  t0 = time.time()
  return lambda: time.time() - t0 >= seconds


def _train_cmd(workdir, data):
  streams = tiny(experiments.get("testing")).to_dict()["model"]["streams"]
  overrides = {"train.num_steps": 8, "train.checkpoint_every_steps": 2, "train.eval_every_steps": 2,
               "model.streams": streams}
  return ([sys.executable, "-m", "omg_cnnrnn.train", "--experiment=testing", f"--workdir={workdir}",
           f"--data_dir={data}", "--deterministic", "--seed=3"] + [f"--override={k}={v}" for k, v in overrides.items()])


def _best_json(workdir):
  with open(os.path.join(workdir, "best.json")) as f:
    best = json.load(f)
  best.pop("weights")  # the prefix's number counts saves, which a resumed run repeats
  return best


def test_train_killed_at_several_points_resumes_to_the_uninterrupted_weights(tmp_path):
  data = str(tmp_path / "records")
  fake_data.write_split(data, "train", num_videos=3, seed=0)
  fake_data.write_split(data, "validation", num_videos=2, seed=1)
  whole, killed = str(tmp_path / "whole"), str(tmp_path / "killed")
  _run(_train_cmd(whole, data))
  points = [_exists(os.path.join(killed, "checkpoints", "ckpt-2.index")),  # between checkpoints
            _exists(os.path.join(killed, "best", "*temp*")),  # while best weights are written
            # Later, after step 6's validation (8 steps in all). Not a count of history lines: the
            # count a rerun reaches depends on where the earlier kills landed (each rerun repeats the
            # steps after its checkpoint), and under load it could be reached only as the run ended.
            # A rerun that starts with the row already there is killed in start-up, which also counts.
            _validated(os.path.join(killed, "history.jsonl"), 6)]
  landed = [_run(_train_cmd(killed, data), kill_when=point) for point in points]
  assert landed[0] and landed[2], landed  # the second lands if the poll sees the write
  _run(_train_cmd(killed, data))  # finishes the run
  for which in ("latest", "best"):
    a, _ = workdir_lib.load_workdir_model(whole, which=which)
    b, _ = workdir_lib.load_workdir_model(killed, which=which)
    assert len(a.weights) == len(b.weights)
    for x, y in zip(a.weights, b.weights):
      np.testing.assert_array_equal(x.numpy(), y.numpy(), err_msg=f"{which} {x.name}")
  assert _best_json(whole) == _best_json(killed)
  # One set of best weights, none half-written (the prefix's number counts saves, which differ).
  assert len([n for n in os.listdir(os.path.join(killed, "best")) if n.endswith(".index")]) == 1
  assert len(os.listdir(os.path.join(killed, "best"))) == len(os.listdir(os.path.join(whole, "best")))


def _files(folder):
  return {name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))}


def test_evaluate_killed_at_several_points_leaves_complete_outputs_and_a_rerun_matches(tmp_path):
  data = str(tmp_path / "records")
  fake_data.write_split(data, "train", num_videos=2, seed=0)
  labels = fake_data.write_split(data, "validation", num_videos=3, seed=1)
  labels.to_csv(tmp_path / "labels.csv", index=False)
  config = tiny(experiments.get("testing"), {"train.num_steps": 2, "train.eval_every_steps": 2})
  workdir = str(tmp_path / "wd")
  training.configure_process()
  training.Trainer(config, workdir, data, log=lambda s: None).train()

  def cmd(out):
    return [sys.executable, "-m", "omg_cnnrnn.evaluate", f"--workdir={workdir}", f"--data_dir={data}",
            "--split=validation", f"--output_dir={out}", f"--labels={tmp_path / 'labels.csv'}", "--tune_postprocess"]

  reference, out = str(tmp_path / "reference"), str(tmp_path / "out")
  _run(cmd(reference))
  choice = open(os.path.join(workdir, "postprocess.json"), "rb").read()
  points = [_after(0.5), _exists(os.path.join(out, ".evaluate-*.tmp")),
            _exists(os.path.join(out, ".evaluate-*.tmp", "predictions_validation.csv")),
            _exists(os.path.join(out, "frame_predictions_validation.csv"))]
  landed = []
  for point in points:
    landed.append(_run(cmd(out), kill_when=point))
    # Whatever the kill left: no metrics.json, or one whose listed files are all there.
    if os.path.exists(os.path.join(out, "metrics.json")):
      with open(os.path.join(out, "metrics.json")) as f:
        listed = json.load(f)["files"]
      assert all(os.path.exists(os.path.join(out, name)) for name in listed)
    assert open(os.path.join(workdir, "postprocess.json"), "rb").read() == choice
  assert sum(landed) >= 2, landed
  _run(cmd(out))
  assert _files(out) == _files(reference)  # the staging folders of killed runs are swept
  assert open(os.path.join(workdir, "postprocess.json"), "rb").read() == choice


def test_prepare_killed_at_several_points_resumes_to_identical_shards(tmp_path):
  import pandas as pd

  from data_prep import synthesize
  from omg_cnnrnn.data import read_prepared

  synthesize.synthesize(str(tmp_path / "synth"), seed=5, preset="smoke")
  csv = tmp_path / "synth" / "omg" / "omg_TrainVideos.csv"

  def cmd(out):
    return [sys.executable, "-m", "data_prep.prepare_omg", f"--labels={csv}",
            f"--videos={tmp_path / 'synth' / 'omg' / 'videos'}", f"--output_dir={out}", "--output_shards=2",
            "--noprogress"]

  whole, out = str(tmp_path / "whole"), str(tmp_path / "out")
  _run(cmd(whole))
  rows = os.path.join(out, ".items", "train", "*.json")
  n = len(pd.read_csv(csv))
  points = [_after(0.5),
            lambda: len(glob.glob(rows)) >= 1,  # one item done
            lambda: len(glob.glob(rows)) >= n // 2 + 1,  # more than half done
            _exists(os.path.join(out, ".items", "train", ".*.tmp")),  # while an item's record is written
            _exists(os.path.join(out, "train-*.tfrecord"))]  # assembling the shards
  landed = [_run(cmd(out), kill_when=point) for point in points]
  assert sum(landed) >= 3, landed
  _run(cmd(out))
  names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(whole, "*.tfrecord")))
  assert names == sorted(os.path.basename(p) for p in glob.glob(os.path.join(out, "*.tfrecord"))) and names
  for name in names:
    assert open(os.path.join(whole, name), "rb").read() == open(os.path.join(out, name), "rb").read(), name
  table = pd.read_csv(csv)
  keys = [(u["video"], u["utterance"]) for u in read_prepared(out, "train")]
  assert keys == list(zip(table["video"], table["utterance"]))  # every utterance, once, in order
  with open(os.path.join(out, "manifest.json")) as f:
    manifest = json.load(f)
  assert manifest["splits"]["train"]["prepared"] == n and manifest["splits"]["train"]["pending"] == 0
  assert not [p for p in glob.glob(os.path.join(out, "**", ".*.tmp"), recursive=True)]
