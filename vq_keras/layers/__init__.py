"""Reusable layers: the two quantizers, the residual stack and the PixelCNN prior's layers."""

from vq_keras.layers.causal_self_attention import CausalSelfAttention
from vq_keras.layers.gated_pixelcnn_block import GatedPixelCNNBlock
from vq_keras.layers.masked_conv2d import MaskedConv2D
from vq_keras.layers.residual_stack import ResidualStack
from vq_keras.layers.vector_quantizer import VectorQuantizer
from vq_keras.layers.vector_quantizer_ema import VectorQuantizerEMA

__all__ = [
    "CausalSelfAttention",
    "GatedPixelCNNBlock",
    "MaskedConv2D",
    "ResidualStack",
    "VectorQuantizer",
    "VectorQuantizerEMA",
]
