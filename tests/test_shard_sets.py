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
