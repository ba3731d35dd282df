"""Model builders: backbones (VGG-16, ResNet-50 v1) and the CNN-RNN heads of every table row."""
