"""Tests of the config dataclasses: JSON round trip and overrides."""

import json

import pytest

from omg_cnnrnn import configs, experiments


@pytest.mark.parametrize("name", experiments.names())
def test_every_experiment_round_trips_through_json(name):
  config = experiments.get(name)
  again = configs.experiment_from_dict(json.loads(config.to_json()))
  assert again == config
  assert isinstance(again.model.streams[0].rnn_inputs, tuple)


def test_override_from_strings_and_mapping():
  base = experiments.get("table3/cnn_rnn")
  changed = configs.override(base, ["train.num_steps=7", "model.rnn_units=64", "data.utterance_aggregate=median"])
  assert (changed.train.num_steps, changed.model.rnn_units, changed.data.utterance_aggregate) == (7, 64, "median")
  assert base.train.num_steps != 7  # frozen: the registered row is untouched
  again = configs.override(base, {"model.gru_reset_after": True})
  assert again.model.gru_reset_after is True
  assert configs.override(base, ["train.learning_rate=1"]).train.learning_rate == 1.0


def test_bad_overrides_name_the_key():
  base = experiments.get("testing")
  with pytest.raises(KeyError, match="train.nope"):
    configs.override(base, ["train.nope=1"])
  with pytest.raises(ValueError, match="key=value"):
    configs.override(base, ["train.num_steps"])


def test_paper_numbers_live_in_config_fields():
  row = experiments.get("table3/cnn_3rnn_last_conv")
  assert row.data.sequence_length == 80 and row.data.batch_size == 4 and row.data.image_size == 96
  assert row.model.rnn_units == 128 and row.model.rnn_layers == 2 and row.model.rnn_dropout == 0.2
  assert row.model.streams[0].fc_units == (4096,) and row.model.streams[0].fc_dropout == (0.5,)
  assert row.train.learning_rate == 0.001
  assert experiments.get("table3/cnn_2rnn_fc").model.hidden_fc_units == 64
  cnn_only = experiments.get("table3/cnn_only")
  assert cnn_only.data.batch_size == 80 and cnn_only.data.sequence_length == 1
  assert cnn_only.model.streams[0].fc_units == (4096, 2048)
  post = experiments.get("table6/vgg16_3rnn_last_conv_post").postprocess
  assert (post.median_window_valence, post.median_window_arousal) == (81, 3)
