"""Trains any registered row (a short main over `omg_cnnrnn.training`).

    python -m omg_cnnrnn.train --experiment=table3/cnn_3rnn_last_conv \\
        --workdir=checkpoints/table3/cnn_3rnn_last_conv --data_dir=<prepared OMG TFRecords> \\
        [--init_from=<Aff-Wild workdir | checkpoint prefix | tf1:<TF1 prefix>>] [--override train.num_steps=...] \\
        [--strategy=default|mirrored|multi_worker] [--precision=mixed_float16] [--jit_compile]

A run resumes from its workdir's latest checkpoint (the workdir's files: `omg_cnnrnn.training`).
Without `--init_from` a row starts where its experiment says (`omg_cnnrnn.start`: the paper's
weights when given, else the row trained before it, else random weights with the from-scratch
recipe); the chain is printed and recorded in `config.json` and `init_report.json`. Fusion rows
(Table V) take two `--init_from`s, one per single network.
"""

import json
import os

from omg_cnnrnn import distribute, training
from omg_cnnrnn import start as start_lib


def main(argv):
  from absl import flags

  del argv
  f = flags.FLAGS
  paper = start_lib.PaperWeights(f.affwildnet_vgg, f.affwildnet_resnet, f.vggface_h5)
  config, resolved = training.resolve_run(f.experiment, f.workdir, f.override, f.init_from, paper,
                                          f.runs_root or None)
  print(f"{config.name}: {resolved.describe()}", flush=True)
  if resolved.kind == "scratch":
    print("from-scratch recipe: " + ", ".join(f"{k}={v}" for k, v in config.scratch_recipe.overrides().items())
          + " (overrides on top)", flush=True)
  training.configure_process(f.seed, deterministic=f.deterministic, precision=f.precision)
  trainer = training.Trainer(config, f.workdir, f.data_dir, seed=f.seed, train_split=f.train_split,
                             eval_split=f.eval_split or None, init_from=resolved.sources, strategy=f.strategy,
                             jit_compile=f.jit_compile)
  result = trainer.train()
  print(json.dumps(result, indent=2, default=str))


def define_flags():
  from absl import flags

  from omg_cnnrnn import experiments

  experiments.define_flags()
  flags.DEFINE_string("workdir", None, "Run directory (checkpoints, logs, config); resumes automatically.")
  flags.DEFINE_string("data_dir", None, "Directory of prepared TFRecord shards (<split>-*.tfrecord).")
  flags.DEFINE_multi_string("init_from", [], "Warm start: workdir, checkpoint prefix, tf1:[<released>@]<prefix> or "
                            "vggface:<h5>. Overrides the row's own start (its paper weights or the row before it).")
  flags.DEFINE_string("affwildnet_vgg", os.environ.get("AFFWILDNET_VGG", ""),
                      "TF1 prefix of the released affwildnet-vggface-gru checkpoint (the paper's start of VGG rows; "
                      "default $AFFWILDNET_VGG).")
  flags.DEFINE_string("affwildnet_resnet", os.environ.get("AFFWILDNET_RESNET", ""),
                      "TF1 prefix of the released affwildnet-resnet-gru checkpoint (default $AFFWILDNET_RESNET).")
  flags.DEFINE_string("vggface_h5", os.environ.get("VGGFACE_H5", ""),
                      "Keras VGG-Face weights, used for VGG streams when no AffWildNet checkpoint is given "
                      "(default $VGGFACE_H5).")
  flags.DEFINE_string("runs_root", "", "Where the rows' workdirs live (<root>/<row>), to find the row a run starts "
                      "after; default: the workdir with the row name stripped, else its parent.")
  flags.DEFINE_integer("seed", 0, "Random seed.")
  flags.DEFINE_string("train_split", "train", "Split to train on.")
  flags.DEFINE_string("eval_split", "validation", "Split to validate on ('' for none).")
  flags.DEFINE_bool("deterministic", False, "Enable TF op determinism (slower).")
  flags.DEFINE_enum("strategy", "default", list(distribute.STRATEGIES),
                    "tf.distribute strategy: one device, MirroredStrategy over this machine's GPUs, or "
                    "MultiWorkerMirroredStrategy over the TF_CONFIG cluster. data.batch_size is the global batch.")
  flags.DEFINE_enum("precision", "float32", list(distribute.PRECISIONS),
                    "Keras dtype policy (mixed precision for GPUs); output layer and loss stay float32.")
  flags.DEFINE_bool("jit_compile", False, "XLA-compile the training step (GPUs).")
  flags.mark_flags_as_required(["experiment", "workdir", "data_dir"])


if __name__ == "__main__":
  from absl import app

  define_flags()
  app.run(main)
