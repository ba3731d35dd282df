"""The demo: a recurrent row of the paper learns, end to end, on the embedded synthetic dataset, on a CPU.

    make demo [DEMO_DIR=checkpoints/demo]
    python experiments/demo.py --demo_dir=checkpoints/demo

1. synthesizes the OMG-format set (a real face photo whose expression encodes valence and
   arousal, moving, zooming and changing light; `data_prep.synthesize`);
2. prepares it: MTCNN face detection and tracking, face crops, TFRecords (`prepare_omg`; the
   crops are cut at the network's 32x32 here, 96x96 in the paper);
3. trains Table III's "CNN only" row (stage 1 of the staged from-scratch recipe);
4. trains Table III's basic CNN-RNN (Table II: VGG-16, FC1 4096, 2 GRU layers of 128, output),
   which starts after the CNN-only row as its experiment says (`omg_cnnrnn.start`): the
   convolutions and FC1 load from stage 1, the GRUs and output start fresh;
5. evaluates it on the synthetic validation split with the official protocol, applies the
   Table VI post-processing, exports the SavedModel and prints the results with the time
   taken and the dense matmul rate of this machine.

Both runs are the rows' registered CPU-size variant (`table3/cnn_only:cpu`,
`table3/cnn_rnn:cpu`; `omg_cnnrnn.experiments.VARIANTS`), resolved exactly as
`python -m omg_cnnrnn.train --experiment=<row>:cpu` resolves them (no paper weights here, so
the start is "scratch" and the row's `ScratchRecipe` applies). The variant's reductions,
printed too: 32x32 crops (paper 96), 8-frame sequences (paper 80; the synthetic utterances
are 1.5-2.5 s at 10 fps), CNN-only batches of 40 frames (paper 80) and a few hundred steps;
the CNN-RNN's batch is the paper's 4 sequences. The paper pretrains on Aff-Wild first; the demo skips
that step to fit its time (the table scripts run it).

Leaves in `--demo_dir`: metrics.json (naming the row), predictions_validation.csv,
labels_validation.csv, saved_model/, and the workdirs runs/table3/{cnn_only,cnn_rnn}.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("demo_dir", "checkpoints/demo", "Where everything goes.")
flags.DEFINE_integer("seed", 0, "Seed of the synthetic set and of training.")
flags.DEFINE_integer("num_workers", 2, "Data-preparation worker processes.")
flags.DEFINE_bool("fresh", False, "Delete the demo directory first (otherwise finished steps are reused).")

CNN_ONLY, CNN_RNN = "table3/cnn_only", "table3/cnn_rnn"
VARIANT = "cpu"  # The rows at CPU size (`omg_cnnrnn.experiments.VARIANTS`): crops, sequences, steps.


def step(title: str):
  print(f"\n=== {title}", flush=True)
  return time.time()


def run(cmd: list[str]) -> None:
  print("$ " + " ".join(cmd), flush=True)
  subprocess.run(cmd, check=True)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # TensorFlow's INFO lines would drown the progress
  t_start = time.time()
  demo = FLAGS.demo_dir
  if FLAGS.fresh:
    shutil.rmtree(demo, ignore_errors=True)
  os.makedirs(demo, exist_ok=True)
  synth = os.path.join(demo, "synthetic")
  records = os.path.join(demo, "records", "omg")
  py = sys.executable
  timings = {}
  from omg_cnnrnn import experiments  # No TensorFlow: the registry only.

  image_size = experiments.get(f"{CNN_RNN}:{VARIANT}").data.image_size

  t = step("1/5 synthesize the embedded dataset (data_prep.synthesize)")
  if not os.path.exists(os.path.join(synth, "omg", "omg_ValidationVideos.csv")):
    run([py, "-m", "data_prep.synthesize", f"--output_dir={synth}", f"--seed={FLAGS.seed}", "--omg_only"])
  timings["synthesize"] = time.time() - t

  t = step(f"2/5 prepare: MTCNN detection, tracking, {image_size}x{image_size} crops, TFRecords "
           "(data_prep.prepare_omg)")
  for split in ("Train", "Validation"):
    run([py, "-m", "data_prep.prepare_omg", f"--labels={synth}/omg/omg_{split}Videos.csv",
         f"--videos={synth}/omg/videos", f"--output_dir={records}", f"--num_workers={FLAGS.num_workers}",
         f"--crop_size={image_size}"])
  timings["prepare"] = time.time() - t

  # TensorFlow is imported only now, so the data steps above start fast in their own processes.
  from omg_cnnrnn import evaluation, serving, training
  from omg_cnnrnn import workdir as workdir_lib
  from omg_cnnrnn.hardware import matmul_peak

  peak = matmul_peak(2048)
  print(f"\nthis machine: dense float32 matmul {peak:.0f} GFLOP/s (2048^2)")
  runs = os.path.join(demo, "runs")
  configs, results = {}, {}
  for number, row in enumerate((CNN_ONLY, CNN_RNN), start=3):
    workdir = os.path.join(runs, row)
    # Validated twice; evaluation uses the better of the two (the paper reports the best CCC on
    # validation too, so these figures are selected on the split they are measured on).
    config, resolved = training.resolve_run(f"{row}:{VARIANT}", workdir)
    t = step(f"{number}/5 train {row} (Table {config.table} '{config.row}'), {config.train.num_steps} steps")
    print(resolved.describe())
    paper = experiments.get(row)  # The registered row: the paper's shapes.
    print("CPU reductions: " + ", ".join(experiments.variant_overrides(f"{row}:{VARIANT}"))
          + f" (paper: 96x96, batches of {paper.data.batch_size} x {paper.data.sequence_length} frames, "
          "tens of thousands of steps, from AffWildNet)")
    training.configure_process(FLAGS.seed)  # The process's seeds: a Trainer sets none.
    trainer = training.Trainer(config, workdir, records, seed=FLAGS.seed, eval_split="validation",
                            init_from=resolved.sources)
    results[row] = trainer.train()
    configs[row] = config
    timings[f"train {row}"] = time.time() - t

  t = step("5/5 evaluate on the synthetic validation split (official protocol) + Table VI post-processing, export")
  train_dir = os.path.join(runs, CNN_RNN)
  labels_csv = os.path.join(synth, "omg", "omg_ValidationVideos.csv")
  result = evaluation.evaluate_workdir(train_dir, records, "validation", demo, labels_csv=labels_csv,
                                     tune_postprocess=True)
  shutil.copy(labels_csv, os.path.join(demo, "labels_validation.csv"))
  serving.export_saved_model(workdir_lib.load_workdir_model(train_dir)[0], configs[CNN_RNN],
                            os.path.join(demo, "saved_model"),
                            postprocess_path=os.path.join(train_dir, "postprocess.json"))
  timings["evaluate + export"] = time.time() - t

  raw, post = result["validation_raw"], result["validation"]
  cnn = results[CNN_ONLY]["best"] or {}
  rnn = configs[CNN_RNN]
  print("\n=== results on the synthetic validation split (CCC, official global protocol)")
  print("| row | setting | valence CCC | arousal CCC |")
  print("|---|---|---|---|")
  print(f"| {CNN_RNN} | paper (real OMG validation, x100) | {rnn.paper_ccc_valence} | {rnn.paper_ccc_arousal} |")
  print(f"| {CNN_RNN} | demo, network output | {raw['valence_ccc']:.3f} | {raw['arousal_ccc']:.3f} |")
  print(f"| {CNN_RNN} | demo, + post-processing ({post['postprocess_procedure']} procedure) | "
        f"{post['valence_ccc']:.3f} | {post['arousal_ccc']:.3f} |")
  if cnn:
    print(f"| {CNN_ONLY} | demo stage 1, network output | {cnn['valence_ccc']:.3f} | {cnn['arousal_ccc']:.3f} |")
  total = time.time() - t_start
  print("\ntimings (s): " + json.dumps({k: round(v, 1) for k, v in timings.items()}))
  print(f"total {total:.0f} s on a machine with a {peak:.0f} GFLOP/s float32 matmul; outputs in {demo}: "
        "metrics.json, predictions_validation.csv, labels_validation.csv, saved_model/")


if __name__ == "__main__":
  app.run(main)
