"""Tests of the CCC loss against the NumPy reference in `omg_cnnrnn.metrics`."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from omg_cnnrnn import losses, metrics


def _reference(labels, predictions, mask, aggregate="mean", loss_type="ccc"):
  """Independent NumPy loss: aggregate valid frames per sequence, then 1 - CCC per output."""
  agg = np.mean if aggregate == "mean" else np.median
  keep = [b for b in range(labels.shape[0]) if mask[b].sum() > 0]
  out = []
  for d in range(labels.shape[2]):
    p = np.array([agg(predictions[b, mask[b] > 0, d]) for b in keep])
    t = np.array([agg(labels[b, mask[b] > 0, d]) for b in keep])
    out.append(1.0 - metrics.ccc(p, t) if loss_type == "ccc" else metrics.mse(p, t))
  return float(np.mean(out))


def _batch(seed, b=4, t=7, d=2):
  rng = np.random.default_rng(seed)
  labels = rng.uniform(-1, 1, (b, t, d)).astype(np.float32)
  preds = rng.normal(0, 0.5, (b, t, d)).astype(np.float32)
  mask = (rng.uniform(size=(b, t)) > 0.3).astype(np.float32)
  mask[:, 0] = 1
  return labels, preds, mask


@pytest.mark.parametrize("aggregate", ["mean", "median"])
@pytest.mark.parametrize("loss_type", ["ccc", "mse"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_numpy_reference_on_random_batches(aggregate, loss_type, seed):
  labels, preds, mask = _batch(seed)
  got = losses.ccc_loss(labels, preds, mask, aggregate=aggregate, loss_type=loss_type).numpy()
  np.testing.assert_allclose(got, _reference(labels, preds, mask, aggregate, loss_type), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("aggregate", ["mean", "median"])
def test_mse_weight_adds_that_much_of_the_mse_to_the_ccc_loss(aggregate):
  labels, preds, mask = _batch(4)
  got = losses.CCCLoss(aggregate=aggregate, mse_weight=0.7)(labels, preds, sample_weight=mask).numpy()
  want = _reference(labels, preds, mask, aggregate, "ccc") + 0.7 * _reference(labels, preds, mask, aggregate, "mse")
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  assert got > _reference(labels, preds, mask, aggregate, "ccc") + 1e-3  # The MSE part counts.
  assert losses.CCCLoss(mse_weight=0.7).get_config()["mse_weight"] == 0.7


def test_perfect_and_anticorrelated_predictions():
  rng = np.random.default_rng(3)
  labels = np.repeat(rng.uniform(-1, 1, (6, 1, 2)), 5, axis=1).astype(np.float32)
  assert losses.ccc_loss(labels, labels).numpy() == pytest.approx(0.0, abs=1e-6)
  # Mirrored around a zero-mean label set: CCC = -1, loss = 2.
  centred = labels - labels.mean(axis=0, keepdims=True)
  assert losses.ccc_loss(centred, -centred).numpy() == pytest.approx(2.0, abs=1e-5)


def test_constant_predictions_give_ccc_zero_and_finite_gradients():
  labels, _, mask = _batch(4)
  preds = tf.Variable(np.full(labels.shape, 0.3, np.float32))
  with tf.GradientTape() as tape:
    loss = losses.ccc_loss(labels, preds, mask)
  grad = tape.gradient(loss, preds)
  assert loss.numpy() == pytest.approx(1.0, abs=1e-6)
  assert np.all(np.isfinite(grad.numpy()))


@pytest.mark.parametrize("case", ["constant_labels", "batch_of_one", "one_sequence_all_masked",
                                  "all_masked", "both_constant_equal"])
@pytest.mark.parametrize("aggregate", ["mean", "median"])
def test_degenerate_batches_are_finite(case, aggregate):
  labels, preds, mask = _batch(5)
  if case == "constant_labels":
    labels[:] = 0.5
  elif case == "batch_of_one":
    labels, preds, mask = labels[:1], preds[:1], mask[:1]
  elif case == "one_sequence_all_masked":
    mask[2] = 0
  elif case == "all_masked":
    mask[:] = 0
  elif case == "both_constant_equal":
    labels[:] = 0.2
    preds[:] = 0.2
  var = tf.Variable(preds)
  with tf.GradientTape() as tape:
    loss = losses.ccc_loss(labels, var, mask, aggregate=aggregate)
  grad = tape.gradient(loss, var)
  assert np.isfinite(loss.numpy())
  assert np.all(np.isfinite(grad.numpy()))
  if case == "one_sequence_all_masked":
    keep = [0, 1, 3]
    ref = _reference(labels[keep], preds[keep], mask[keep], aggregate)
    np.testing.assert_allclose(loss.numpy(), ref, rtol=1e-5)
    # The empty sequence gets no gradient at all.
    assert np.all(grad.numpy()[2] == 0)
  if case == "all_masked":
    assert np.all(grad.numpy() == 0)


@pytest.mark.parametrize("aggregate", ["mean", "median"])
def test_masked_frames_are_ignored_exactly(aggregate):
  labels, preds, mask = _batch(6)
  base = losses.ccc_loss(labels, preds, mask, aggregate=aggregate).numpy()
  noisy_preds, noisy_labels = preds.copy(), labels.copy()
  noisy_preds[mask == 0] = 1e3
  noisy_labels[mask == 0] = -7.0
  changed = losses.ccc_loss(noisy_labels, noisy_preds, mask, aggregate=aggregate).numpy()
  assert changed == base
  var = tf.Variable(preds)
  with tf.GradientTape() as tape:
    loss = losses.ccc_loss(labels, var, mask, aggregate=aggregate)
  assert np.all(tape.gradient(loss, var).numpy()[mask == 0] == 0)


def test_median_of_even_and_odd_counts():
  values = np.array([[[1.0], [5.0], [2.0], [9.0]], [[4.0], [0.0], [3.0], [100.0]]], np.float32)
  mask = np.array([[1, 1, 1, 1], [1, 1, 1, 0]], np.float32)
  agg, valid = losses.sequence_aggregate(values, mask, "median")
  np.testing.assert_allclose(agg.numpy()[:, 0], [3.5, 3.0])
  np.testing.assert_array_equal(valid.numpy(), [1, 1])


def test_sums_form_allows_splitting_a_batch():
  """Moment sums of two halves add up to the whole batch's CCC (what a distributed all-reduce relies on)."""
  labels, preds, mask = _batch(7, b=6)
  p, valid = losses.sequence_aggregate(preds, mask)
  t, _ = losses.sequence_aggregate(labels, mask)
  whole = losses.ccc_from_sums(losses.moment_sums(p, t, valid))
  halves = losses.moment_sums(p[:3], t[:3], valid[:3]) + losses.moment_sums(p[3:], t[3:], valid[3:])
  np.testing.assert_allclose(losses.ccc_from_sums(halves).numpy(), whole.numpy(), rtol=1e-6)
  np.testing.assert_allclose(whole.numpy()[0], metrics.ccc(p.numpy()[:, 0], t.numpy()[:, 0]), rtol=1e-5)


