"""The training objective of Sec. III-D: 1 - CCC over per-sequence aggregates, or MSE.

For each sequence of the batch, f(.) takes the mean (or median) of its valid
per-frame predictions and of its valid per-frame labels; across the B such
values (4 in the paper) the CCC is computed with population moments, per
output; the loss is the average over valence and arousal of (1 - CCC) (the
released code adds (1 - CCC) / 2 per dimension). MSE over the same aggregates
is the released code's alternative. With `aggregate="frame"` (not in the paper;
for per-frame labels such as Aff-Wild's) every valid frame of the batch is a sample.

Exactness and robustness:
- masked frames never count: a sequence's aggregate uses its valid frames only,
  and a sequence with no valid frame drops out of the batch statistics;
- the moments come from sums (count, sum x, sum y, sum x^2, sum y^2, sum xy),
  which are all-reduced across the replicas of a tf.distribute strategy, so the
  loss and its gradients are those of the global batch (`distribute.cross_replica_sum`);
- the denominator carries a tiny epsilon, so constant predictions, constant
  labels, a batch of one and an all-masked batch give a finite loss with finite
  gradients (CCC -> 0 where it is undefined, its limit).
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras

from omg_cnnrnn import distribute

AGGREGATES = ("mean", "median", "frame")
LOSS_TYPES = ("ccc", "mse")


def sequence_aggregate(values: tf.Tensor, mask: tf.Tensor, aggregate: str = "mean") -> tuple[tf.Tensor, tf.Tensor]:
  """Mean or median over time of the valid frames of each sequence.

  Args:
    values: (B, T, D) per-frame values.
    mask: (B, T) 1 for valid frames, 0 for masked ones.
    aggregate: "mean" or "median" (the median of an even count is the mean of the two middle values);
      "frame" is not an aggregate over time: use `ccc_loss` with it.

  Returns:
    (B, D) aggregates (0 for a sequence without valid frames) and a (B,) float
    indicator of sequences with at least one valid frame.
  """
  values = tf.convert_to_tensor(values)
  mask = tf.cast(mask, values.dtype)
  count = tf.reduce_sum(mask, axis=1)  # (B,)
  valid = tf.cast(count > 0, values.dtype)
  if aggregate == "mean":
    total = tf.reduce_sum(values * mask[:, :, tf.newaxis], axis=1)
    return total / tf.maximum(count, 1.0)[:, tf.newaxis], valid
  if aggregate != "median":
    raise ValueError(f"unknown aggregate {aggregate!r}; expected one of {AGGREGATES}")
  # Masked frames are pushed past every valid value, then the middle valid ranks are read.
  big = tf.stop_gradient(tf.reduce_max(tf.abs(values))) + 1.0
  padded = tf.where(mask[:, :, tf.newaxis] > 0, values, big + tf.zeros_like(values))
  ordered = tf.sort(padded, axis=1)  # (B, T, D)
  n = tf.cast(count, tf.int32)
  low = tf.maximum((n - 1) // 2, 0)
  high = tf.maximum(n // 2, 0)
  take_low = tf.gather(ordered, low, axis=1, batch_dims=1)
  take_high = tf.gather(ordered, high, axis=1, batch_dims=1)
  median = 0.5 * (take_low + take_high) * valid[:, tf.newaxis]
  return median, valid


def moment_sums(predictions: tf.Tensor, labels: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
  """Sufficient statistics of the CCC: (6, D) = [n, Σx, Σy, Σx², Σy², Σxy] over weighted rows.

  Args:
    predictions, labels: (B, D) per-sequence aggregates.
    weights: (B,) 1 for sequences that count, 0 otherwise.
  """
  w = weights[:, tf.newaxis]
  x, y = predictions, labels
  n = tf.reduce_sum(w * tf.ones_like(x), axis=0)
  return tf.stack([
      n, tf.reduce_sum(w * x, 0), tf.reduce_sum(w * y, 0),
      tf.reduce_sum(w * x * x, 0), tf.reduce_sum(w * y * y, 0), tf.reduce_sum(w * x * y, 0),
  ])


def ccc_from_sums(sums: tf.Tensor, epsilon: float = 1e-8) -> tf.Tensor:
  """CCC per output from `moment_sums` (population moments); 0 where nothing counts."""
  n, sx, sy, sxx, syy, sxy = tf.unstack(sums)
  safe_n = tf.maximum(n, 1.0)
  mx, my = sx / safe_n, sy / safe_n
  # Clamped at 0: E[x^2] - E[x]^2 can round to a tiny negative number.
  vx = tf.maximum(sxx / safe_n - mx * mx, 0.0)
  vy = tf.maximum(syy / safe_n - my * my, 0.0)
  cov = sxy / safe_n - mx * my
  ccc = 2.0 * cov / (vx + vy + tf.square(mx - my) + epsilon)
  return tf.where(n > 0, ccc, tf.zeros_like(ccc))


def ccc_loss(labels, predictions, mask=None, aggregate: str = "mean", loss_type: str = "ccc",
             epsilon: float = 1e-8, mse_weight: float = 0.0) -> tf.Tensor:
  """The paper's loss on one batch.

  Args:
    labels: (B, T, D) per-frame labels (OMG: the utterance label on every frame).
    predictions: (B, T, D) per-frame predictions.
    mask: (B, T) frame mask (None: all frames valid).
    aggregate: f(.) of Sec. III-D, "mean" or "median" per sequence; or "frame": the CCC
      over every valid frame of the batch (per-frame labels).
    loss_type: "ccc" (1 - CCC) or "mse" (released-code option).
    epsilon: added to the CCC denominator.
    mse_weight: with "ccc", adds this times the MSE of the same aggregates (not in the paper:
      `train.mse_weight`; 0 = the paper's loss).

  Returns:
    Scalar loss: mean over the D outputs of (1 - CCC_d) [+ mse_weight * MSE_d], or of MSE_d.
  """
  predictions = tf.convert_to_tensor(predictions)
  if predictions.dtype in (tf.float16, tf.bfloat16):
    predictions = tf.cast(predictions, tf.float32)  # Mixed precision: the moments need float32.
  labels = tf.cast(labels, predictions.dtype)
  if mask is None:
    mask = tf.ones(tf.shape(predictions)[:2], predictions.dtype)
  mask = tf.cast(mask, predictions.dtype)
  if aggregate == "frame":
    # Every valid frame is a sample (per-frame labels, Aff-Wild): (B * T, D) rows.
    depth = tf.shape(predictions)[-1]
    pred_agg, label_agg = tf.reshape(predictions, [-1, depth]), tf.reshape(labels, [-1, depth])
    valid = tf.reshape(mask, [-1])
  else:
    pred_agg, valid = sequence_aggregate(predictions, mask, aggregate)
    label_agg, _ = sequence_aggregate(labels, mask, aggregate)
  # Under a tf.distribute strategy the sums cover the GLOBAL batch (all replicas), so the
  # loss and its gradients are those of one device on the whole batch (distribute.py).
  if loss_type not in LOSS_TYPES:
    raise ValueError(f"unknown loss type {loss_type!r}; expected one of {LOSS_TYPES}")
  loss = 0.0
  if loss_type == "ccc":
    sums = distribute.cross_replica_sum(moment_sums(pred_agg, label_agg, valid))
    loss = tf.reduce_mean(1.0 - ccc_from_sums(sums, epsilon))
    if not mse_weight:
      return loss
  sq = tf.reduce_sum(tf.square(pred_agg - label_agg) * valid[:, tf.newaxis], axis=0)
  sq, count = tf.unstack(distribute.cross_replica_sum(
      tf.stack([sq, tf.reduce_sum(valid) * tf.ones_like(sq)])))
  mse = tf.reduce_mean(sq / tf.maximum(count, 1.0))
  return mse if loss_type == "mse" else loss + mse_weight * mse


class CCCLoss(tf_keras.losses.Loss):
  """Keras wrapper of `ccc_loss`; the frame mask comes as `sample_weight` (B, T).

  The loss is a batch statistic, not a mean of per-sample terms, so `__call__`
  is overridden: `sample_weight` is the frame mask, used exactly, not a weight
  applied after reduction.
  """

  def __init__(self, aggregate: str = "mean", loss_type: str = "ccc", epsilon: float = 1e-8,
               mse_weight: float = 0.0, name: str = "ccc_loss", reduction=tf_keras.losses.Reduction.AUTO):
    super().__init__(name=name, reduction=reduction)
    if aggregate not in AGGREGATES:
      raise ValueError(f"unknown aggregate {aggregate!r}; expected one of {AGGREGATES}")
    if loss_type not in LOSS_TYPES:
      raise ValueError(f"unknown loss type {loss_type!r}; expected one of {LOSS_TYPES}")
    self.aggregate = aggregate
    self.loss_type = loss_type
    self.epsilon = epsilon
    self.mse_weight = float(mse_weight)

  def __call__(self, y_true, y_pred, sample_weight=None):
    with tf.name_scope(self.name):
      return ccc_loss(y_true, y_pred, sample_weight, self.aggregate, self.loss_type, self.epsilon, self.mse_weight)

  def call(self, y_true, y_pred):
    return ccc_loss(y_true, y_pred, None, self.aggregate, self.loss_type, self.epsilon, self.mse_weight)

  def get_config(self):
    config = super().get_config()
    config.update(aggregate=self.aggregate, loss_type=self.loss_type, epsilon=self.epsilon,
                  mse_weight=self.mse_weight)
    return config
