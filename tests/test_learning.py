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

# The testing row's layout at 16x16 crops with the VGG-16 at 1/8 width (conv1 8 ... conv5 64 channels; at
# 1/16 and 64 training utterances, 2 of 8 seeds stayed below 0.45 valence CCC), a GRU of 16. Adam at 3e-3
# after a 100-step warm-up (the scratch recipe's 50 let 2 of 16 seeds collapse, below). Every setting was
# chosen from seed sweeps (one-off, not committed: this test's configs over Trainer and data seeds).
SIZE = 16
TINY = {"model.streams": [{"backbone": "vgg16", "fc_units": [16], "fc_dropout": [0.5],
                           "rnn_inputs": [["conv5_3", "pool5", "fc1"]], "backbone_width": 0.125}],
        "model.rnn_units": 16, "data.image_size": SIZE, "data.shuffle_buffer": 64,
        "train.log_every_steps": 1000, "train.checkpoint_every_steps": 1000, "train.eval_every_steps": 0,
        "train.learning_rate": 3e-3, "train.warmup_steps": 100, "train.num_steps": 200}


# Two 200-step runs: 20 CPU-s at ~330 GFLOP/s.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trend(tmp_path_factory):
  root = tmp_path_factory.mktemp("trend")
  # 256 training utterances: with 64 both rows fit the training split (the CNN-only one memorising each
  # utterance's texture) and how well the recurrent one generalised varied from seed to seed.
  fake_data.write_trend_split(str(root / "records"), "train", num_utterances=256, size=SIZE, seed=0)
  # 256 validation utterances: the CCC of a prediction unrelated to the label then has a spread of
  # about 1 / sqrt(256) = 0.06, so the chance-level bound below (0.25) is 4 of them; with 32 (0.18)
  # a CNN-only run landed at -0.31 on a fresh clone.
  fake_data.write_trend_split(str(root / "records"), "validation", num_utterances=256, size=SIZE, seed=1)
  return str(root / "records")


def _run(config, workdir, data, init_from=()):
  training.configure_process()
  trainer = training.Trainer(config, workdir, data, eval_split=None, init_from=init_from, log=lambda s: None)
  trainer.train()
  return trainer.evaluate_split("validation")


def test_recurrent_row_learns_what_only_time_shows_and_cnn_only_cannot(trend, tmp_path):
  base = experiments.get("testing")
  scratch = start.Start("scratch", (), ())
  rnn = configs.override(start.apply(base, scratch), {**TINY, "data.sequence_length": 8, "data.batch_size": 16})
  cnn = configs.override(start.apply(base, scratch), {
      **TINY, "model.streams": [{**TINY["model.streams"][0], "rnn_inputs": [], "fc_units": [16, 16],
                                 "fc_dropout": [0.5]}],
      "data.sequence_length": 1, "data.batch_size": 128})
  got_rnn = _run(rnn, str(tmp_path / "rnn"), trend)
  got_cnn = _run(cnn, str(tmp_path / "cnn"), trend)
  # Measured (valence / arousal CCC; this test is Trainer seed 0 on trend data seed 0/1 as above):
  # - Trainer seeds 0-15: recurrent 0.57-0.89 / 0.54-0.93 (seed 0: 0.83 / 0.69);
  # - trend data drawn from seeds 1/2, Trainer seeds 0-7: recurrent 0.64-0.88 / 0.53-0.93, CNN-only -0.06-0.10;
  # - oneDNN capped at AVX2, Trainer seeds 0-3: recurrent 0.66-0.88 / 0.63-0.94, CNN-only -0.04-0.06.
  # Before (1/16 width, 32x32, 64 training utterances, 400 steps, 50-step warm-up), seeds 2 and 3 gave
  # 0.36 / 0.28 and 0.44 / 0.45, below these bounds; with 256 utterances and the 50-step warm-up 2 of 16
  # seeds ended at a constant output (0.00 / 0.00: activations grown to hundreds, the GRUs saturated).
  assert got_rnn["valence_ccc"] > 0.4 and got_rnn["arousal_ccc"] > 0.4, got_rnn
  assert abs(got_cnn["valence_ccc"]) < 0.25, got_cnn
  assert got_rnn["valence_ccc"] > abs(got_cnn["valence_ccc"]) + 0.2
