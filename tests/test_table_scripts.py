"""The table scripts run end to end in smoke mode (every row of Table IV, 2 steps, tiny shapes)."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_table4_script_smoke_mode(tmp_path):
  env = {**os.environ, "SMOKE": "1", "SMOKE_DIR": str(tmp_path), "PYTHON": sys.executable,
         "TF_CPP_MIN_LOG_LEVEL": "3"}
  out = subprocess.run(["bash", os.path.join(REPO, "experiments", "table4.sh")], env=env, capture_output=True,
                       text=True, timeout=1200)
  assert out.returncode == 0, out.stderr[-3000:]
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
  # Every row value is a number, not '-'.
  assert all(r.split("|")[5].strip() != "-" for r in rows)
