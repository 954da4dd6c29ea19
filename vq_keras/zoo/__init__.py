"""The public models with their paper presets."""

from vq_keras.zoo.vqvae import VQVAE

__all__ = ["VQVAE"]
