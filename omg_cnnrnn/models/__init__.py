"""Model builders: backbones (VGG-16, ResNet-50 v1) and the CNN-RNN networks of every table row."""

from omg_cnnrnn.models.backbones import BACKBONES, build_backbone
from omg_cnnrnn.models.cnn_rnn import build_model, feature_taps, frame_model

__all__ = ["BACKBONES", "build_backbone", "build_model", "feature_taps", "frame_model"]
