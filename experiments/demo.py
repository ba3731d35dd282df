"""The demo: the paper's whole loop, end to end, on the embedded synthetic dataset, on a CPU.

    make demo [DEMO_DIR=checkpoints/demo]
    python experiments/demo.py --demo_dir=checkpoints/demo

1. synthesizes the OMG-format and Aff-Wild-format sets (real face texture, expressions
   encoding valence and arousal; `data_prep.synthesize`);
2. prepares them: MTCNN face detection and tracking, 96x96 crops, TFRecords;
3. pretrains a real table row briefly on the synthetic Aff-Wild set (Sec. III-C);
4. trains it on the synthetic OMG training split from the pretrained weights;
5. evaluates on the synthetic validation split with the official protocol, tunes the
   Table VI post-processing there, and applies it;
6. exports the SavedModel and prints the results table.

CPU reductions (stated in the output too): the row is Table III's "CNN only" (VGG-16
conv, FC 4096, FC 2048, output; trained on single frames as the paper does), with its
layers unchanged, but the face crops are resized to `--image_size` (32), batches hold
`--batch_size` (40) frames, the runs are a few hundred steps, Adam's learning rate is
1e-4, and fresh layers use He initialisation. The paper starts from VGG-Face / Aff-Wild
weights at lr 1e-3; a plain 16-layer VGG without batch norm trained from scratch with the
released code's Glorot initialisation sits on a long plateau, and its recurrent rows
saturate their GRUs as the conv activations grow in the first few hundred steps
(see the issue notes), so the demo trains the CNN-only row.

Leaves in `--demo_dir`: metrics.json, predictions_validation.csv, labels_validation.csv,
saved_model/, and the workdirs pretrain/ and train/.
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
flags.DEFINE_string("experiment", "table3/cnn_only", "The table row to train.")
flags.DEFINE_integer("seed", 0, "Seed of the synthetic set and of training.")
flags.DEFINE_integer("image_size", 32, "Face-crop size fed to the network (paper: 96).")
flags.DEFINE_integer("sequence_length", 8, "Frames per training sequence of RNN rows (paper: 80).")
flags.DEFINE_integer("batch_size", 40, "Batch size (paper: 80 single frames for CNN-only rows, 4 sequences otherwise).")
flags.DEFINE_integer("pretrain_steps", 150, "Aff-Wild pretraining steps.")
flags.DEFINE_integer("train_steps", 600, "OMG training steps.")
flags.DEFINE_float("learning_rate", 1e-4, "Adam learning rate (paper: 1e-3 from pretrained weights).")
flags.DEFINE_integer("num_workers", 2, "Data-preparation worker processes.")
flags.DEFINE_bool("fresh", False, "Delete the demo directory first (otherwise finished steps are reused).")


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
  omg_records = os.path.join(demo, "records", "omg")
  affwild_records = os.path.join(demo, "records", "affwild")
  py = sys.executable
  timings = {}

  t = step("1/6 synthesize the embedded dataset (data_prep.synthesize)")
  if not os.path.exists(os.path.join(synth, "omg", "omg_ValidationVideos.csv")):
    run([py, "-m", "data_prep.synthesize", f"--output_dir={synth}", f"--seed={FLAGS.seed}"])
  timings["synthesize"] = time.time() - t

  t = step("2/6 prepare: MTCNN detection, tracking, 96x96 crops, TFRecords")
  for split in ("Train", "Validation"):
    run([py, "-m", "data_prep.prepare_omg", f"--labels={synth}/omg/omg_{split}Videos.csv",
         f"--videos={synth}/omg/videos", f"--output_dir={omg_records}", f"--num_workers={FLAGS.num_workers}"])
  run([py, "-m", "data_prep.prepare_affwild", f"--videos={synth}/affwild/videos",
       f"--annotations={synth}/affwild/annotations", "--format=affwild", f"--output_dir={affwild_records}",
       f"--num_workers={FLAGS.num_workers}"])
  timings["prepare"] = time.time() - t

  # TensorFlow is imported only now, so the data steps above start fast in their own processes.
  from omg_cnnrnn import configs, evaluate, experiments, export, train

  base = experiments.get(FLAGS.experiment)
  reductions = {
      "data.image_size": FLAGS.image_size, "data.batch_size": FLAGS.batch_size,
      "train.learning_rate": FLAGS.learning_rate, "model.kernel_initializer": "he_normal",
      "train.log_every_steps": 50, "train.checkpoint_every_steps": 100, "train.eval_every_steps": 0,
  }
  if base.model.has_rnn:
    reductions["data.sequence_length"] = FLAGS.sequence_length
  print(f"\nrow {base.name}: Table {base.table} '{base.row}', paper CCC {base.paper_ccc_valence} / "
        f"{base.paper_ccc_arousal}")
  print("CPU reductions: " + ", ".join(f"{k}={v}" for k, v in reductions.items())
        + f"; {FLAGS.pretrain_steps} pretraining + {FLAGS.train_steps} training steps "
        f"(paper: 96x96, batch {base.data.batch_size} x {base.data.sequence_length} frames, lr 1e-3, "
        "VGG-Face / Aff-Wild initial weights, tens of thousands of steps)")

  t = step(f"3/6 pretrain on the synthetic Aff-Wild set ({FLAGS.pretrain_steps} steps)")
  pre_config = configs.override(base, {**reductions, "train.num_steps": FLAGS.pretrain_steps})
  pre_dir = os.path.join(demo, "pretrain")
  train.Trainer(pre_config, pre_dir, affwild_records, seed=FLAGS.seed, eval_split=None).train()
  timings["pretrain"] = time.time() - t

  t = step(f"4/6 train on the synthetic OMG training split from the pretrained weights ({FLAGS.train_steps} steps)")
  config = configs.override(base, {**reductions, "train.num_steps": FLAGS.train_steps,
                                   "train.eval_every_steps": FLAGS.train_steps // 2})
  train_dir = os.path.join(demo, "train")
  trainer = train.Trainer(config, train_dir, omg_records, seed=FLAGS.seed, eval_split="validation",
                          init_from=[pre_dir])
  trainer.train()
  timings["train"] = time.time() - t

  t = step("5/6 evaluate on the synthetic validation split (official protocol) + Table VI post-processing")
  labels_csv = os.path.join(synth, "omg", "omg_ValidationVideos.csv")
  result = evaluate.evaluate_workdir(train_dir, omg_records, "validation", demo, labels_csv=labels_csv,
                                     tune_postprocess=True)
  shutil.copy(labels_csv, os.path.join(demo, "labels_validation.csv"))
  timings["evaluate"] = time.time() - t

  t = step("6/6 export the SavedModel")
  export.export_saved_model(train.load_workdir_model(train_dir)[0], config,
                            os.path.join(demo, "saved_model"),
                            postprocess_path=os.path.join(train_dir, "postprocess.json"))
  timings["export"] = time.time() - t

  raw, post = result["validation_raw"], result["validation"]
  print("\n=== results on the synthetic validation split (CCC, official global protocol)")
  print(f"| row | setting | valence CCC | arousal CCC |")
  print("|---|---|---|---|")
  print(f"| {base.name} | paper (real OMG validation, x100) | {base.paper_ccc_valence} | {base.paper_ccc_arousal} |")
  print(f"| {base.name} | demo, network output | {raw['valence_ccc']:.3f} | {raw['arousal_ccc']:.3f} |")
  print(f"| {base.name} | demo, + post-processing | {post['valence_ccc']:.3f} | {post['arousal_ccc']:.3f} |")
  print("\ntimings (s): " + json.dumps({k: round(v, 1) for k, v in timings.items()}))
  print(f"total {time.time() - t_start:.0f} s; outputs in {demo}: metrics.json, predictions_validation.csv, "
        "labels_validation.csv, saved_model/")


if __name__ == "__main__":
  app.run(main)
