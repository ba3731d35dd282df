"""Prints a markdown table of paper vs reproduced CCC for the runs under a checkpoint root.

    python experiments/summary.py --root=checkpoints [--table=III]

Reads `<root>/<row>/eval_validation/metrics.json` (Table V: `<row>/from_affwild` and
`<row>/from_omg`; Table VI: the post-processed metrics of `<root>/<row>/eval_validation`).
CCC is shown x 100 like the paper; a row with no run yet shows '-'. `start` is the start the
run's config.json recorded: `paper` (the paper's weights and values) or `scratch` (the
from-scratch recipe, `omg_cnnrnn.start`).
"""

from __future__ import annotations

import json
import os

from absl import app, flags

from omg_cnnrnn import experiments

FLAGS = flags.FLAGS
flags.DEFINE_string("root", "checkpoints", "Checkpoint root the table scripts wrote to.")
flags.DEFINE_string("table", "", "Only this table (III, IV, V, VI); default all.")
flags.DEFINE_string("split", "validation", "Split whose metrics to show.")


def _fmt(value):
  return "-" if value is None else f"{value:.2f}"


def runs_of(root: str, name: str) -> list[tuple[str, str]]:
  """(label, workdir) of the runs of one row."""
  config = experiments.get(name)
  base = os.path.join(root, name)
  if config.table == "V":
    return [(f"{name} ({way})", os.path.join(base, way)) for way in ("from_affwild", "from_omg")]
  return [(name, base)]


def read_metrics(workdir: str, split: str) -> dict | None:
  path = os.path.join(workdir, f"eval_{split}", "metrics.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f).get(split)


def read_start(workdir: str) -> str:
  """'paper' or 'scratch' (the recipe), as the run's config.json recorded it; '-' without a run."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return "-"
  with open(path) as f:
    return json.load(f).get("train", {}).get("start", "paper")


def rows(root: str, table: str = "", split: str = "validation") -> list[dict]:
  out = []
  for name in experiments.names():
    config = experiments.get(name)
    if config.table in ("-",) or (table and config.table != table):
      continue
    for label, workdir in runs_of(root, name):
      m = read_metrics(workdir, split)
      out.append({
          "row": label, "table": config.table, "paper_valence": config.paper_ccc_valence,
          "paper_arousal": config.paper_ccc_arousal,
          "valence": None if m is None else 100 * m["valence_ccc"],
          "arousal": None if m is None else 100 * m["arousal_ccc"],
          "start": read_start(workdir),
      })
  return out


def main(argv):
  del argv
  print("| table | row | start | paper V | paper A | reproduced V | reproduced A |")
  print("|---|---|---|---|---|---|---|")
  for r in rows(FLAGS.root, FLAGS.table, FLAGS.split):
    print(f"| {r['table']} | {r['row']} | {r['start']} | {_fmt(r['paper_valence'])} | {_fmt(r['paper_arousal'])} | "
          f"{_fmt(r['valence'])} | {_fmt(r['arousal'])} |")


if __name__ == "__main__":
  app.run(main)
