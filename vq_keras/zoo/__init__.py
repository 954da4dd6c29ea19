"""The public models with their paper presets."""

from vq_keras.zoo.vqvae import VQVAE
from vq_keras.zoo.vqvae2 import VQVAE2

__all__ = ["VQVAE", "VQVAE2"]
