"""The table scripts: one runs end to end in smoke mode (2 steps, tiny shapes) and the report it leaves
parses; every script's commands are checked in dry-run mode (DRY_RUN=1: printed, none run)."""

import csv
import json
import os
import shlex
import subprocess
import sys

import pytest

import cli_runner
import prelaunch
from omg_cnnrnn import experiments

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPORTED = [n for n in experiments.names() if experiments.get(n).table in ("III", "IV", "V", "VI")]


def _smoke(script, tmp_path, *rows, dry_run=False, python=sys.executable):
  env = {**os.environ, "SMOKE": "1", "SMOKE_DIR": str(tmp_path), "PYTHON": python,
         "TF_CPP_MIN_LOG_LEVEL": "3", "DRY_RUN": "1" if dry_run else "0"}
  env.pop("DRY_RUN_DONE", None)
  out = subprocess.run(["bash", os.path.join(REPO, "experiments", script), *rows], env=env, capture_output=True,
                       text=True, timeout=1200)
  assert out.returncode == 0, out.stderr[-3000:]
  return out


def _report(root):
  """results.csv by row name; it has exactly one row per registered experiment of Tables III-VI."""
  with open(root / "results.csv", newline="") as f:
    table = list(csv.DictReader(f))
  assert [r["row"] for r in table] == REPORTED
  assert (root / "results.md").read_text().count("\n| ") == len(REPORTED) + 1  # header + one line a row
  assert (root / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  return {r["row"]: r for r in table}


def _commands(out):
  """The commands a dry run printed ('+ ' lines of stderr), each as its argument list."""
  return [shlex.split(line[2:]) for line in out.stderr.splitlines() if line.startswith("+ ")]


def _flags(cmd):
  return {a.split("=", 1)[0]: a.split("=", 1)[1] for a in cmd if a.startswith("--") and "=" in a}


def _row(cmd):
  """The registered row a train command trains (its --experiment without the `:<variant>`), or None."""
  experiment = _flags(cmd).get("--experiment")
  return experiment and experiment.split(":")[0]


def test_table4_script_pretrains_each_row_then_warm_starts_and_evaluates_it(tmp_path):
  """Dry run of table4.sh: per row, Aff-Wild pretraining, OMG training from it, validation; then the summary."""
  out = _smoke("table4.sh", tmp_path, dry_run=True)
  assert not (tmp_path / "checkpoints").exists()  # nothing ran
  commands = [c for c in _commands(out) if "data_prep.synthesize" not in c[2] and "data_prep.prepare" not in c[2]]
  root = tmp_path / "checkpoints"
  expected = []
  for row in ("table4/cnn_only", "table4/cnn_rnn", "table4/cnn_fc_rnn"):
    expected += [("omg_cnnrnn.train", row, str(root / "affwild" / row), str(tmp_path / "data" / "affwild")),
                 ("omg_cnnrnn.train", row, str(root / row), str(tmp_path / "data" / "omg")),
                 ("omg_cnnrnn.evaluate", None, str(root / row), str(tmp_path / "data" / "omg"))]
  got = [(c[2], _row(c), _flags(c)["--workdir"], _flags(c)["--data_dir"])
         for c in commands[:-1]]
  assert got == expected
  for i in range(0, len(commands) - 1, 3):
    pretrain, omg, evaluate = commands[i:i + 3]
    assert _flags(pretrain)["--eval_split"] == "" and "--init_from" not in _flags(pretrain)
    # Pretrained on the (synthetic) Aff-Wild set first, then warm-started from it.
    assert _flags(omg)["--init_from"] == _flags(pretrain)["--workdir"]
    assert _flags(omg)["--eval_split"] == "validation"
    for cmd in (pretrain, omg):  # SMOKE=1: the row's smoke variant (two steps, 32x32), no overrides of its own
      assert _flags(cmd)["--experiment"] == _row(cmd) + ":smoke" and not any(a.startswith("--override") for a in cmd)
      assert experiments.get(_flags(cmd)["--experiment"]).train.num_steps == 2
      assert experiments.get(_flags(cmd)["--experiment"]).data.image_size == 32
    assert _flags(evaluate)["--output_dir"] == _flags(omg)["--workdir"] + "/eval_validation"
    assert _flags(evaluate)["--labels"] == str(tmp_path / "synthetic" / "omg" / "omg_ValidationVideos.csv")
  assert commands[-1][1:] == ["experiments/summary.py", f"--root={root}", "--table=IV"]


@pytest.mark.parametrize("script,table", [("table3.sh", "III"), ("table4.sh", "IV"), ("table5.sh", "V"),
                                          ("table6.sh", "VI")])
def test_table_script_dry_run_trains_or_evaluates_every_row_of_its_table(script, table, tmp_path):
  """Each script's default run reaches every registered row of its table, each row's training once."""
  out = _smoke(script, tmp_path, dry_run=True)
  commands = _commands(out)
  trained = [(_row(c), _flags(c)["--workdir"]) for c in commands if c[2:3] == ["omg_cnnrnn.train"]]
  assert len(trained) == len(set(trained)), "a workdir is trained twice"
  rows = [n for n in experiments.names() if experiments.get(n).table == table]
  if table == "VI":  # evaluation only, over each row's base run
    evaluated = [c for c in commands if c[2:3] == ["omg_cnnrnn.evaluate"]]
    assert sorted(_flags(c)["--postprocess_experiment"] for c in evaluated
                  if "--postprocess_experiment" in _flags(c)) == sorted(rows)
  else:
    assert set(rows) <= {row for row, _ in trained}
  assert commands[-1][1:] == ["experiments/summary.py", f"--root={tmp_path / 'checkpoints'}", f"--table={table}"]


def test_table5_script_trains_each_fused_row_the_ways_its_experiment_registers(tmp_path):
  """Dry run of table5.sh on one row: its branch rows (init.after) first, then one run per registered way
  (init.ways): from the branches' Aff-Wild pretraining runs, then from the row's own start."""
  row = "table5/vgg_fc_rnn_resnet_fc_rnn"
  out = _smoke("table5.sh", tmp_path, row, dry_run=True)
  root = tmp_path / "checkpoints"
  trains = [c for c in _commands(out) if c[2:3] == ["omg_cnnrnn.train"]]
  vgg, resnet = experiments.get(row).init.after
  assert (vgg, resnet) == ("table3/cnn_rnn", "table4/cnn_fc_rnn")
  fused = [c for c in trains if _row(c) == row]
  assert [_flags(c)["--workdir"] for c in fused] == [str(root / row / way.name)
                                                     for way in experiments.get(row).init.ways]
  assert [_flags(c)["--workdir"] for c in fused] == [str(root / row / "from_affwild"), str(root / row / "from_omg")]
  way_a, way_b = fused
  assert [a.split("=", 1)[1] for a in way_a if a.startswith("--init_from=")] == [
      str(root / "affwild" / vgg), str(root / "affwild" / resnet)]
  assert not any(a.startswith("--init_from=") for a in way_b)
  # The branch rows were trained (pretrained on Aff-Wild, then on OMG) before the fused row.
  first = trains.index(way_a)
  for branch in (vgg, resnet):
    assert (branch, str(root / "affwild" / branch)) in [(_row(c), _flags(c)["--workdir"]) for c in trains[:first]]
    assert (branch, str(root / branch)) in [(_row(c), _flags(c)["--workdir"]) for c in trains[:first]]
  evaluated = [_flags(c)["--workdir"] for c in _commands(out) if c[2:3] == ["omg_cnnrnn.evaluate"]]
  assert evaluated[-2:] == [str(root / row / "from_affwild"), str(root / row / "from_omg")]


def _prepare_smoke_data(script, tmp_path, *rows):
  """Runs in this process (tests/cli_runner.py) the data preparation a dry run of `script` prints for SMOKE=1
  (experiments/common.sh: synthesize, prepare_omg per split, prepare_affwild), so that the real run that
  follows finds the prepared set and starts no Python for it."""
  prep = [c for c in _commands(_smoke(script, tmp_path, *rows, dry_run=True)) if c[2].startswith("data_prep.")]
  assert [c[2] for c in prep] == ["data_prep.synthesize", "data_prep.prepare_omg", "data_prep.prepare_omg",
                                  "data_prep.prepare_affwild"]
  for cmd in prep:
    assert cmd[1] == "-m", cmd
    done = cli_runner.run(cmd[2], cmd[3:])
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_table6_script_smoke_mode_applies_the_rows_postprocessing(tmp_path):
  """The one table script run end to end (about a minute): Aff-Wild pretraining, OMG training from it, evaluation
  with post-processing, the report; the data preparation its SMOKE block prints runs first, in this process.

  The script's Python commands run in processes forked with TensorFlow and the package already imported
  (`PYTHON` is tests/prelaunch.py's stand-in): the script, its commands and their files are a real run's."""
  _prepare_smoke_data("table6.sh", tmp_path, "table6/vgg16_1rnn_post")
  prepared = {p: p.stat().st_mtime_ns for p in (tmp_path / "data").rglob("*") if p.is_file()}
  assert tmp_path / "data" / "omg" / "manifest.json" in prepared
  assert any(p.parent == tmp_path / "data" / "affwild" and p.suffix == ".tfrecord" for p in prepared)
  with prelaunch.python_stand_in(tmp_path) as python:
    out = _smoke("table6.sh", tmp_path, "table6/vgg16_1rnn_post", python=python)
  # The script used the set prepared above, untouched.
  assert {p: p.stat().st_mtime_ns for p in (tmp_path / "data").rglob("*") if p.is_file()} == prepared
  root = tmp_path / "checkpoints"
  for row in ("table3/cnn_only", "table3/cnn_1rnn"):  # the base row and the row it starts after
    workdir = root / row
    with open(workdir / "eval_validation" / "metrics.json") as f:
      assert set(json.load(f)["validation"]) >= {"valence_ccc", "arousal_ccc"}
    # Pretrained on the (synthetic) Aff-Wild set first, then warm-started from it.
    with open(workdir / "init_report.json") as f:
      assert json.load(f)["loaded"]
    assert (root / "affwild" / row / "checkpoints").is_dir()
  # Its network figures are numbers, not '-' (columns: table, row, variant, run, start, steps, paper V/A,
  # network V/A, post V/A, procedure).
  row, = [line for line in out.stdout.splitlines() if line.startswith("| VI | table6/vgg16_1rnn_post ")]
  assert row.split("|")[9].strip() != "-" and row.split("|")[10].strip() != "-"
  with open(root / "table6" / "vgg16_1rnn_post" / "eval_validation" / "metrics.json") as f:
    metrics = json.load(f)
  post = metrics["validation_postprocessed"]
  assert metrics["workdir"] == str(root / "table3" / "cnn_1rnn")
  assert post["postprocess_procedure"] == "paper" and "table6/vgg16_1rnn_post" in post["postprocess_source"]
  # The paper's procedure with the row's windows: two candidates per dimension, no search.
  assert set(post["postprocess"]["search"]["valence"]["median_window"]["reflect"]) == {"1", "81"}
  assert set(post["postprocess"]["search"]["arousal"]["median_window"]["reflect"]) == {"1", "3"}
  with open(root / "table6" / "vgg16_1rnn_post" / "base_run.json") as f:
    assert json.load(f)["workdir"] == str(root / "table3" / "cnn_1rnn")
  report = _report(root)
  r = report["table6/vgg16_1rnn_post"]
  assert r["postprocess"] == "paper" and r["start"] in ("paper", "scratch") and r["steps"] == "2"
  assert float(r["post_valence"]) == round(100 * post["valence_ccc"], 4)
  assert float(r["network_valence"]) == round(100 * metrics["validation_raw"]["valence_ccc"], 4)
  assert report["table6/vgg16_1rnn_released_post"]["variant"] == "released code"
  assert report["table3/cnn_1rnn"]["network_valence"] != "" and report["table3/cnn_only"]["network_valence"] != ""
  for name in ("table3/cnn_only", "table3/cnn_1rnn"):
    r = report[name]
    float(r["network_valence"]), float(r["network_arousal"])
    assert r["start"] in ("paper", "scratch") and r["steps"] == "2" and r["post_valence"] == r["postprocess"] == ""
  assert report["table4/cnn_rnn"]["paper_valence"] == "44.4000" and report["table3/cnn_rnn"]["network_valence"] == ""


def test_table_scripts_run_every_row_and_mark_the_released_variants():
  """Each table script's default rows are its table's registered rows, released-code variants included."""
  for script, table in (("table3.sh", "III"), ("table4.sh", "IV"), ("table5.sh", "V"), ("table6.sh", "VI")):
    text = open(os.path.join(REPO, "experiments", script)).read()
    for name in experiments.names():
      if experiments.get(name).table == table:
        assert name in text, f"{script} does not run {name}"
        if experiments.is_released_code(name):
          assert f"{name} " in text.split("source ")[0], f"{script}'s header does not list {name}"
  for script in ("table3.sh", "table6.sh"):
    assert "released-code variant" in open(os.path.join(REPO, "experiments", script)).read()
