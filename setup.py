"""Installs omg_cnnrnn: the multi-component CNN-RNN of Kollias & Zafeiriou (OMG-Emotion 2018)."""

import setuptools

setuptools.setup(
    name="omg_cnnrnn",
    version="0.1.0",
    description=(
        "TensorFlow 2 reimplementation of 'A Multi-component CNN-RNN Approach for "
        "Dimensional Emotion Recognition in-the-wild' (Kollias & Zafeiriou, 2018)."
    ),
    packages=setuptools.find_packages(include=["omg_cnnrnn", "omg_cnnrnn.*", "data_prep", "data_prep.*"]),
    python_requires=">=3.10",
    install_requires=[
        # tf-keras pins the TensorFlow minor it matches; pip resolves the pair.
        "tensorflow>=2.16,<2.22",
        "tf-keras>=2.16,<2.22",
        # TensorFlow 2.21 no longer pulls TensorBoard in; tf.summary needs it.
        "tensorboard>=2.16",
        # The headless build: the same cv2 API without the GUI/libGL dependencies
        # that fail to import on servers and CI machines.
        "opencv-python-headless>=4.8",
        "numpy>=1.26",
        "scipy>=1.11",
        "pandas>=2.0",
        "absl-py>=1.4",
        # Face detection (ships its weights, works offline); SPEC 'Training'.
        "mtcnn>=1.0",
        # Keras VGG-Face weights (.h5) for omg_cnnrnn.tf1_weights (TensorFlow installs it too).
        "h5py>=3.8",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        # Real face photo (skimage.data.astronaut) used as texture by the synthetic set.
        "scikit-image>=0.21",
    ],
    extras_require={"test": ["pytest>=7", "pytest-xdist>=3"]},  # xdist: `make test` runs tests in parallel
    entry_points={"console_scripts": ["omg-predict=omg_cnnrnn.predict:run"]},
)
