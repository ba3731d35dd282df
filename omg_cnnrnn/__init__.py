"""omg_cnnrnn: the multi-component CNN-RNN of Kollias & Zafeiriou (OMG-Emotion 2018) in TF2.

`build_model(name)` builds the Keras model of a registered paper-table row;
`python -m omg_cnnrnn.experiments --list` lists the rows. `load(path)` loads a trained model
for prediction (`omg_cnnrnn.api`): `load(path).predict_video("clip.mp4")` -> DataFrame.
"""

__version__ = "0.1.0"


def build_model(name: str, image_size: int | None = None, **kwargs):
  """Returns the Keras model of the registered experiment `name`.

  Args:
    name: a registered experiment (paper-table row), e.g. "table3/cnn_3rnn_last_conv".
    image_size: input size; defaults to the experiment's (96 for every paper row).
    **kwargs: passed to `omg_cnnrnn.models.build_model` (e.g. `sequence_length`).
  """
  from omg_cnnrnn import experiments, models  # Lazy: importing the package stays cheap.

  config = experiments.get(name)
  return models.build_model(config.model, image_size=image_size or config.data.image_size, **kwargs)


def load(path: str, **kwargs):
  """A trained model for prediction: `omg_cnnrnn.api.load` (SavedModel, workdir or .tflite).

  Returns an `omg_cnnrnn.api.EmotionModel`: `predict_video(path_or_capture)` -> DataFrame,
  `predict_faces(uint8 crops)` with the GRU state carried between calls.
  """
  from omg_cnnrnn import api  # Lazy, as above.

  return api.load(path, **kwargs)
