"""tf.distribute: exact global-batch CCC across replicas, two workers on loopback, precision and XLA switches.

The strategies need processes of their own (logical devices and collectives are fixed when
TensorFlow's runtime starts), so the distributed runs go through `tests/distributed_run.py`,
forked before the runtime starts with TensorFlow already imported (`tests/prelaunch.py`).
"""

import json
import os
import socket
import sys

import numpy as np
import pytest
import tensorflow as tf

sys.path.insert(0, os.path.dirname(__file__))
import fake_data  # noqa: E402
import prelaunch  # noqa: E402

from conftest import tiny  # noqa: E402
from omg_cnnrnn import configs, distribute, experiments, losses, training  # noqa: E402

RUNNER = os.path.join(os.path.dirname(__file__), "distributed_run.py")


def _env(**extra):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **extra)
  env.pop("TF_CONFIG", None)
  env.update(extra)
  return env


@pytest.mark.slow
def test_two_replicas_give_the_single_device_loss_and_gradients(tmp_path):
  out = tmp_path / "mirrored.json"
  proc = prelaunch.run([sys.executable, RUNNER, "mirrored", str(out)], env=_env(), timeout=600)
  assert proc.returncode == 0, proc.output()[-3000:]
  result = json.loads(out.read_text())
  assert result["replicas"] == 2
  # {B=2 (one sequence per replica), 4} x {mean, median, frame} x {ccc, mse}
  assert len(result["loss_cases"]) == 12
  for name, case in {**result["loss_cases"], **result["trainer_cases"]}.items():
    assert case["loss_diff"] < 1e-5, (name, case)
    assert case["grad_diff"] < 1e-5 * max(1.0, case["grad_scale"]), (name, case)
    assert case["grad_scale"] > 1e-3, (name, case)  # the gradients compared are not all ~0
  # The check is sensitive: averaging per-replica CCC losses would have been visibly different.
  for name, case in result["loss_cases"].items():
    if name.endswith("_ccc"):
      assert case["naive_diff"] > 1e-3, (name, case)
  # The Trainer ran a real step with one sequence per replica (global batch 2 over 2 replicas).
  assert result["trainer_cases"]["B2"]["per_replica_batch"] == 1
  assert result["trainer_cases"]["B2"]["step"] == 1
  assert np.isfinite(result["trainer_cases"]["B2"]["step_loss"])


def _free_ports(n):
  socks = [socket.socket() for _ in range(n)]
  for s in socks:
    s.bind(("localhost", 0))
  ports = [s.getsockname()[1] for s in socks]
  for s in socks:
    s.close()
  return ports


def _run_workers(data_dir, workdir, num_steps, out_dir):
  ports = _free_ports(2)
  cluster = {"worker": [f"localhost:{p}" for p in ports]}
  procs = []
  for i in range(2):
    tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
    procs.append(prelaunch.start(
        [sys.executable, RUNNER, "worker", data_dir, workdir, str(num_steps), os.path.join(out_dir, f"w{i}.npz")],
        env=_env(TF_CONFIG=tf_config)))
  logs = []
  for p in procs:
    try:
      p.wait(timeout=420)
    except TimeoutError:
      for q in procs:
        q.kill()
      raise
    logs.append(p.output())
  for p, log in zip(procs, logs):
    assert p.returncode == 0, log[-3000:]
  return [dict(np.load(os.path.join(out_dir, f"w{i}.npz"))) for i in range(2)], logs


@pytest.mark.slow
def test_two_workers_on_loopback_train_identical_weights_and_resume(tmp_path):
  data = str(tmp_path / "data")
  fake_data.write_split(data, "train", num_videos=3, seed=0)
  workdir = str(tmp_path / "wd")
  first, logs = _run_workers(data, workdir, 2, str(tmp_path))
  assert [bool(w["chief"]) for w in first] == [True, False]
  assert all(int(w["num_replicas"]) == 2 and int(w["step"]) == 2 for w in first)
  weights = sorted(k for k in first[0] if k.startswith("w"))
  for k in weights:
    np.testing.assert_array_equal(first[0][k], first[1][k])
  # The chief wrote the checkpoint and the logs; the other worker's scratch copy is gone.
  assert tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints")).endswith("ckpt-2")
  assert not os.path.exists(os.path.join(workdir, ".worker-1"))
  assert "step 2/2" in logs[0] and "step 2/2" not in logs[1]

  # Both processes killed (here: stopped) and restarted: every worker resumes from the chief's checkpoint.
  second, _ = _run_workers(data, workdir, 4, str(tmp_path))
  for w in second:
    assert str(w["resumed"]).endswith("ckpt-2") and int(w["start"]) == 2 and int(w["step"]) == 4
  for k in weights:
    np.testing.assert_array_equal(second[0][k], second[1][k])
  assert any(not np.array_equal(first[0][k], second[0][k]) for k in weights)  # it trained on


