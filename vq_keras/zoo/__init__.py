"""The public models with their paper presets, the priors over their codes, generation, and the
classifier that measures generated images."""

from vq_keras.zoo._registry import AUTOENCODERS, PRIORS
from vq_keras.zoo.generation import generate
from vq_keras.zoo.hierarchical_prior import HierarchicalPrior
from vq_keras.zoo.image_classifier import ImageClassifier
from vq_keras.zoo.maskgit_prior import MaskGITPrior
from vq_keras.zoo.pixelcnn_prior import PixelCNNPrior
from vq_keras.zoo.transformer_prior import TransformerPrior
from vq_keras.zoo.vqvae import VQVAE
from vq_keras.zoo.vqvae2 import VQVAE2

__all__ = ["AUTOENCODERS", "HierarchicalPrior", "ImageClassifier", "MaskGITPrior", "PRIORS", "PixelCNNPrior", "TransformerPrior", "VQVAE", "VQVAE2", "generate"]
