"""Reusable layers: the two quantizers and the residual stack."""

from vq_keras.layers.residual_stack import ResidualStack
from vq_keras.layers.vector_quantizer import VectorQuantizer
from vq_keras.layers.vector_quantizer_ema import VectorQuantizerEMA

__all__ = ["ResidualStack", "VectorQuantizer", "VectorQuantizerEMA"]
