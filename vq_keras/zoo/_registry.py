"""Every zoo autoencoder and prior by name: how `training.fit` (`--model`, `--prior`), stage 2
and `HierarchicalPrior.from_autoencoder` choose one.

A new prior is one file with a `vq_keras.models.Prior` subclass (with PRESETS for the
grids stage 2 trains on) and one line in PRIORS.
"""

import keras

from vq_keras.layers._registry import constructor_parameters
from vq_keras.zoo.maskgit_prior import MaskGITPrior
from vq_keras.zoo.pixelcnn_prior import PixelCNNPrior
from vq_keras.zoo.transformer_prior import TransformerPrior
from vq_keras.zoo.vqvae import VQVAE
from vq_keras.zoo.vqvae2 import VQVAE2

AUTOENCODERS = {"vqvae": VQVAE, "vqvae2": VQVAE2}
PRIORS = {"pixelcnn": PixelCNNPrior, "transformer": TransformerPrior, "maskgit": MaskGITPrior}


def prior_class(kind):
    """The prior class named `kind`, one of PRIORS."""
    if kind not in PRIORS:
        raise ValueError(f"prior must be one of {tuple(PRIORS)}. Received: prior={kind!r}")
    return PRIORS[kind]


def prior_arguments(kind):
    """The names of the constructor arguments of prior `kind`."""
    return {p.name for p in constructor_parameters(prior_class(kind), keras.Model)}
