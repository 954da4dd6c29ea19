import keras
from keras import ops

from vq_keras.layers._base_quantizer import BaseQuantizer, codebook_initializer


@keras.saving.register_keras_serializable(package="vq_keras")
class VectorQuantizer(BaseQuantizer):
    """Vector quantization layer with a codebook learned by gradient descent.

    Each vector z_e on the last input axis is replaced by its nearest codebook
    vector e_k (squared L2, computed as |z|^2 - 2 z.e + |e|^2 in float32). The
    gradient of the output is copied onto the input unchanged (straight-through
    estimator). Two losses are added with `add_loss`: the codebook loss
    |sg[z_e] - e|^2, which moves only the codebook, and the commitment loss
    beta * |z_e - sg[e]|^2, which moves only the encoder.

    Args:
        num_embeddings: K, the number of codebook vectors.
        embedding_dim: D, the size of each codebook vector; the last input axis.
        commitment_cost: beta, the weight of the commitment loss.
        **kwargs: standard `keras.layers.Layer` arguments (name, dtype, ...).

    Call arguments:
        inputs: floating tensor (..., embedding_dim), the encoder output z_e.
        training: unused by this layer; accepted for a uniform interface.
        return_codes: if True, also return the int32 code indices.

    Input shape:
        (..., embedding_dim), e.g. (batch, height, width, embedding_dim).

    Output shape:
        Same as the input (and (...,) int32 codes with `return_codes=True`).

    Example:
        >>> vq = VectorQuantizer(num_embeddings=512, embedding_dim=64)
        >>> z_q = vq(keras.random.normal((2, 8, 8, 64)))
        >>> codes = vq.encode(keras.random.normal((2, 8, 8, 64)))  # int32 (2, 8, 8)
        >>> vectors = vq.lookup(codes)  # float32 (2, 8, 8, 64)

    Reference:
        van den Oord et al., "Neural Discrete Representation Learning", 2017,
        arXiv:1711.00937, equations 1-3.
    """

    def _build_codebook(self):
        self.codebook = self.add_weight(
            name="codebook",
            shape=(self.num_embeddings, self.embedding_dim),
            initializer=codebook_initializer(),
            dtype="float32",
            autocast=False,  # float32 even inside a mixed-precision autocast scope
            trainable=True,
        )

    def _add_codebook_loss(self, inputs, quantized):
        self.add_loss(ops.mean(ops.square(ops.stop_gradient(inputs) - quantized)))
