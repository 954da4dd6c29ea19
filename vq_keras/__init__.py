"""vq_keras: VQ-VAE and VQ-VAE-2 for Keras 3 / TensorFlow."""

__version__ = "0.1.0"

from vq_keras import layers, models, zoo  # noqa: E402,F401
from vq_keras import evaluation  # noqa: E402,F401  (after zoo, whose models it measures)
