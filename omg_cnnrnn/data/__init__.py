"""Data: feature keys, SequenceExample encode/decode, prepared-data reader, tf.data pipelines."""
