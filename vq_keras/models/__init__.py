"""Reusable sub-networks and the shared autoencoder base class."""

from vq_keras.models.decoder import Decoder
from vq_keras.models.encoder import Encoder
from vq_keras.models.vq_model import VQModel

__all__ = ["Decoder", "Encoder", "VQModel"]
