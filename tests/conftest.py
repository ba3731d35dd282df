"""Shared pytest set-up: quiet TensorFlow, deterministic seeds, the shared/ folder."""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_OMG = REPO.parent / "shared" / "omg"


@pytest.fixture
def omg_labels_dir():
  """The real OMG-Emotion label files beside the checkout; skips where they are absent."""
  if not (SHARED_OMG / "omg_TrainVideos.csv").exists():
    pytest.skip(f"real OMG label files not found at {SHARED_OMG}")
  return SHARED_OMG