def test_keras_loss_uses_sample_weight_as_mask_and_round_trips_config():
  labels, preds, mask = _batch(8)
  loss_fn = losses.CCCLoss(aggregate="median", loss_type="ccc", epsilon=1e-7)
  expected = losses.ccc_loss(labels, preds, mask, aggregate="median", epsilon=1e-7).numpy()
  assert loss_fn(labels, preds, sample_weight=mask).numpy() == pytest.approx(expected)
  clone = losses.CCCLoss.from_config(loss_fn.get_config())
  assert (clone.aggregate, clone.loss_type, clone.epsilon) == ("median", "ccc", 1e-7)
  assert clone(labels, preds, sample_weight=mask).numpy() == pytest.approx(expected)
  restored = tf_keras.losses.deserialize(tf_keras.losses.serialize(loss_fn),
                                         custom_objects={"CCCLoss": losses.CCCLoss})
  assert restored.get_config() == loss_fn.get_config()


def test_invalid_options_fail_loudly():
  with pytest.raises(ValueError, match="aggregate"):
    losses.CCCLoss(aggregate="mode")
  with pytest.raises(ValueError, match="loss type"):
    losses.ccc_loss(np.zeros((2, 3, 2)), np.zeros((2, 3, 2)), loss_type="l1")


def test_loss_inside_tf_function_matches_eager():
  labels, preds, mask = _batch(9)
  fn = tf.function(lambda a, b, c: losses.ccc_loss(a, b, c, aggregate="median"))
  assert fn(labels, preds, mask).numpy() == pytest.approx(losses.ccc_loss(labels, preds, mask, "median").numpy())


@pytest.mark.parametrize("seed", [0, 1])
def test_frame_objective_is_the_ccc_over_every_valid_frame(seed):
  labels, preds, mask = _batch(seed)
  got = losses.ccc_loss(labels, preds, mask, aggregate="frame").numpy()
  valid = mask.reshape(-1) > 0
  want = np.mean([1.0 - metrics.ccc(preds.reshape(-1, 2)[valid, d], labels.reshape(-1, 2)[valid, d])
                  for d in range(2)])
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  # Not the per-sequence objective: the frames' spread around their sequence's mean counts.
  assert abs(got - losses.ccc_loss(labels, preds, mask, aggregate="mean").numpy()) > 1e-3
