"""The speed of this machine, measured: printed beside every time the project reports.

Machines of one kind differ several-fold (AVX-512 vs AVX2 only), so a time means little
without the dense float32 matmul rate measured in the same run. Importing it does not import
TensorFlow (`usable_cores` serves code that sets TensorFlow's threads before it starts).
"""

from __future__ import annotations

import os
import time


def usable_cores() -> int:
  """The CPU cores this process may run on (its affinity mask where the OS has one)."""
  return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def matmul_peak(n: int, repeats: int = 20) -> float:
  """Dense float32 matmul GFLOP/s on this machine (best of 3 runs of `repeats` chained matmuls)."""
  import numpy as np
  import tensorflow as tf

  a = tf.random.normal((n, n))
  b = tf.random.normal((n, n)) / np.sqrt(n)

  @tf.function
  def chain(x):
    for _ in range(repeats):
      x = tf.matmul(x, b)
    return x

  chain(a).numpy()
  best = float("inf")
  for _ in range(3):
    t0 = time.perf_counter()
    chain(a).numpy()
    best = min(best, time.perf_counter() - t0)
  return 2.0 * n**3 * repeats / best / 1e9
