"""omg_cnnrnn: the multi-component CNN-RNN of Kollias & Zafeiriou (OMG-Emotion 2018) in TF2.

`build_model(name)` builds the Keras model of a registered paper-table row;
`python -m omg_cnnrnn.experiments --list` lists the rows.
"""

__version__ = "0.1.0"


def build_model(name: str, **kwargs):
  """Returns the Keras model of the registered experiment `name` (see `models.build_model`)."""
  from omg_cnnrnn import experiments, models  # Lazy: importing the package stays cheap.

  config = experiments.get(name)
  return models.build_model(config.model, image_size=config.data.image_size, **kwargs)
