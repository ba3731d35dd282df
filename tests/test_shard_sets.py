"""Readers take a split's shards as one complete set; data prep locks its folder and sweeps stale temporaries."""

import fcntl
import json
import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import fake_data  # noqa: E402

from data_prep import common  # noqa: E402
from omg_cnnrnn.data import pipeline, read_prepared, records  # noqa: E402


def _names(paths):
  return [os.path.basename(p) for p in paths]


def test_a_complete_set_is_read_and_mixed_or_partial_sets_are_refused(tmp_path):
  data = str(tmp_path / "d")
  fake_data.write_split(data, "validation", num_videos=2, seed=1, num_shards=2)
  whole = ["validation-00000-of-00002.tfrecord", "validation-00001-of-00002.tfrecord"]
  assert _names(pipeline.shard_files(data, "validation")) == whole
  assert len(list(read_prepared(data, "validation"))) == 6

  # A second run with another shard count left its shards beside these: read twice otherwise.
  shutil.copy(os.path.join(data, whole[0]), os.path.join(data, "validation-00000-of-00003.tfrecord"))
  with pytest.raises(records.IncompleteShardsError, match=r"split 'validation' in .*: a mixed set, shards of 2 "
                                                          r"counts \(2 of -of-00002, 1 of -of-00003\)"):
    pipeline.shard_files(data, "validation")
  with pytest.raises(records.IncompleteShardsError, match="a mixed set"):
    read_prepared(data, "validation")
  os.remove(os.path.join(data, "validation-00000-of-00003.tfrecord"))

  # Half a set (a run killed while assembling, a job array still running): read half otherwise.
  os.rename(os.path.join(data, whole[1]), tmp_path / "aside")
  with pytest.raises(records.IncompleteShardsError, match=r"an incomplete set, 1 of 2 shards missing "
                                                          r"\(\['validation-00001-of-00002.tfrecord'\]\)"):
    pipeline.shard_files(data, "validation")
  os.rename(tmp_path / "aside", os.path.join(data, whole[1]))

  with open(os.path.join(data, "validation-extra.tfrecord"), "w") as f:
    f.write("x")
  with pytest.raises(records.IncompleteShardsError, match=r"\['validation-extra.tfrecord'\] are not shard names"):
    pipeline.shard_files(data, "validation")
  os.remove(os.path.join(data, "validation-extra.tfrecord"))

  # Where data prep's manifest lists the split's shards, the files must be exactly those.
  with open(os.path.join(data, records.MANIFEST), "w") as f:
    json.dump({"splits": {"validation": {"shards": ["validation-00000-of-00001.tfrecord"]}}}, f)
  with pytest.raises(records.IncompleteShardsError, match="differ from those .*manifest.json lists"):
    pipeline.shard_files(data, "validation")
  with open(os.path.join(data, records.MANIFEST), "w") as f:
    json.dump({"splits": {"validation": {"shards": whole}}}, f)
  assert _names(pipeline.shard_files(data, "validation")) == whole
  with pytest.raises(FileNotFoundError, match="no shards match"):
    pipeline.shard_files(data, "test")


def test_prepare_refuses_a_folder_another_run_holds(tmp_path):
  out = tmp_path / "out"
  out.mkdir()
  with open(out / common.RUN_LOCK, "a+") as held:
    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    held.write("pid 1 on elsewhere\n")
    held.flush()
    with pytest.raises(RuntimeError, match=f"{out}: another data-prep run is using this folder .*pid 1 on elsewhere"):
      common.run([], str(out), [], progress=False)
    with pytest.raises(RuntimeError, match="another data-prep run"):
      common.run([], str(out), [], progress=False, shard_index=0, num_shards=2)  # a job array too
  common.run([], str(out), [], progress=False)  # released: fine


def test_prepare_sweeps_temporaries_of_killed_runs_only_when_alone(tmp_path):
  out = tmp_path / "out"
  items = out / common.ITEMS_DIR / "train"
  items.mkdir(parents=True)
  stale = [out / ".train-00000-of-00001.tfrecord.k3j2.tmp", items / ".abc-1234.pb.x9.tmp"]
  for path in stale:
    path.write_bytes(b"half written")
  (out / "keep.tmp").write_bytes(b"not ours")  # not a temporary name of ours
  common.run([], str(out), [], progress=False, shard_index=1, num_shards=2)
  assert all(p.exists() for p in stale)  # a job array's other jobs may be writing them
  common.run([], str(out), [], progress=False)
  assert not any(p.exists() for p in stale) and (out / "keep.tmp").exists()


class _NoFace:
  def detect(self, frame):
    return []


def _items(keys, split="train"):
  return [common.Item(key=k, video=k, utterance="u.mp4", source=f"/nonexistent/{k}.mp4", dataset="omg", split=split,
                      row=i + 1, order=i) for i, k in enumerate(keys)]


def test_a_job_with_another_input_list_than_a_running_job_is_refused(tmp_path):
  out = tmp_path / "out"
  out.mkdir()
  first, other = _items(["a", "b", "c", "d"]), _items(["a", "b", "x"])
  # A job of an array over `first` is running (registered, holding its registration).
  with common._registered_inputs(str(out), first, 0, 2):
    with pytest.raises(RuntimeError, match=rf"{out}: split 'train' is being prepared from another input list by a "
                                           r"running job \(job 0 of 2, pid \d+ on .*: 4 inputs; this job has 3"):
      common.run(other, str(out), [], progress=False, shard_index=1, num_shards=2, detector=_NoFace())
    # Its sibling, given the same inputs, runs; so does a job of another split.
    manifest = common.run(first, str(out), [], progress=False, shard_index=1, num_shards=2, detector=_NoFace())
    assert manifest["splits"]["train"]["inputs"] == 4
    common.run(_items(["y"], split="validation"), str(out), [], progress=False, shard_index=0, num_shards=2,
               detector=_NoFace())
  # Once it has finished, another list replaces the split's (what a single job does too).
  manifest = common.run(other, str(out), [], progress=False, shard_index=1, num_shards=2, detector=_NoFace())
  assert manifest["splits"]["train"]["inputs"] == 3
  assert os.listdir(out / common.JOBS_DIR) == []  # registrations go with their jobs
  # A registration no job holds (a killed job's) is removed, not obeyed.
  (out / common.JOBS_DIR / "dead.json").write_text(json.dumps({"lists": common.input_lists(first), "job": "0 of 2"}))
  common.run(other, str(out), [], progress=False, shard_index=0, num_shards=2, detector=_NoFace())
  assert os.listdir(out / common.JOBS_DIR) == []


def test_nfs_mounts_without_shared_locks_are_named(tmp_path):
  mounts = tmp_path / "mounts"
  mounts.write_text("/dev/sda1 / ext4 rw,relatime 0 0\n"
                    "server:/export /data nfs4 rw,vers=4.2,local_lock=none 0 0\n"
                    "server:/old /data/old nfs rw,vers=3,nolock 0 0\n"
                    "server:/x /mnt/with\\040space nfs rw,vers=3,local_lock=all 0 0\n")
  assert common.node_local_locks("/home/me/prepared", str(mounts)) is None  # a local disk
  assert common.node_local_locks("/data/prepared", str(mounts)) is None  # NFSv4 with its locks
  warning = common.node_local_locks("/data/old/prepared", str(mounts))
  assert "/data/old/prepared is on an NFS mount (/data/old, nolock)" in warning and "one job array" in warning
  assert "local_lock=all" in common.node_local_locks("/mnt/with space/p", str(mounts))
  assert common.node_local_locks("/data/old", str(tmp_path / "no-such-file")) is None
