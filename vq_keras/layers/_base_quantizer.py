"""The nearest-neighbour lookup and losses shared by both quantizer layers."""

import keras
import tensorflow as tf
from keras import ops

from vq_keras import metrics
from vq_keras.layers._validation import require_number, require_positive_int

def codebook_initializer():
    """Uniform in +-sqrt(3 / embedding_dim), as Sonnet initialises its codebooks.

    The codebook is (num_embeddings, embedding_dim), so fan_out is embedding_dim.
    A new instance per layer: an unseeded Keras initializer repeats its values.
    """
    return keras.initializers.VarianceScaling(mode="fan_out", distribution="uniform")


@ops.custom_gradient
def _straight_through(inputs, quantized):
    """Returns `quantized`; the gradient flows to `inputs` unchanged (STE)."""

    def grad(*args, upstream=None):
        if upstream is None:
            (upstream,) = args
        return upstream, ops.zeros_like(quantized)

    return tf.identity(quantized), grad


class BaseQuantizer(keras.layers.Layer):
    """Maps each vector on the last axis to its nearest codebook vector.

    Subclasses create `self.codebook` in `_build_codebook()` and may update it
    in `_update_codebook()`; everything else (distances, straight-through
    gradient, losses, perplexity) lives here once.
    """

    def __init__(self, num_embeddings, embedding_dim, commitment_cost=0.25, **kwargs):
        kwargs.setdefault("autocast", False)  # distances and codebook stay float32
        super().__init__(**kwargs)
        name = type(self).__name__
        require_positive_int(name, "num_embeddings", num_embeddings)
        require_positive_int(name, "embedding_dim", embedding_dim)
        require_number(name, "commitment_cost (beta)", commitment_cost, low=0)
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.commitment_cost = commitment_cost

    def __call__(self, inputs, *args, **kwargs):
        self._check_dtype(inputs)
        return super().__call__(inputs, *args, **kwargs)

    def _check_dtype(self, inputs):
        dtype = keras.backend.standardize_dtype(getattr(inputs, "dtype", "float32"))
        if not keras.backend.is_float_dtype(dtype):
            raise TypeError(
                f"{type(self).__name__} expects floating-point inputs (the encoder "
                f"output z_e). Received: dtype={dtype}. Cast the inputs to float32 "
                "first, or pass integer code indices to `lookup()` instead."
            )

    def build(self, input_shape):
        if len(input_shape) < 2 or input_shape[-1] != self.embedding_dim:
            raise ValueError(
                f"{type(self).__name__} expects the last input axis to equal "
                f"embedding_dim={self.embedding_dim}. Received: "
                f"input_shape={tuple(input_shape)}"
            )
        self._build_codebook()

    def _build_codebook(self):
        raise NotImplementedError

    def _update_codebook(self, flat_inputs, one_hot):
        """Hook for codebook updates in the forward pass (EMA); no-op here."""

    def _add_codebook_loss(self, inputs, quantized):
        """Hook for the codebook loss |sg[z_e] - e|^2; the EMA variant has none."""

    def compute_output_shape(self, input_shape):
        return input_shape

    def _distances(self, flat_inputs):
        codebook = ops.convert_to_tensor(self.codebook)
        return (
            ops.sum(ops.square(flat_inputs), axis=1, keepdims=True)
            - 2.0 * ops.matmul(flat_inputs, ops.transpose(codebook))
            + ops.sum(ops.square(codebook), axis=1)[None, :]
        )

    def _nearest(self, flat_inputs):
        return ops.cast(ops.argmin(self._distances(flat_inputs), axis=1), "int32")

    def encode(self, inputs):
        """Returns the int32 index of the nearest code for every vector."""
        self._check_dtype(inputs)
        inputs = ops.cast(inputs, "float32")
        flat = ops.reshape(inputs, (-1, self.embedding_dim))
        return ops.reshape(self._nearest(flat), ops.shape(inputs)[:-1])

    def lookup(self, indices):
        """Returns the float32 codebook vectors for int code indices."""
        return ops.take(ops.convert_to_tensor(self.codebook), indices, axis=0)

    def perplexity(self, codes):
        """exp(entropy) of the code assignments in `codes` (1 to num_embeddings)."""
        return metrics.perplexity(codes, self.num_embeddings)

    def call(self, inputs, training=None, return_codes=False):
        inputs32 = ops.cast(inputs, "float32")
        flat = ops.reshape(inputs32, (-1, self.embedding_dim))
        flat_codes = self._nearest(flat)
        codes = ops.reshape(flat_codes, ops.shape(inputs32)[:-1])
        quantized = self.lookup(codes)  # the codebook the codes were chosen from
        if training:
            self._update_codebook(flat, ops.one_hot(flat_codes, self.num_embeddings))
        self._add_codebook_loss(inputs32, quantized)
        commitment = ops.mean(ops.square(inputs32 - ops.stop_gradient(quantized)))
        self.add_loss(self.commitment_cost * commitment)
        outputs = ops.cast(_straight_through(inputs32, quantized), self.compute_dtype)
        return (outputs, codes) if return_codes else outputs

    def get_config(self):
        config = super().get_config()
        config.update(
            num_embeddings=self.num_embeddings,
            embedding_dim=self.embedding_dim,
            commitment_cost=self.commitment_cost,
        )
        return config
