"""Distributed training on TensorFlow's own engine (tf.distribute), and the exact global-batch CCC.

Strategies (`--strategy` of `omg_cnnrnn.train`):
- `default`: one device (the first GPU if any, else the CPU);
- `mirrored`: `tf.distribute.MirroredStrategy`, every GPU of this machine (or the
  devices given), variables mirrored, gradients all-reduced;
- `multi_worker`: `tf.distribute.MultiWorkerMirroredStrategy` across machines; the
  cluster comes from the `TF_CONFIG` environment variable (see README).

The CCC loss is a batch statistic. Computed per replica and averaged it is a
different, biased loss (with one sequence per replica it is not even defined).
`cross_replica_sum` gives every replica the global-batch sums of the loss's
sufficient statistics (`losses.moment_sums`), with gradients that make the
replicas' summed gradients equal the gradient of the single-device loss on the
same global batch; see its docstring.

Mixed precision (`--precision=mixed_float16|mixed_bfloat16`) sets the Keras
global dtype policy; the model's output layer and the loss stay float32.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf
import tf_keras

STRATEGIES = ("default", "mirrored", "multi_worker")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


def make_strategy(name: str = "default", devices: list[str] | None = None) -> tf.distribute.Strategy:
  """The tf.distribute strategy `name`.

  Args:
    name: one of STRATEGIES.
    devices: `mirrored` only: devices to mirror over (default: all GPUs, else the CPU).

  Returns:
    The strategy. `multi_worker` reads `TF_CONFIG`; it raises a ValueError naming the
    variable when the variable is missing or malformed, rather than silently training
    one worker alone.
  """
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    return tf.distribute.MirroredStrategy(devices=devices)
  if name == "multi_worker":
    raw = os.environ.get("TF_CONFIG")
    if not raw:
      raise ValueError("--strategy=multi_worker needs the TF_CONFIG environment variable "
                       "(cluster and this task's type/index; see README 'Training on several GPUs or machines')")
    try:
      spec = json.loads(raw)
      spec["cluster"]["worker"], spec["task"]["type"], spec["task"]["index"]  # pylint: disable=pointless-statement
    except (ValueError, KeyError, TypeError) as e:
      raise ValueError(f"TF_CONFIG is not a valid cluster spec ({e!r}): {raw}") from e
    return tf.distribute.MultiWorkerMirroredStrategy()
  raise ValueError(f"unknown strategy {name!r}; expected one of {STRATEGIES}")


def worker_info(strategy: tf.distribute.Strategy) -> tuple[bool, int, int]:
  """(is_chief, worker index, number of workers) of this process under `strategy`."""
  resolver = getattr(strategy, "cluster_resolver", None)
  cluster = resolver.cluster_spec().as_dict() if resolver is not None else {}
  if not cluster:
    return True, 0, 1
  task_type, task_id = resolver.task_type, resolver.task_id or 0
  chief = task_type == "chief" or (task_type == "worker" and task_id == 0 and "chief" not in cluster)
  return chief, int(task_id), len(cluster.get("worker", [])) or 1


def per_replica_batch(global_batch: int, strategy: tf.distribute.Strategy) -> int:
  """The batch each replica gets; the global batch must divide evenly (a clear error otherwise)."""
  replicas = strategy.num_replicas_in_sync
  if global_batch % replicas:
    raise ValueError(f"global batch {global_batch} (data.batch_size) does not divide over {replicas} replicas; "
                     f"use --override data.batch_size=<multiple of {replicas}>")
  return global_batch // replicas


def cross_replica_sum(local: tf.Tensor) -> tf.Tensor:
  """The sum of `local` over all replicas in sync, with per-replica gradients.

  Value: `sum_r local_r` (identical on every replica). Gradient: on replica r it
  flows into `local_r` only, with the upstream gradient of the global value. The
  optimizer then SUMS the replicas' gradients (Keras' convention for the
  per-replica losses), so for `loss = f(cross_replica_sum(s))`

      sum_r d f(S) / d theta |_(via s_r) = sum_r f'(S) ds_r/d theta = d f(S) / d theta,

  the gradient of the single-device loss on the global batch, exactly. (The
  usual `loss / num_replicas` scaling must therefore NOT be applied.)

  Outside a distribution strategy (or with one replica) this is the identity.
  """
  context = tf.distribute.get_replica_context()
  if context is None or context.num_replicas_in_sync == 1:
    return local
  total = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.stop_gradient(local))
  return tf.stop_gradient(total) + (local - tf.stop_gradient(local))


def set_precision(precision: str = "float32") -> None:
  """Sets the Keras global dtype policy (process-wide: set it before building the model)."""
  if precision not in PRECISIONS:
    raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
  tf_keras.mixed_precision.set_global_policy(precision)
