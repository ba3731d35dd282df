"""Data preparation commands: videos -> tracked 96x96 faces -> TFRecords; the synthetic set."""
