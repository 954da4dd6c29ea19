import math

import keras
import numpy as np
from keras import ops

from vq_keras.layers._base_quantizer import Quantizer
from vq_keras.layers._validation import require_number, takes_numpy_scalars

# The paper's eps in the bound: |bound(z)| stays below (L - 1) / 2, so rounding never
# reaches a level beyond the L allowed.
BOUND_EPSILON = 1e-3


@keras.saving.register_keras_serializable(package="vq_keras")
class FiniteScalarQuantizer(Quantizer):
    """Finite scalar quantization (FSQ): each channel rounded to one of L_i levels.

    There is no codebook. Channel i of z (the encoder output, d = len(levels)
    channels) is bounded to L_i values and rounded (Mentzer et al. 2023,
    section 3 and appendix A.1):

        f(z_i) = tanh(z_i + s_i) * h_i - o_i,  h_i = (L_i - 1)(1 - eps) / 2,
        o_i = 0.5 if L_i is even else 0,       s_i = tan(o_i / h_i)
        z^_i = round(f(z_i)) / floor(L_i / 2)   (round with a straight-through gradient)

    (s_i as in the paper's reference code, appendix A.1), so z^_i takes L_i evenly spaced values in [-1, 1]. The implied codebook is the
    product of the levels: num_embeddings = prod L_i codes, the code of a vector
    being the mixed-radix number of its levels, channel 0 the least significant
    digit: k = sum_i (round(f(z_i)) + floor(L_i / 2)) * prod_{j<i} L_j. No loss
    is added (nothing to commit to, no codebook to learn), no state is kept, so
    every replica computes the same and codes cannot collapse or die.

    Args:
        levels: L, the number of levels of each channel, each at least 2; the
            paper recommends (8, 5, 5, 5) for about 2^10 codes and
            (8, 8, 8, 5, 5, 5) for about 2^16. Its length is embedding_dim:
            project the encoder output to len(levels) channels first (the zoo
            models' 1x1 convolution does, with embedding_dim=len(levels)).
        **kwargs: standard `keras.layers.Layer` arguments (name, dtype, ...).

    Call arguments:
        inputs: floating tensor (..., len(levels)), the encoder output z.
        training: unused (FSQ has no state); accepted as every quantizer's.
        return_codes: if True, also return the int32 codes.

    Input shape:
        (..., len(levels)), e.g. (batch, height, width, len(levels)).

    Output shape:
        Same as the input (and (...,) int32 codes with `return_codes=True`).

    Example:
        >>> fsq = FiniteScalarQuantizer(levels=(8, 5, 5, 5))  # 1000 codes
        >>> z_q = fsq(keras.random.normal((2, 8, 8, 4)))
        >>> codes = fsq.encode(keras.random.normal((2, 8, 8, 4)))  # int32 (2, 8, 8)
        >>> vectors = fsq.lookup(codes)  # float32 (2, 8, 8, 4) in [-1, 1]

    Reference:
        Mentzer, Minnen, Agustsson, Tschannen, "Finite Scalar Quantization:
        VQ-VAE Made Simple", 2023, arXiv:2309.15505.
    """

    @takes_numpy_scalars
    def __init__(self, levels=(8, 5, 5, 5), **kwargs):
        super().__init__(**kwargs)
        if isinstance(levels, (str, bytes)) or not hasattr(levels, "__len__") or len(levels) == 0:
            raise ValueError(
                "FiniteScalarQuantizer expects levels to be a non-empty sequence of integers, "
                f"one per channel, e.g. (8, 5, 5, 5). Received: levels={levels!r}"
            )
        for level in levels:
            if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or level < 2:
                raise ValueError(
                    "FiniteScalarQuantizer expects every level to be an integer of at least 2 "
                    f"(a channel with one level carries no information). Received: levels={tuple(levels)!r}"
                )
        self.levels = tuple(int(level) for level in levels)
        require_number("FiniteScalarQuantizer", "num_embeddings (the product of levels)", self.num_embeddings,
                       low=2, high=2**31)

    @property
    def embedding_dim(self):
        """d = len(levels), the size of the last input axis."""
        return len(self.levels)

    @property
    def num_embeddings(self):
        """The number of codes: the product of the levels."""
        return math.prod(self.levels)

    def _constants(self):
        """float32 (d,) half-widths h, offsets o, shifts s, floor(L/2), and int32 radix bases."""
        levels = np.asarray(self.levels, dtype=np.float64)
        half_width = (levels - 1) * (1 - BOUND_EPSILON) / 2
        offset = np.where(self.levels_are_even, 0.5, 0.0)
        shift = np.tan(offset / half_width)  # the paper's code (appendix A.1); defined for L = 2
        half_levels = np.floor(levels / 2)
        bases = np.cumprod([1, *self.levels[:-1]]).astype(np.int32)
        as32 = lambda value: ops.convert_to_tensor(value.astype(np.float32))  # noqa: E731
        return as32(half_width), as32(offset), as32(shift), as32(half_levels), ops.convert_to_tensor(bases)

    @property
    def levels_are_even(self):
        return np.asarray(self.levels) % 2 == 0

    def build(self, input_shape):
        self._check_last_axis(input_shape)

    def _bounded(self, inputs):
        """float32 f(z), in (-floor(L/2) - 1/2, ceil(L/2) - 1/2) per channel."""
        half_width, offset, shift, _, _ = self._constants()
        return ops.tanh(inputs + shift) * half_width - offset

    def _codes_of(self, rounded):
        """The mixed-radix index of round(f(z)) (..., d) -> int32 (...)."""
        _, _, _, half_levels, bases = self._constants()
        digits = ops.cast(rounded + half_levels, "int32")
        return ops.sum(digits * bases, axis=-1)

    def call(self, inputs, training=None, return_codes=False):
        bounded = self._bounded(ops.cast(inputs, "float32"))
        rounded = ops.round(bounded)
        # Exactly round(f(z)) in value, with the gradient of f(z) (straight-through). Not
        # f + sg(round(f) - f): graph rewrites may reassociate that sum and move a code.
        outputs = self._with_gradient(bounded, rounded) / self._constants()[3]
        outputs = ops.cast(outputs, self.compute_dtype)
        return (outputs, self._codes_of(rounded)) if return_codes else outputs

    def encode(self, inputs):
        """Returns the int32 code (mixed-radix index of the levels) of every vector."""
        self._check_dtype(inputs)
        return self._codes_of(ops.round(self._bounded(ops.cast(inputs, "float32"))))

    def _lookup(self, codes):
        """Returns the float32 vectors (..., len(levels)) in [-1, 1] of int codes in
        [0, num_embeddings); other codes are an error (as `VectorQuantizer.lookup`)."""
        codes = ops.cast(self._checked_codes(codes), "int32")[..., None]
        _, _, _, half_levels, bases = self._constants()
        levels = ops.convert_to_tensor(np.asarray(self.levels, dtype=np.int32))
        digits = ops.cast((codes // bases) % levels, "float32")
        return (digits - half_levels) / half_levels

    def get_config(self):
        config = super().get_config()
        config.update(levels=list(self.levels))
        return config
