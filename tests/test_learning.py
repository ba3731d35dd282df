"""Learning tests: a recurrent row learns what only time shows; a CNN-only row cannot.

These fail when learning breaks (a dead recipe, a GRU that ignores its input, masks or
labels scrambled by the pipeline), which no shape or parity test would notice.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import fake_data  # noqa: E402

from omg_cnnrnn import configs, experiments, start, training  # noqa: E402

TINY = {"model.streams": [{"backbone": "vgg16", "fc_units": [16], "fc_dropout": [0.5],
                           "rnn_inputs": [["conv5_3", "pool5", "fc1"]], "backbone_width": 0.0625}],
        "model.rnn_units": 16, "data.image_size": 32, "data.shuffle_buffer": 64,
        "train.log_every_steps": 1000, "train.checkpoint_every_steps": 1000, "train.eval_every_steps": 0}


# Two 400-step runs: a minute on 2 cores.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trend(tmp_path_factory):
  root = tmp_path_factory.mktemp("trend")
  fake_data.write_trend_split(str(root / "records"), "train", num_utterances=64, seed=0)
  # 256 validation utterances: the CCC of a prediction unrelated to the label then has a spread of
  # about 1 / sqrt(256) = 0.06, so the chance-level bound below (0.25) is 4 of them; with 32 (0.18)
  # a CNN-only run landed at -0.31 on a fresh clone.
  fake_data.write_trend_split(str(root / "records"), "validation", num_utterances=256, seed=1)
  return str(root / "records")


def _run(config, workdir, data, init_from=()):
  training.configure_process()
  trainer = training.Trainer(config, workdir, data, eval_split=None, init_from=init_from, log=lambda s: None)
  trainer.train()
  return trainer.evaluate_split("validation")


def test_recurrent_row_learns_what_only_time_shows_and_cnn_only_cannot(trend, tmp_path):
  base = experiments.get("testing")
  scratch = start.Start("scratch", (), ())
  rnn = configs.override(start.apply(base, scratch), {
      **TINY, "data.sequence_length": 8, "data.batch_size": 16, "train.num_steps": 400,
      "train.learning_rate": 3e-3})
  cnn = configs.override(start.apply(base, scratch), {
      **TINY, "model.streams": [{**TINY["model.streams"][0], "rnn_inputs": [], "fc_units": [16, 16],
                                 "fc_dropout": [0.5]}],
      "data.sequence_length": 1, "data.batch_size": 128, "train.num_steps": 400, "train.learning_rate": 3e-3})
  got_rnn = _run(rnn, str(tmp_path / "rnn"), trend)
  got_cnn = _run(cnn, str(tmp_path / "cnn"), trend)
  # Measured (tiny VGG-16 at 1/16 width, GRU 16, 400 steps, Trainer seed 0 as here; valence / arousal CCC):
  # recurrent 0.65 / 0.60, CNN-only 0.01 on valence; with oneDNN capped at AVX2 0.63 / 0.55 and -0.03. The runs
  # level off early here (200 steps: 0.70 / 0.64) but not everywhere: at 200 steps the AVX2 run's arousal was
  # 0.44. Other seeds learn less (400 steps: seed 1 0.61 / 0.63, seed 2 0.36 / 0.28, seed 3 0.44 / 0.45), so
  # the bounds below hold for this seed, not for every one (issue 13's note).
  assert got_rnn["valence_ccc"] > 0.35 and got_rnn["arousal_ccc"] > 0.5, got_rnn
  assert abs(got_cnn["valence_ccc"]) < 0.25, got_cnn
  assert got_rnn["valence_ccc"] > abs(got_cnn["valence_ccc"]) + 0.2
