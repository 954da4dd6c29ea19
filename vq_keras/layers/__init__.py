"""Reusable layers: the quantizers (and their registry), the residual stack and the
PixelCNN and transformer priors' layers."""

from vq_keras.layers._registry import QUANTIZERS, make_quantizer
from vq_keras.layers.causal_self_attention import CausalSelfAttention
from vq_keras.layers.finite_scalar_quantizer import FiniteScalarQuantizer
from vq_keras.layers.gated_pixelcnn_block import GatedPixelCNNBlock
from vq_keras.layers.masked_conv2d import MaskedConv2D
from vq_keras.layers.residual_stack import ResidualStack
from vq_keras.layers.residual_vector_quantizer import ResidualVectorQuantizer
from vq_keras.layers.transformer_block import TransformerBlock
from vq_keras.layers.vector_quantizer import VectorQuantizer
from vq_keras.layers.vector_quantizer_ema import VectorQuantizerEMA

__all__ = [
    "CausalSelfAttention",
    "FiniteScalarQuantizer",
    "GatedPixelCNNBlock",
    "MaskedConv2D",
    "QUANTIZERS",
    "ResidualStack",
    "ResidualVectorQuantizer",
    "TransformerBlock",
    "VectorQuantizer",
    "VectorQuantizerEMA",
    "make_quantizer",
]
