"""NumPy reference metrics: CCC (two forms), Pearson, MSE.

These are the ground truth the TensorFlow loss is tested against, and what
evaluation reports. They know nothing of models or TensorFlow.
"""

from __future__ import annotations

import numpy as np


def _as_pair(predictions, labels) -> tuple[np.ndarray, np.ndarray]:
  p = np.asarray(predictions, dtype=np.float64).reshape(-1)
  t = np.asarray(labels, dtype=np.float64).reshape(-1)
  if p.shape != t.shape:
    raise ValueError(f"predictions ({p.size}) and labels ({t.size}) differ in length")
  if p.size == 0:
    raise ValueError("CCC of an empty set is undefined")
  return p, t


def ccc(predictions, labels) -> float:
  """Concordance correlation coefficient, covariance form, population moments.

  CCC = 2 cov(p, t) / (var p + var t + (mean p - mean t)^2) (paper Eq. 1). Returns 0
  where the denominator is 0 (both constant and equal): CCC's limit, not NaN.
  """
  p, t = _as_pair(predictions, labels)
  mp, mt = p.mean(), t.mean()
  cov = np.mean((p - mp) * (t - mt))
  denom = p.var() + t.var() + (mp - mt) ** 2
  return float(2.0 * cov / denom) if denom > 0 else 0.0


def pearson(predictions, labels) -> float:
  """Pearson correlation; 0 (not NaN) when either side is constant."""
  p, t = _as_pair(predictions, labels)
  sp, st = p.std(), t.std()
  if sp == 0 or st == 0:
    return 0.0
  return float(np.mean((p - p.mean()) * (t - t.mean())) / (sp * st))


def ccc_official(predictions, labels) -> float:
  """CCC as the OMG challenge's `calculateEvaluationCCC.py` computes it.

  `2 rho sd_t sd_p / (sd_p^2 + sd_t^2 + (mean_p - mean_t)^2)` with NumPy population
  standard deviations and Pearson's rho. Mathematically equal to `ccc`; the official
  script gives NaN for a constant prediction (scipy's pearsonr), this returns 0.
  """
  p, t = _as_pair(predictions, labels)
  rho = pearson(p, t)
  sp, st = p.std(), t.std()
  denom = sp**2 + st**2 + (p.mean() - t.mean()) ** 2
  return float(2.0 * rho * st * sp / denom) if denom > 0 else 0.0


def mse(predictions, labels) -> float:
  """Mean squared error."""
  p, t = _as_pair(predictions, labels)
  return float(np.mean((p - t) ** 2))
