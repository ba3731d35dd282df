"""The table scripts run end to end in smoke mode (2 steps, tiny shapes), and the report they leave parses."""

import csv
import json
import os
import subprocess
import sys

from omg_cnnrnn import experiments

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPORTED = [n for n in experiments.names() if experiments.get(n).table in ("III", "IV", "V", "VI")]


def _smoke(script, tmp_path, *rows):
  env = {**os.environ, "SMOKE": "1", "SMOKE_DIR": str(tmp_path), "PYTHON": sys.executable,
         "TF_CPP_MIN_LOG_LEVEL": "3"}
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


def test_table4_script_smoke_mode(tmp_path):
  out = _smoke("table4.sh", tmp_path)
  rows = [line for line in out.stdout.splitlines() if line.startswith("| IV |")]
  assert [r.split("|")[2].strip() for r in rows] == ["table4/cnn_only", "table4/cnn_rnn", "table4/cnn_fc_rnn"]
  for row in ("cnn_only", "cnn_rnn", "cnn_fc_rnn"):
    workdir = tmp_path / "checkpoints" / "table4" / row
    with open(workdir / "eval_validation" / "metrics.json") as f:
      metrics = json.load(f)["validation"]
    assert set(metrics) >= {"valence_ccc", "arousal_ccc"}
    # Pretrained on the (synthetic) Aff-Wild set first, then warm-started from it.
    with open(workdir / "init_report.json") as f:
      assert json.load(f)["loaded"]
    assert (tmp_path / "checkpoints" / "affwild" / "table4" / row / "checkpoints").is_dir()
  # Every network figure is a number, not '-' (columns: table, row, variant, run, start, steps, paper V/A,
  # network V/A, post V/A, procedure).
  assert all(r.split("|")[9].strip() != "-" and r.split("|")[10].strip() != "-" for r in rows)
  report = _report(tmp_path / "checkpoints")
  for name in ("table4/cnn_only", "table4/cnn_rnn", "table4/cnn_fc_rnn"):
    r = report[name]
    float(r["network_valence"]), float(r["network_arousal"])
    assert r["start"] in ("paper", "scratch") and r["steps"] == "2" and r["post_valence"] == r["postprocess"] == ""
  assert report["table4/cnn_rnn"]["paper_valence"] == "44.4000" and report["table3/cnn_rnn"]["network_valence"] == ""


def test_table6_script_smoke_mode_applies_the_rows_postprocessing(tmp_path):
  _smoke("table6.sh", tmp_path, "table6/vgg16_1rnn_post")
  root = tmp_path / "checkpoints"
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