def test_cross_replica_sum_is_the_identity_on_one_device():
  x = tf.constant([[1.0, 2.0], [3.0, 4.0]])
  np.testing.assert_array_equal(distribute.cross_replica_sum(x).numpy(), x.numpy())


def test_strategy_errors_name_the_problem(monkeypatch):
  with pytest.raises(ValueError, match="unknown strategy"):
    distribute.make_strategy("tpu_pod")
  monkeypatch.delenv("TF_CONFIG", raising=False)
  with pytest.raises(ValueError, match="TF_CONFIG"):
    distribute.make_strategy("multi_worker")
  monkeypatch.setenv("TF_CONFIG", '{"cluster": {}}')
  with pytest.raises(ValueError, match="not a valid cluster spec"):
    distribute.make_strategy("multi_worker")
  with pytest.raises(ValueError, match="does not divide over 3 replicas"):
    distribute.per_replica_batch(4, type("S", (), {"num_replicas_in_sync": 3})())
  assert distribute.per_replica_batch(4, tf.distribute.get_strategy()) == 4
  with pytest.raises(ValueError, match="unknown precision"):
    distribute.set_precision("float8")


def test_train_dataset_shards_are_disjoint_and_cover_the_stream(tmp_path):
  from omg_cnnrnn.data import pipeline

  fake_data.write_split(str(tmp_path), "train", num_videos=2, seed=3)
  data_config = configs.override(experiments.get("testing"), {"data.shuffle_buffer": 1}).data

  def windows(shard, n):
    ds = pipeline.train_dataset(str(tmp_path), data_config, seed=5, batch_size=1, shard=shard)
    return [(x["frames"].numpy(), y.numpy()) for x, y in ds.take(n)]

  whole = windows(None, 12)
  parts = [windows((2, i), 6) for i in range(2)]
  # With no window shuffle, shard i is every 2nd window of the one-pipeline stream, from the
  # i-th: the workers' shards are disjoint positions of the same stream and together cover it.
  for i in range(2):
    for (frames, labels), (whole_frames, whole_labels) in zip(parts[i], whole[i::2]):
      np.testing.assert_array_equal(frames, whole_frames)
      np.testing.assert_array_equal(labels, whole_labels)
  assert not np.array_equal(parts[0][0][0], parts[1][0][0])


@pytest.mark.parametrize("precision,jit", [("mixed_bfloat16", False), ("mixed_float16", False),
                                           ("float32", True)])
@pytest.mark.slow
def test_precision_and_xla_switches_train(tmp_path, precision, jit):
  fake_data.write_split(str(tmp_path / "data"), "train", num_videos=2, seed=0)
  config = tiny(experiments.get("testing"), {
      "train.num_steps": 2, "train.checkpoint_every_steps": 2, "train.eval_every_steps": 0})
  try:
    training.configure_process(precision=precision)
    trainer = training.Trainer(config, str(tmp_path / "wd"), str(tmp_path / "data"), eval_split=None,
                            jit_compile=jit, log=lambda s: None)
    before = [w.numpy().copy() for w in trainer.model.trainable_weights]
    trainer.train()
    compute_dtype = trainer.model.get_layer("vgg16").get_layer("conv1_1").compute_dtype
    output = trainer.model({"frames": tf.zeros((1, 2, 32, 32, 3)), "mask": tf.ones((1, 2))})
  finally:
    distribute.set_precision("float32")  # The policy is process-wide: restore it for the other tests.
  assert compute_dtype == {"mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}.get(precision, "float32")
  assert output.dtype == tf.float32  # the output layer (and so the loss) stays float32
  assert all(w.dtype == tf.float32 for w in trainer.model.trainable_weights)  # master weights
  after = [w.numpy() for w in trainer.model.trainable_weights]
  assert int(trainer.step.numpy()) == 2
  assert sum(not np.array_equal(a, b) for a, b in zip(before, after)) > len(before) // 2
  assert all(np.all(np.isfinite(a)) for a in after)
  loss = losses.ccc_loss(tf.zeros((1, 2, 2)), tf.cast(output, tf.float16))
  assert loss.dtype == tf.float32
