"""Evaluation on a prepared split with the OMG-Emotion protocol (and Table VI post-processing).

The library behind `python -m omg_cnnrnn.evaluate`, whose help describes the protocol, the
post-processing choices and the files `evaluate_workdir` writes. Here: running the network over
every frame of a split (`predict_split`), scoring utterance tables (`score_records`), the
post-processing settings of a row (`postprocess_config`). Which trained run of a row a table
reports or post-processes: `omg_cnnrnn.runs` (no TensorFlow).
"""

from __future__ import annotations

import dataclasses
import json
import os
import uuid

import numpy as np
import pandas as pd
import tensorflow as tf
import tf_keras

from omg_cnnrnn import configs, metrics, postprocess
from omg_cnnrnn import workdir as workdir_lib  # `workdir` is a parameter name here.
from omg_cnnrnn.data import labels as label_files
from omg_cnnrnn.data import pipeline
from omg_cnnrnn.data import records as record_files


def frame_predictor(model: tf_keras.Model, data_config: configs.DataConfig):
  """The model's inference pass over `eval_dataset` batches, traced once for any batch size.

  Make it once per model and pass it to every `predict_split` of that model (the Trainer's
  validations do): a function made anew each call is traced anew each call (twice: the full
  batches, then the smaller last one), 0.85 of a tiny row's 1.1 s validation at ~330 GFLOP/s.
  """
  length, size = data_config.sequence_length, data_config.image_size
  signature = [{"frames": tf.TensorSpec([None, length, size, size, 3], tf.float32),
                "mask": tf.TensorSpec([None, length], tf.float32)}]
  return tf.function(lambda x: model(x, training=False), input_signature=signature, autograph=False)


