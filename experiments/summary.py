"""Paper vs reproduced CCC for every registered row (Tables III-VI): a markdown table and a report.

    python experiments/summary.py --root=checkpoints [--table=III] [--report_dir=checkpoints]

Reads what the table scripts leave under `--root`: `<root>/<row>/eval_validation/metrics.json`
(Table V: one run per training way, `<row>/from_affwild` and `<row>/from_omg`; Table VI: the
evaluation in `<root>/<row>/eval_validation` of the base run it post-processed), and each
run's `config.json` (its start) and `best.json` (the step of the weights evaluated).

Prints the table's rows (all tables, or `--table`) as markdown, and writes the report for
all of Tables III-VI into `--report_dir` (default: the root; empty: not written):
- `results.csv`: one row per registered experiment: table, row, variant (the paper's text or
  the authors' released code), run (Table V: the better training way on validation, which
  Table VI's fused row also post-processes), start (`paper`: the paper's weights and values;
  `scratch`: the from-scratch recipe, `omg_cnnrnn.start`), steps (configured) and best_step
  (of the weights evaluated), the paper's CCC, the reproduced CCC of the network and after
  post-processing (x 100 like the paper; empty where not run), and the post-processing
  procedure that produced the post-processed figure (`omg_cnnrnn.postprocess.PROCEDURES`)
  with the steps it kept;
- `results.md`: the same as a markdown table, with how to regenerate it;
- `results.png`: paper vs reproduced CCC per row, valence and arousal.
"""

from __future__ import annotations

import csv
import io
import json
import os

from absl import app, flags

from omg_cnnrnn import atomic, experiments, postprocess
from omg_cnnrnn import runs as runs_lib  # `runs` is a local name here.

FLAGS = flags.FLAGS
flags.DEFINE_string("root", "checkpoints", "Checkpoint root the table scripts wrote to.")
flags.DEFINE_string("table", "", "Print only this table (III, IV, V, VI); the report always has all.")
flags.DEFINE_string("split", "validation", "Split whose metrics to show.")
flags.DEFINE_string("report_dir", None, "Where results.md/.csv/.png go (default: --root; '' = no report).")

TABLES = ("III", "IV", "V", "VI")
COLUMNS = ("table", "row", "paper_row", "variant", "run", "start", "steps", "best_step", "paper_valence",
           "paper_arousal", "network_valence", "network_arousal", "post_valence", "post_arousal", "postprocess",
           "postprocess_kept")


def _fmt(value):
  return "-" if value is None or value == "" else f"{value:.2f}"


def _read_json(path: str) -> dict | None:
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def read_metrics(workdir: str, split: str) -> dict | None:
  """The whole metrics.json of a run's evaluation on `split`, or None."""
  return _read_json(os.path.join(workdir, f"eval_{split}", "metrics.json"))


def read_start(workdir: str) -> str:
  """'paper' or 'scratch' (the recipe), as the run's config.json recorded it; '-' without a run."""
  config = _read_json(os.path.join(workdir, "config.json"))
  return "-" if config is None else config.get("train", {}).get("start", "paper")


def read_steps(workdir: str) -> tuple[int | None, int | None]:
  """(configured training steps, step of the best weights) of a run; None where unknown."""
  config = _read_json(os.path.join(workdir, "config.json")) or {}
  best = _read_json(os.path.join(workdir, "best.json")) or {}
  return config.get("train", {}).get("num_steps"), best.get("step")


def _kept(choice: dict) -> str:
  """The steps a post-processing choice kept, per dimension, e.g. 'V: median 81; A: smoothing k=80'."""
  parts = []
  for d, dim in enumerate(postprocess.DIMS):
    steps = []
    if choice["median_window"][d] > 1:
      steps.append(f"median {choice['median_window'][d]}")
    if choice["smoothing_k"][d] > 0:
      steps.append(f"smoothing k={choice['smoothing_k'][d]:g}")
    parts.append(f"{dim[0].upper()}: {', '.join(steps) or 'none'}")
  return "; ".join(parts)


def _run_of(root: str, name: str, split: str) -> tuple[str, str, dict | None]:
  """(run label, workdir whose training is reported, metrics.json) of one registered row."""
  config = experiments.get(name)
  if config.table == "VI":
    metrics = read_metrics(os.path.join(root, name), split)
    decision = _read_json(os.path.join(root, name, "base_run.json")) or {}
    workdir = (metrics or {}).get("workdir") or decision.get("workdir") or ""
    return decision.get("run", ""), workdir, metrics
  runs = runs_lib.run_workdirs(root, name)
  if len(runs) > 1:
    try:
      label, _ = runs_lib.better_run(runs, split)
    except FileNotFoundError:
      label = ""
  else:
    label = next(iter(runs))
  workdir = runs[label] if label in runs else ""
  return label, workdir, read_metrics(workdir, split) if workdir else None


