"""Data: feature keys, SequenceExample encode/decode, prepared-data reader, tf.data pipelines."""

from omg_cnnrnn.data.records import read_prepared

__all__ = ["read_prepared"]
