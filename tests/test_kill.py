"""SIGKILL tests (part of issue 14, item 9): a killed export leaves a complete model, and a rerun ends as an
uninterrupted run does. The kill lands while the new SavedModel is being written beside the old one."""

import glob
import os
import signal
import subprocess
import sys
import time

import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(__file__))
import fake_data  # noqa: E402

from omg_cnnrnn import configs, experiments, train  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _outputs(path):
  frames = np.random.default_rng(0).integers(0, 256, (1, 3, 32, 32, 3), dtype=np.uint8)
  return tf.saved_model.load(path).signatures["serving_default"](frames=tf.constant(frames))["per_frame"].numpy()


def _export(workdir, export_dir, kill_when=None):
  cmd = [sys.executable, "-m", "omg_cnnrnn.export", f"--workdir={workdir}", f"--export_dir={export_dir}",
         "--which=latest"]
  proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  if kill_when is None:
    assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()[-2000:]
    return True
  deadline = time.time() + 300
  while proc.poll() is None and time.time() < deadline:
    if glob.glob(kill_when):
      proc.send_signal(signal.SIGKILL)
      proc.wait()
      return proc.returncode == -signal.SIGKILL
    time.sleep(0.002)
  proc.wait()
  return False  # finished before the point was seen


def test_export_killed_while_writing_leaves_the_old_model_and_a_rerun_completes(tmp_path):
  data = str(tmp_path / "records")
  fake_data.write_split(data, "train", num_videos=2, seed=0)
  config = configs.override(experiments.get("testing"), {"train.num_steps": 1, "train.eval_every_steps": 0})
  first, second = str(tmp_path / "first"), str(tmp_path / "second")
  train.Trainer(config, first, data, eval_split=None, log=lambda s: None).train()
  train.Trainer(config, second, data, seed=7, eval_split=None, log=lambda s: None).train()
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
