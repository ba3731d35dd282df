"""Evaluation on a prepared split with the OMG-Emotion protocol (and Table VI post-processing).

    python -m omg_cnnrnn.evaluate --workdir=<training workdir> --data_dir=<prepared dir> \\
        --split=validation --output_dir=<dir> [--labels=omg_ValidationVideos.csv] \\
        [--tune_postprocess | --postprocess=<postprocess.json>]

The network runs over every frame of every utterance (consecutive chunks of the
training sequence length, GRU state reset per chunk as in training); the value
of an utterance is the mean (or median) of its valid frames (Sec. III-C). Then:
the official global CCC (one CCC over all utterances, the challenge's final
scorer), the earlier per-video protocol, Pearson and MSE, plus frame-level CCC
(the Aff-Wild protocol, where frames carry their own labels).

Writes to `--output_dir`:
- `metrics.json`: {split: metrics, plus `<split>_postprocessed` when post-processing applies};
- `frame_predictions_<split>.csv`: video, utterance, frame, face/label mask, per-frame predictions;
- `predictions_<split>.csv`: the label file's columns in its row order, valence/arousal
  replaced by the (post-processed) predictions: what the challenge's own scorer reads.
Predictions are matched to labels by (video, utterance); files that do not line up are refused.

Utterances in which no frame has a face get the mean prediction of the other
utterances of their video (the global mean if none), and are counted in `metrics.json`.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import tensorflow as tf
import tf_keras

from omg_cnnrnn import configs, metrics, postprocess
from omg_cnnrnn.data import labels as label_files
from omg_cnnrnn.data import pipeline


def predict_split(model: tf_keras.Model, config: configs.ExperimentConfig, data_dir: str, split: str,
                  batch_size: int | None = None) -> list[dict]:
  """Per-frame predictions of every utterance of `split`.

  Returns:
    One record per utterance, in the split's order: `video`, `utterance`, `valence`,
    `arousal` (utterance labels), `frame_predictions` [n, 2], `frame_labels` [n, 2], `mask` [n].
  """
  index = pipeline.utterance_index(data_dir, split)
  records = []
  for row in index:
    n = int(row["num_frames"])
    records.append({"video": row["video"], "utterance": row["utterance"], "valence": row["valence"],
                    "arousal": row["arousal"], "dataset": row.get("dataset", ""),
                    "frame_predictions": np.full((n, 2), np.nan, np.float32),
                    "frame_labels": np.zeros((n, 2), np.float32), "mask": np.zeros(n, np.float32)})
  predict = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
  for batch in pipeline.eval_dataset(data_dir, config.data, split, batch_size=batch_size):
    out = predict({"frames": batch["frames"], "mask": batch["mask"]}).numpy()
    for b, (i, offset) in enumerate(zip(batch["index"].numpy(), batch["offset"].numpy())):
      rec = records[i]
      n = len(rec["mask"]) - offset
      length = min(out.shape[1], n)
      rec["frame_predictions"][offset:offset + length] = out[b, :length]
      rec["frame_labels"][offset:offset + length] = batch["labels"].numpy()[b, :length]
      rec["mask"][offset:offset + length] = batch["mask"].numpy()[b, :length]
  return records


def utterance_table(records: list[dict], aggregate: str = "mean",
                    values: np.ndarray | None = None) -> tuple[pd.DataFrame, pd.DataFrame, int]:
  """Labels and predictions keyed by (video, utterance), and the count of face-less utterances.

  Args:
    records: from `predict_split`.
    aggregate: utterance value of the valid frames, "mean" or "median".
    values: optional [N, 2] utterance predictions to use instead (e.g. post-processed ones).
  """
  labels = pd.DataFrame([{"video": r["video"], "utterance": r["utterance"], "valence": r["valence"],
                          "arousal": r["arousal"]} for r in records])
  if values is None:
    values = np.array([metrics.utterance_value(r["frame_predictions"], r["mask"], aggregate) for r in records],
                      dtype=np.float64).reshape(-1, 2)
  preds = labels[["video", "utterance"]].copy()
  preds["valence"], preds["arousal"] = values[:, 0], values[:, 1]
  preds, faceless = fill_faceless(preds)
  return labels, preds, faceless


def fill_faceless(predictions: pd.DataFrame) -> tuple[pd.DataFrame, int]:
  """Utterances without any valid frame: mean prediction of their video's others, else the global mean.

  The rule lives in `postprocess.fill_missing`, so raw and post-processed scores fill alike.
  """
  out = predictions.copy()
  columns = ["valence", "arousal"]
  missing = out[columns].isna().any(axis=1)
  out[columns] = postprocess.fill_missing(out[columns].to_numpy(np.float64), out["video"].to_numpy())
  return out, int(missing.sum())


def frame_level_ccc(records: list[dict]) -> dict:
  """CCC over all valid frames of the split (Aff-Wild's protocol)."""
  p = np.concatenate([r["frame_predictions"][r["mask"] > 0] for r in records] + [np.zeros((0, 2))])
  t = np.concatenate([r["frame_labels"][r["mask"] > 0] for r in records] + [np.zeros((0, 2))])
  if len(p) == 0:
    return {"frame_valence_ccc": 0.0, "frame_arousal_ccc": 0.0}
  return {"frame_valence_ccc": metrics.ccc(p[:, 0], t[:, 0]), "frame_arousal_ccc": metrics.ccc(p[:, 1], t[:, 1])}


def score_tables(labels: pd.DataFrame, preds: pd.DataFrame) -> dict:
  """Official global protocol plus the per-video protocol's CCCs."""
  result = metrics.evaluate_utterances(labels, preds, protocol="global")
  per_video = metrics.evaluate_utterances(labels, preds, protocol="per_video")
  result.update({f"per_video_{k}": v for k, v in per_video.items() if k.endswith("_ccc")})
  return result


def score_records(records: list[dict], aggregate: str = "mean") -> dict:
  """Metrics of one split's predictions (no post-processing)."""
  labels, preds, faceless = utterance_table(records, aggregate)
  result = score_tables(labels, preds)
  result.update(frame_level_ccc(records))
  result["utterances_without_face"] = faceless
  return result


def evaluate_workdir(workdir: str, data_dir: str, split: str, output_dir: str, labels_csv: str | None = None,
                     tune_postprocess: bool = False, postprocess_path: str | None = None,
                     which: str = "best") -> dict:
  """Evaluates a training workdir on one split and writes the outputs (see the module docstring).

  Args:
    workdir: training workdir (its best weights, or the latest checkpoint with which="latest").
    data_dir: prepared TFRecords.
    split: split name of the shards (e.g. "validation").
    output_dir: where metrics.json and the CSVs go.
    labels_csv: the official label CSV of the split; the prediction CSV takes its columns and
      row order, and every (video, utterance) must line up with the prepared split.
    tune_postprocess: search the Table VI post-processing on this split, save the choice as
      `<workdir>/postprocess.json` (and in output_dir) and report post-processed metrics.
    postprocess_path: apply a saved choice unchanged (e.g. tuned on validation, applied to test).
    which: "best" or "latest" weights.

  Returns:
    The metrics written to `metrics.json`.
  """
  from omg_cnnrnn import train  # Lazy: train imports this module for validation.

  model, config = train.load_workdir_model(workdir, which=which)
  os.makedirs(output_dir, exist_ok=True)
  records = predict_split(model, config, data_dir, split)
  aggregate = config.data.utterance_aggregate
  labels, preds, faceless = utterance_table(records, aggregate)
  raw = score_tables(labels, preds)
  raw.update(frame_level_ccc(records))
  raw["utterances_without_face"] = faceless
  result = {split: raw, f"{split}_raw": raw, "experiment": config.name, "workdir": workdir}

  choice = None
  if tune_postprocess:
    choice = postprocess.tune(records, labels, aggregate=aggregate, config=config.postprocess)
    for path in (os.path.join(workdir, "postprocess.json"), os.path.join(output_dir, "postprocess.json")):
      postprocess.save_choice(choice, path)
  elif postprocess_path:
    choice = postprocess.load_choice(postprocess_path)
  if choice is not None:
    values = postprocess.apply(choice, records, aggregate=aggregate)
    _, post_preds, _ = utterance_table(records, aggregate, values=values)
    post = score_tables(labels, post_preds)
    post["utterances_without_face"] = faceless
    post["postprocess"] = postprocess.choice_to_dict(choice)
    result[split] = post
    result[f"{split}_postprocessed"] = post
    preds = post_preds

  _write_frame_predictions(os.path.join(output_dir, f"frame_predictions_{split}.csv"), records)
  if labels_csv:
    official = label_files.read_omg_labels(labels_csv)
    metrics.write_prediction_csv(os.path.join(output_dir, f"predictions_{split}.csv"), official, preds)
  else:
    preds.to_csv(os.path.join(output_dir, f"predictions_{split}.csv"), index=False)
  with open(os.path.join(output_dir, "metrics.json.tmp"), "w") as f:
    json.dump(result, f, indent=2, default=float)
  os.replace(os.path.join(output_dir, "metrics.json.tmp"), os.path.join(output_dir, "metrics.json"))
  return result


def _write_frame_predictions(path: str, records: list[dict]) -> None:
  rows = []
  for r in records:
    n = len(r["mask"])
    rows.append(pd.DataFrame({
        "video": r["video"], "utterance": r["utterance"], "frame": np.arange(n), "mask": r["mask"].astype(int),
        "valence": r["frame_predictions"][:, 0], "arousal": r["frame_predictions"][:, 1],
        "label_valence": r["frame_labels"][:, 0], "label_arousal": r["frame_labels"][:, 1]}))
  table = pd.concat(rows) if rows else pd.DataFrame()
  table.to_csv(path + ".tmp", index=False, float_format="%.6f")
  os.replace(path + ".tmp", path)


def main(argv):
  from absl import flags

  del argv
  f = flags.FLAGS
  result = evaluate_workdir(f.workdir, f.data_dir, f.split, f.output_dir, labels_csv=f.labels,
                            tune_postprocess=f.tune_postprocess, postprocess_path=f.postprocess, which=f.which)
  print(json.dumps({k: v for k, v in result[f.split].items() if not isinstance(v, dict)}, indent=2, default=float))


if __name__ == "__main__":
  from absl import app, flags

  flags.DEFINE_string("workdir", None, "Training workdir.")
  flags.DEFINE_string("data_dir", None, "Prepared TFRecords.")
  flags.DEFINE_string("split", "validation", "Split to evaluate.")
  flags.DEFINE_string("output_dir", None, "Where to write metrics.json and the prediction CSVs.")
  flags.DEFINE_string("labels", None, "Official label CSV of the split (prediction CSV in the challenge's format).")
  flags.DEFINE_bool("tune_postprocess", False, "Tune Table VI post-processing on this split and save the choice.")
  flags.DEFINE_string("postprocess", None, "Apply a saved post-processing choice (postprocess.json).")
  flags.DEFINE_enum("which", "best", ["best", "latest"], "Best-validation weights or the latest checkpoint.")
  flags.mark_flags_as_required(["workdir", "data_dir", "output_dir"])
  app.run(main)
