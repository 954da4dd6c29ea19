"""Reusable sub-networks and the shared base classes of autoencoders and priors."""

from vq_keras.models.autoregressive_prior import AutoregressivePrior
from vq_keras.models.decoder import Decoder
from vq_keras.models.encoder import Encoder
from vq_keras.models.pairing import MismatchedAutoencoder, autoencoder_identity, check_trained_on
from vq_keras.models.prior import Prior
from vq_keras.models.vq_model import VQModel

__all__ = [
    "AutoregressivePrior", "Decoder", "Encoder", "MismatchedAutoencoder", "Prior", "VQModel", "autoencoder_identity",
    "check_trained_on",
]
