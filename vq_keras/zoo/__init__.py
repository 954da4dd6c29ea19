"""The public models with their paper presets, the priors over their codes, and generation."""

from vq_keras.zoo.generation import generate
from vq_keras.zoo.hierarchical_prior import HierarchicalPrior
from vq_keras.zoo.pixelcnn_prior import PixelCNNPrior
from vq_keras.zoo.vqvae import VQVAE
from vq_keras.zoo.vqvae2 import VQVAE2

__all__ = ["HierarchicalPrior", "PixelCNNPrior", "VQVAE", "VQVAE2", "generate"]