def predict_split(model: tf_keras.Model, config: configs.ExperimentConfig, data_dir: str, split: str,
                  batch_size: int | None = None, predictor=None) -> list[dict]:
  """Per-frame predictions of every utterance of `split`.

  `predictor`: `frame_predictor(model, config.data)`, made once by a caller that predicts repeatedly
  (default: made here).

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
  predict = predictor or frame_predictor(model, config.data)
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
  check_finite(records)
  labels = pd.DataFrame([{"video": r["video"], "utterance": r["utterance"], "valence": r["valence"],
                          "arousal": r["arousal"]} for r in records])
  if values is not None and not np.isfinite(np.asarray(values, np.float64)).all():
    i = int(np.flatnonzero(~np.isfinite(np.asarray(values, np.float64)).all(axis=1))[0])
    raise ValueError(f"utterance {records[i]['video']}/{records[i]['utterance']}: non-finite utterance "
                     f"prediction {np.asarray(values)[i].tolist()}")
  if values is None:
    values = np.array([metrics.utterance_value(r["frame_predictions"], r["mask"], aggregate) for r in records],
                      dtype=np.float64).reshape(-1, 2)
  preds = labels[["video", "utterance"]].copy()
  preds["valence"], preds["arousal"] = values[:, 0], values[:, 1]
  preds, faceless = fill_faceless(preds)
  return labels, preds, faceless


def check_finite(records: list[dict]) -> None:
  """Refuses NaN/inf predictions on valid frames (they would score as CCC 0 silently).

  Raises:
    ValueError: naming the first such utterance and how many of its frames.
  """
  for r in records:
    p = np.asarray(r["frame_predictions"], np.float64)[np.asarray(r["mask"]) > 0]
    bad = ~np.isfinite(p).all(axis=1)
    if bad.any():
      raise ValueError(f"utterance {r['video']}/{r['utterance']}: non-finite predictions (NaN/inf) on "
                       f"{int(bad.sum())} of its {len(p)} valid frames, e.g. frame "
                       f"{int(np.flatnonzero(np.asarray(r['mask']) > 0)[np.flatnonzero(bad)[0]])}")


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


def postprocess_config(config: configs.ExperimentConfig, experiment: str = "",
                       procedure: str = "") -> tuple[configs.PostprocessConfig, str]:
  """The post-processing settings to tune with on a workdir, and the row they come from.

  Args:
    config: the workdir's experiment config.
    experiment: "" or a registered row (a Table VI row) whose `postprocess` config applies;
      its `base_experiment` (or its own name) must be the workdir's experiment.
    procedure: "" (the config's) or one of `configs.POSTPROCESS_PROCEDURES`, replacing it.

  Returns:
    (settings, source): the named row's, else the workdir config's, else the paper's
    defaults (`configs.PostprocessConfig()`); source names which.
  """
  from omg_cnnrnn import experiments  # Lazy: the registry is only needed to resolve a row's name.

  if experiment:
    row = experiments.get(experiment)
    if row.postprocess is None:
      raise ValueError(f"experiment {experiment!r} registers no post-processing (a Table VI row does)")
    if config.name not in (row.name, row.base_experiment):
      raise ValueError(f"{experiment} post-processes {row.base_experiment!r}, but the workdir holds a trained "
                       f"{config.name!r}")
    settings, source = row.postprocess, experiment
  elif config.postprocess is not None:
    settings, source = config.postprocess, config.name
  else:
    settings, source = configs.PostprocessConfig(), "configs.PostprocessConfig() (the paper's defaults)"
  if procedure:
    settings = dataclasses.replace(settings, procedure=procedure)
  return settings, source


def _key(video, utterance) -> tuple[str, str]:
  return str(video).strip(), str(utterance).strip()


def unprepared_utterances(official: pd.DataFrame, records: list[dict]) -> pd.DataFrame:
  """Labelled utterances the prepared split lacks (e.g. a clip that could not be prepared).

  Raises:
    ValueError: prepared utterances the labels lack (the label file of another split?), or
      no labelled utterance prepared at all; names a few.
  """
  prepared = [_key(r["video"], r["utterance"]) for r in records]
  labelled = [_key(v, u) for v, u in zip(official["video"], official["utterance"])]
  extra = sorted(set(prepared) - set(labelled))
  if extra:
    raise ValueError(f"predictions do not line up with the labels: {len(extra)} prepared (video, utterance) keys "
                     f"are not in the labels ({', '.join('/'.join(k) for k in extra[:5])})")
  missing = [k not in set(prepared) for k in labelled]
  if labelled and all(missing):
    raise ValueError(f"predictions do not line up with the labels: none of the {len(labelled)} labelled "
                     "utterances is in the prepared split (the label file of another split?)")
  return official.loc[missing, ["video", "utterance", "valence", "arousal"]].reset_index(drop=True)


def _with_unprepared(labels: pd.DataFrame, preds: pd.DataFrame,
                     unprepared: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
  """Appends the unprepared utterances, filled like face-less ones (`fill_faceless`)."""
  if len(unprepared) == 0:
    return labels, preds
  labels = pd.concat([labels, unprepared], ignore_index=True)
  blank = unprepared[["video", "utterance"]].assign(valence=np.nan, arousal=np.nan)
  preds, _ = fill_faceless(pd.concat([preds, blank], ignore_index=True))
  return labels, preds


def _sweep_staging(output_dir: str) -> None:
  """Removes staging folders of evaluations that were killed (their process is gone)."""
  import shutil

  for name in os.listdir(output_dir):
    if not (name.startswith(".evaluate-") and name.endswith(".tmp")):
      continue
    try:
      pid = int(name[len(".evaluate-"):-len(".tmp")].split("-")[0])
      os.kill(pid, 0)
      alive = pid != os.getpid()
    except (ValueError, ProcessLookupError):
      alive = False
    except PermissionError:
      alive = True
    if not alive:
      shutil.rmtree(os.path.join(output_dir, name), ignore_errors=True)


def evaluate_workdir(workdir: str, data_dir: str, split: str, output_dir: str, labels_csv: str | None = None,
                     tune_postprocess: bool = False, postprocess_path: str | None = None,
                     which: str = "best", postprocess_experiment: str = "",
                     postprocess_procedure: str = "") -> dict:
  """Evaluates a training workdir on one split and writes the outputs (see the module docstring).

  Outputs are written as a unit and last: everything is computed and checked first, written
  into a staging folder inside `output_dir`, then the old `metrics.json` is removed, the
  other files are moved into place and `metrics.json` last (its presence means the set
  beside it is complete and consistent); the tuned choice reaches `<workdir>/postprocess.json`
  only after that. A failure before the moves leaves every earlier output as it was.

  Args:
    workdir: training workdir (its best weights, or the latest checkpoint with which="latest").
    data_dir: prepared TFRecords.
    split: split name of the shards (e.g. "validation").
    output_dir: where metrics.json and the CSVs go.
    labels_csv: the official label CSV of the split; the prediction CSV takes its columns and
      row order. Every prepared utterance must be labelled; a labelled utterance that was not
      prepared (no frames at all) is filled like a face-less one, scored, and counted and
      named in metrics.json (`utterances_not_prepared`, `not_prepared`).
    tune_postprocess: choose the Table VI post-processing on this split (`postprocess.tune`, the
      paper's procedure unless the settings say "search"; on the prepared utterances), save the
      choice as `<workdir>/postprocess.json` (and in output_dir) and report post-processed metrics.
    postprocess_path: apply a saved choice unchanged (e.g. tuned on validation, applied to test).
    which: "best" or "latest" weights.
    postprocess_experiment: with tune_postprocess, the registered (Table VI) row whose
      post-processing settings apply (`postprocess_config`).
    postprocess_procedure: with tune_postprocess, "paper" or "search" in place of the settings'.

  Returns:
    The metrics written to `metrics.json`.

  Raises:
    ValueError: labels that do not line up (prepared utterances the labels lack), non-finite
      predictions (naming the utterance), a bad saved choice.
  """
  import shutil

  if (postprocess_experiment or postprocess_procedure) and not tune_postprocess:
    raise ValueError("postprocess_experiment and postprocess_procedure choose how to tune: they need "
                     "tune_postprocess (a saved choice, postprocess_path, is applied as it is)")
  if tune_postprocess and postprocess_path:
    raise ValueError("tune_postprocess and postprocess_path exclude each other: tune here, or apply a saved choice")
  # Every input is read before the network runs, so a bad one fails fast and names itself.
  official = label_files.read_omg_labels(labels_csv) if labels_csv else None
  saved_choice = postprocess.load_choice(postprocess_path) if postprocess_path else None
  model, config = workdir_lib.load_workdir_model(workdir, which=which)
  settings, source = postprocess_config(config, postprocess_experiment, postprocess_procedure)
  records = predict_split(model, config, data_dir, split)
  unprepared = unprepared_utterances(official, records) if official is not None else pd.DataFrame(
      columns=["video", "utterance", "valence", "arousal"])
  not_prepared = {"utterances_not_prepared": len(unprepared),
                  "not_prepared": ["/".join(_key(v, u)) for v, u in zip(unprepared["video"], unprepared["utterance"])]}
  aggregate = config.data.utterance_aggregate
  prepared_labels, preds, faceless = utterance_table(records, aggregate)
  labels, preds = _with_unprepared(prepared_labels, preds, unprepared)
  raw = score_tables(labels, preds)
  raw.update(frame_level_ccc(records))
  raw["utterances_without_face"] = faceless
  raw.update(not_prepared)
  result = {split: raw, f"{split}_raw": raw, "experiment": config.name, "workdir": workdir}

  choice = saved_choice
  if tune_postprocess:
    choice = postprocess.tune(records, prepared_labels, aggregate=aggregate, config=settings)
    source = f"chosen on {split} with the settings of {source}"
  elif postprocess_path:
    source = f"saved choice {postprocess_path}, applied unchanged"
  if choice is not None:
    values = postprocess.apply(choice, records, aggregate=aggregate)
    _, post_preds, _ = utterance_table(records, aggregate, values=values)
    _, post_preds = _with_unprepared(prepared_labels, post_preds, unprepared)
    post = score_tables(labels, post_preds)
    post["utterances_without_face"] = faceless
    post.update(not_prepared)
    post["postprocess"] = postprocess.choice_to_dict(choice)
    post["postprocess_procedure"] = choice.procedure
    post["postprocess_description"] = postprocess.PROCEDURE_DESCRIPTIONS[choice.procedure]
    post["postprocess_source"] = source
    result["postprocess_procedure"] = choice.procedure
    result[split] = post
    result[f"{split}_postprocessed"] = post
    preds = post_preds

  os.makedirs(output_dir, exist_ok=True)
  _sweep_staging(output_dir)
  staging = os.path.join(output_dir, f".evaluate-{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
  os.makedirs(staging)
  try:
    names = [f"frame_predictions_{split}.csv", f"predictions_{split}.csv"]
    _write_frame_predictions(os.path.join(staging, names[0]), records)
    if official is not None:
      metrics.write_prediction_csv(os.path.join(staging, names[1]), official, preds)
    else:
      preds.to_csv(os.path.join(staging, names[1]), index=False)
    if tune_postprocess:
      names.append("postprocess.json")
      postprocess.save_choice(choice, os.path.join(staging, names[-1]))
    result["files"] = sorted(names)
    with open(os.path.join(staging, "metrics.json"), "w") as f:
      json.dump(result, f, indent=2, default=float)
    # The moves: metrics.json goes first and comes back last, so it never describes a mixed set.
    if os.path.exists(os.path.join(output_dir, "metrics.json")):
      os.remove(os.path.join(output_dir, "metrics.json"))
    for name in names + ["metrics.json"]:
      os.replace(os.path.join(staging, name), os.path.join(output_dir, name))
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  if tune_postprocess:  # The workdir's saved choice changes only once its evaluation is complete.
    postprocess.save_choice(choice, os.path.join(workdir, "postprocess.json"))
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
  with record_files.atomic_output(path) as tmp:
    table.to_csv(tmp, index=False, float_format="%.6f")
