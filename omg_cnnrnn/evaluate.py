"""Evaluation on a prepared split with the OMG-Emotion protocol (and Table VI post-processing).

    python -m omg_cnnrnn.evaluate --workdir=<training workdir> --data_dir=<prepared dir> \\
        --split=validation --output_dir=<dir> [--labels=omg_ValidationVideos.csv] \\
        [--tune_postprocess [--postprocess_experiment=table6/<row>] [--postprocess_procedure=search]
         | --postprocess=<postprocess.json>]

The network runs over every frame of every utterance (consecutive chunks of the
training sequence length, GRU state reset per chunk as in training); the value
of an utterance is the mean (or median) of its valid frames (Sec. III-C). Then:
the official global CCC (one CCC over all utterances, the challenge's final
scorer), the earlier per-video protocol, Pearson and MSE, plus frame-level CCC
(the Aff-Wild protocol, where frames carry their own labels).

Post-processing (Table VI, Sec. III-E; `omg_cnnrnn.postprocess`): `--tune_postprocess` chooses
it on this split with the settings of `--postprocess_experiment` (a registered Table VI row,
whose `base_experiment` must be the workdir's experiment; `experiments/table6.sh` passes it),
else of the workdir's own config, else the paper's defaults; by the paper's procedure (fixed
windows 81 / 3 and smoothing, each step kept only if it raises CCC) unless the config or
`--postprocess_procedure=search` asks for the wider search. `--postprocess` applies a saved
choice unchanged. Every post-processed figure names its procedure.

Writes to `--output_dir`:
- `metrics.json`: {split: metrics, plus `<split>_postprocessed` when post-processing applies,
  whose `postprocess_procedure` names how its settings were chosen};
- `frame_predictions_<split>.csv`: video, utterance, frame, face/label mask, per-frame predictions;
- `predictions_<split>.csv`: the label file's columns in its row order, valence/arousal
  replaced by the (post-processed) predictions: what the challenge's own scorer reads.
- `postprocess.json`: with `--tune_postprocess`, the choice (also saved in the workdir, after
  the rest: a failed evaluation leaves the workdir's earlier choice in place).
Predictions are matched to labels by (video, utterance); a prepared utterance the labels lack
is refused. The outputs appear as a unit: computed and checked first, staged, then moved in
with `metrics.json` last (it lists the files it describes; no `metrics.json`, no complete set).

Utterances in which no frame has a face get the mean prediction of the other
utterances of their video (the global mean if none), and are counted in `metrics.json`;
labelled utterances that were not prepared at all (a clip that failed in data prep) are
filled the same way, counted (`utterances_not_prepared`) and named (`not_prepared`).
NaN/inf predictions are an error naming the utterance.

The library: `omg_cnnrnn.evaluation` (this module is only the command line, imported by nothing).
"""

from __future__ import annotations

import json

from omg_cnnrnn.evaluation import evaluate_workdir


def main(argv):
  from absl import flags

  del argv
  f = flags.FLAGS
  result = evaluate_workdir(f.workdir, f.data_dir, f.split, f.output_dir, labels_csv=f.labels,
                            tune_postprocess=f.tune_postprocess, postprocess_path=f.postprocess, which=f.which,
                            postprocess_experiment=f.postprocess_experiment,
                            postprocess_procedure=f.postprocess_procedure)
  print(json.dumps({k: v for k, v in result[f.split].items() if not isinstance(v, dict)}, indent=2, default=float))


if __name__ == "__main__":
  from absl import app, flags

  flags.DEFINE_string("workdir", None, "Training workdir.")
  flags.DEFINE_string("data_dir", None, "Prepared TFRecords.")
  flags.DEFINE_string("split", "validation", "Split to evaluate.")
  flags.DEFINE_string("output_dir", None, "Where to write metrics.json and the prediction CSVs.")
  flags.DEFINE_string("labels", None, "Official label CSV of the split (prediction CSV in the challenge's format).")
  flags.DEFINE_bool("tune_postprocess", False, "Choose the Table VI post-processing on this split (the paper's "
                    "procedure unless asked otherwise) and save the choice.")
  flags.DEFINE_string("postprocess_experiment", "", "With --tune_postprocess: the registered Table VI row whose "
                      "post-processing settings apply (its base_experiment must be the workdir's).")
  flags.DEFINE_enum("postprocess_procedure", "", ["", "paper", "search"], "With --tune_postprocess: 'paper' "
                    "(Sec. III-E: fixed windows, keep a step only if it helps) or 'search' (not the paper's: "
                    "windows, edge modes and smoothing strength searched on this split); default: the settings'.")
  flags.DEFINE_string("postprocess", None, "Apply a saved post-processing choice (postprocess.json).")
  flags.DEFINE_enum("which", "best", ["best", "latest"], "Best-validation weights or the latest checkpoint.")
  flags.mark_flags_as_required(["workdir", "data_dir", "output_dir"])
  app.run(main)