def rows(root: str, table: str = "", split: str = "validation") -> list[dict]:
  """One report row per registered experiment of Tables III-VI (or of `table`), in registry order."""
  out = []
  for name in experiments.names():
    config = experiments.get(name)
    if config.table not in TABLES or (table and config.table != table):
      continue
    run, workdir, m = _run_of(root, name, split)
    raw = None if m is None else m.get(f"{split}_raw", m.get(split))
    post = None if m is None else m.get(f"{split}_postprocessed")
    steps, best_step = read_steps(workdir) if workdir else (None, None)
    out.append({
        "table": config.table, "row": name, "paper_row": config.row,
        "variant": "released code" if experiments.is_released_code(name) else "paper",
        "run": run, "start": read_start(workdir) if workdir else "-", "steps": steps, "best_step": best_step,
        "paper_valence": config.paper_ccc_valence, "paper_arousal": config.paper_ccc_arousal,
        "network_valence": None if raw is None else 100 * raw["valence_ccc"],
        "network_arousal": None if raw is None else 100 * raw["arousal_ccc"],
        "post_valence": None if post is None else 100 * post["valence_ccc"],
        "post_arousal": None if post is None else 100 * post["arousal_ccc"],
        # A saved choice from before procedures were recorded came from the wider search.
        "postprocess": "" if post is None else post.get("postprocess_procedure",
                                                         post.get("postprocess", {}).get("procedure", "search")),
        "postprocess_kept": "" if post is None or "postprocess" not in post else _kept(post["postprocess"]),
    })
  return out


def markdown(report: list[dict]) -> list[str]:
  """The report rows as markdown table lines."""
  lines = ["| table | row | variant | run | start | steps | paper V | paper A | network V | network A | "
           "post V | post A | post-processing (kept) |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in report:
    steps = "-" if r["steps"] is None else f"{r['best_step']}/{r['steps']}"
    post = "-" if not r["postprocess"] else f"{r['postprocess']} ({r['postprocess_kept']})"
    lines.append(f"| {r['table']} | {r['row']} | {r['variant']} | {r['run'] or '-'} | {r['start']} | {steps} | "
                 f"{_fmt(r['paper_valence'])} | {_fmt(r['paper_arousal'])} | {_fmt(r['network_valence'])} | "
                 f"{_fmt(r['network_arousal'])} | {_fmt(r['post_valence'])} | {_fmt(r['post_arousal'])} | {post} |")
  return lines


def write_report(report: list[dict], report_dir: str, root: str, split: str) -> dict[str, str]:
  """Writes results.csv, results.md and results.png; returns their paths."""
  os.makedirs(report_dir, exist_ok=True)
  paths = {k: os.path.join(report_dir, f"results.{k}") for k in ("csv", "md", "png")}
  table = io.StringIO(newline="")
  writer = csv.DictWriter(table, fieldnames=COLUMNS)
  writer.writeheader()
  for r in report:
    writer.writerow({k: "" if r[k] is None else (f"{r[k]:.4f}" if isinstance(r[k], float) else r[k])
                     for k in COLUMNS})
  atomic.write_atomic(paths["csv"], table.getvalue().encode())
  legend = "\n".join(f"- `{k}`: {v}" for k, v in postprocess.PROCEDURE_DESCRIPTIONS.items())
  text = "\n".join([
      f"# Paper vs reproduced CCC x 100 (OMG {split} split)", "",
      f"Runs under `{root}`; regenerate with `python experiments/summary.py --root={root}`. `network`: the "
      "network's output (official global protocol); `post`: after the Table VI post-processing, whose "
      "procedure is named:", legend, "",
      "`start`: `paper` (the paper's weights and values) or `scratch` (the from-scratch recipe); `steps`: step "
      "of the weights evaluated / steps configured; `run`: Table V's better training way on validation; "
      "`variant`: the paper's text or the authors' released code. `-`: not run.", "",
      *markdown(report), ""])
  atomic.write_atomic(paths["md"], text.encode())
  plot(report, paths["png"], title=f"paper vs reproduced CCC, OMG {split} ({root})")
  return paths


def plot(report: list[dict], path: str, title: str = "") -> None:
  """Horizontal bars per row, valence and arousal panels: paper, network, after post-processing."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import numpy as np

  names = [r["row"] for r in report]
  y = np.arange(len(names))
  fig, axes = plt.subplots(1, 2, figsize=(14, 0.32 * len(names) + 1.5), sharey=True)
  series = (("paper", "paper", "tab:gray"), ("network", "reproduced, network", "tab:blue"),
            ("post", "reproduced, post-processed", "tab:orange"))
  for ax, dim in zip(axes, postprocess.DIMS):
    for i, (key, label, color) in enumerate(series):
      values = [r[f"{key}_{dim}"] for r in report]
      ax.barh(y + (i - 1) * 0.27, [np.nan if v is None else v for v in values], height=0.27, label=label,
              color=color)
    ax.set_title(f"{dim} CCC x 100")
    ax.grid(axis="x", alpha=0.3)
  axes[0].set_yticks(y, names, fontsize=7)
  axes[0].invert_yaxis()
  handles, labels = axes[0].get_legend_handles_labels()
  fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8)
  if title:
    fig.suptitle(title, fontsize=9)
  fig.tight_layout(rect=(0, 0.04, 1, 1))
  try:
    with atomic.atomic_output(path, suffix=".png") as tmp:  # savefig picks the format by the extension.
      fig.savefig(tmp, dpi=100)
  finally:
    plt.close(fig)


def main(argv):
  del argv
  report = rows(FLAGS.root, split=FLAGS.split)
  shown = [r for r in report if not FLAGS.table or r["table"] == FLAGS.table]
  print("\n".join(markdown(shown)))
  report_dir = FLAGS.root if FLAGS.report_dir is None else FLAGS.report_dir
  if report_dir:
    paths = write_report(report, report_dir, FLAGS.root, FLAGS.split)
    print(f"\nreport: {paths['md']}, {paths['csv']}, {paths['png']}")


if __name__ == "__main__":
  app.run(main)
