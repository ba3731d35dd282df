"""The from-scratch recipe on every row of Tables III-V, at CPU size: steps, minutes, validation CCC.

    make demo                                   # once: the synthetic set, prepared at 32x32
    .venv/bin/python experiments/bench_recipe.py --data_dir=checkpoints/demo/records/omg \\
        --output_dir=checkpoints/recipe [--rows=table3/cnn_only,table3/cnn_rnn] [--steps=100]

Each row is resolved as `python -m omg_cnnrnn.train` resolves it with no paper weights
(`omg_cnnrnn.start`): the CNN-only rows start from random weights, every other row starts
after the row its experiment names (runs under `--output_dir/runs/<row>`, trained in
dependency order), with the `ScratchRecipe` values. CPU size: 32x32 crops, 8-frame
sequences, `--steps` steps, the paper's batch sizes. Prints a markdown table with the
dense matmul rate of this machine measured in the same run, and writes it to
`<output_dir>/recipe.md`. CCC is the official global protocol on the validation split,
from the network alone (the best of the run's validations, which here is its last step).
"""

from __future__ import annotations

import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

from omg_cnnrnn import atomic, experiments, training  # noqa: E402
from omg_cnnrnn.hardware import matmul_peak  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", "checkpoints/demo/records/omg", "Prepared OMG-format records (the demo's).")
flags.DEFINE_string("output_dir", "checkpoints/recipe", "Where the runs and recipe.md go.")
flags.DEFINE_list("rows", [], "Rows to train (default: every row of Tables III-V); their `init.after` rows first.")
flags.DEFINE_integer("steps", 100, "Training steps of every row.")
flags.DEFINE_integer("image_size", 32, "Face-crop size (paper: 96).")
flags.DEFINE_integer("sequence_length", 8, "Frames per sequence of recurrent rows (paper: 80).")


def ordered(rows: list[str]) -> list[str]:
  """`rows` with the rows each starts after placed before it (depth first)."""
  out: list[str] = []

  def visit(name):
    for before in experiments.get(name).init.after:
      visit(before)
    if name not in out:
      out.append(name)

  for name in rows:
    visit(name)
  return out


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  rows = FLAGS.rows or [n for n in experiments.names() if experiments.get(n).table in ("III", "IV", "V")]
  peak = matmul_peak(2048)
  print(f"dense float32 matmul: {peak:.0f} GFLOP/s (2048^2)", flush=True)
  lines = [f"Recipe runs at CPU size ({FLAGS.image_size}x{FLAGS.image_size} crops, {FLAGS.sequence_length}-frame "
           f"sequences, {FLAGS.steps} steps, paper batch sizes), on a machine with a {peak:.0f} GFLOP/s "
           "float32 matmul.", "",
           "| row | start | starts after | steps | minutes | valence CCC | arousal CCC |",
           "|---|---|---|---|---|---|---|"]
  print("\n".join(lines), flush=True)
  runs = os.path.join(FLAGS.output_dir, "runs")
  for name in ordered(rows):
    workdir = os.path.join(runs, name)
    overrides = [f"data.image_size={FLAGS.image_size}", f"train.num_steps={FLAGS.steps}",
                 f"train.eval_every_steps={FLAGS.steps}", "train.log_every_steps=1000",
                 f"train.checkpoint_every_steps={FLAGS.steps}"]
    if experiments.get(name).model.has_rnn:
      overrides.append(f"data.sequence_length={FLAGS.sequence_length}")
    config, resolved = training.resolve_run(name, workdir, overrides)
    t0 = time.time()
    training.configure_process()  # The process's seeds: a Trainer sets none.
    result = training.Trainer(config, workdir, FLAGS.data_dir, init_from=resolved.sources,
                           log=lambda s: None).train()
    minutes = (time.time() - t0) / 60
    last = result["last_eval"] or {}
    after = ", ".join(config.init.after) if resolved.sources else "-"
    line = (f"| {name} | {resolved.kind} | {after} | {result['end_step']} | {minutes:.1f} | "
            f"{last.get('valence_ccc', float('nan')):.3f} | {last.get('arousal_ccc', float('nan')):.3f} |")
    lines.append(line)
    print(line, flush=True)
  os.makedirs(FLAGS.output_dir, exist_ok=True)
  atomic.write_atomic(os.path.join(FLAGS.output_dir, "recipe.md"), "\n".join(lines) + "\n")
  atomic.write_atomic(os.path.join(FLAGS.output_dir, "recipe.json"),
                      json.dumps({"matmul_gflops": peak, "table": lines}, indent=2))


if __name__ == "__main__":
  app.run(main)
