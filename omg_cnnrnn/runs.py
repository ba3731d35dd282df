"""Which trained run of a registered row the table scripts report or post-process (no TensorFlow).

The table scripts' layout: a row's run is `<root>/<row>`, a fused row's runs (its training ways,
`init.ways`) `<root>/<row>/<way>`. Used by `experiments/summary.py` and `experiments/base_run.py`,
which only read the runs' JSON files, so they start without importing TensorFlow.
"""

from __future__ import annotations

import json
import os

from omg_cnnrnn import atomic


def better_run(workdirs: dict[str, str], split: str = "validation") -> tuple[str, dict[str, float]]:
  """Of several evaluated runs of one row (e.g. Table V's two training ways), the better on `split`.

  The score is the mean of the valence and arousal CCC of the network's output (before any
  post-processing), as training picks its best weights (`training.Trainer`). Runs without
  `<workdir>/eval_<split>/metrics.json` are skipped.

  Args:
    workdirs: label -> workdir.
    split: the split the runs were evaluated on.

  Returns:
    (label of the better run, {label: score} of every evaluated run).
  """
  scores = {}
  for label, workdir in workdirs.items():
    path = os.path.join(workdir, f"eval_{split}", "metrics.json")
    if os.path.exists(path):
      with open(path) as f:
        result = json.load(f)
      m = result.get(f"{split}_raw", result.get(split))
      scores[label] = (float(m["valence_ccc"]) + float(m["arousal_ccc"])) / 2
  if not scores:
    raise FileNotFoundError(f"none of {sorted(workdirs.values())} has eval_{split}/metrics.json")
  return max(scores, key=lambda k: scores[k]), scores


def run_workdirs(root: str, name: str) -> dict[str, str]:
  """label -> workdir of the runs of a registered row under a checkpoint root (the table scripts' layout).

  A row with training ways (`init.ways`: the fused rows of Table V) has one run per way; any other row one, "".
  """
  from omg_cnnrnn import experiments  # Lazy: the registry is only needed to resolve a row's name.

  base = os.path.join(root, name)
  ways = experiments.get(name).init.ways
  if ways:
    return {way.name: os.path.join(base, way.name) for way in ways}
  return {"": base}


def choose_base_run(root: str, row: str, split: str = "validation", output: str | None = None) -> dict:
  """The trained run a Table VI row post-processes: its base row's run, the better one if it has two.

  A fused base row trains two ways (Sec. III-C); Table V shows "the best results obtained by
  the fusion approach" and Table VI post-processes "the best networks" (Sec. IV), so the way
  with the higher mean validation CCC of the network (`better_run`) is taken; one that was not
  evaluated does not compete.

  Args:
    root: checkpoint root of the table scripts.
    row: a registered Table VI row (its `base_experiment` is the row it post-processes).
    split: the split that decides.
    output: where to write the decision as JSON (None: not written).

  Returns:
    {"row", "base_experiment", "run" (the way, "" for a single run), "workdir", "scores", "reason"}.
  """
  from omg_cnnrnn import experiments  # Lazy: see run_workdirs.

  base = experiments.get(row).base_experiment
  if not base:
    raise ValueError(f"{row} has no base_experiment: not a Table VI row")
  runs = run_workdirs(root, base)
  if len(runs) == 1:
    (run, workdir), = runs.items()
    scores, reason = {}, "the base row's only run"
  else:
    run, scores = better_run(runs, split)
    workdir = runs[run]
    reason = (f"the better of its training ways on {split} (mean valence/arousal CCC of the network: "
              + ", ".join(f"{k} {v:.4f}" for k, v in scores.items())
              + ("" if len(scores) == len(runs) else f"; {sorted(set(runs) - set(scores))} not evaluated") + ")")
  decision = {"row": row, "base_experiment": base, "run": run, "workdir": workdir, "scores": scores,
              "reason": reason}
  if output:
    atomic.write_atomic(output, json.dumps(decision, indent=2))  # Creates the folder.
  return decision
