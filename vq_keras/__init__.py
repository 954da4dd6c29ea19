"""vq_keras: VQ-VAE and VQ-VAE-2 for Keras 3 / TensorFlow."""

import os

from vq_keras.console import filter_native_logs

__version__ = "0.1.0"

if os.environ.get("VQ_KERAS_QUIET"):  # before TensorFlow is imported, so its start-up lines are filtered too
    filter_native_logs()

from vq_keras import layers, models, zoo  # noqa: E402,F401
from vq_keras import evaluation  # noqa: E402,F401  (after zoo, whose models it measures)


def quiet():
    """Leaves TensorFlow's harmless native log lines (oneDNN and CUDA notes, the failed cuInit of a
    machine without GPU, libjpeg's recovered-JPEG warnings, ...) out of standard error from now on;
    real errors pass (`vq_keras.console`). For the lines of the import itself, set VQ_KERAS_QUIET=1
    before `import vq_keras` instead."""
    filter_native_logs()
