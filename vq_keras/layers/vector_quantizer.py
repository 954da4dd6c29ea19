import keras
from keras import ops

from vq_keras.layers._base_quantizer import BaseQuantizer, codebook_initializer, mean_or_zero


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
        dead_code_threshold: None (default, as in the paper: no restarts) or a
            number in (0, 1): a code whose EMA share of the assignments falls
            below this fraction of a uniform share (1 / num_embeddings) is
            restarted on an encoder output of the current batch (training only).
        usage_decay: the decay in [0, 1) of the per-code usage EMA that
            `dead_code_threshold` is compared with.
        codebook_init: "uniform" (default, as in Sonnet) or "kmeans++": seed
            the codebook from the first training batch's encoder outputs.
        seed: integer seed of the restarts' and k-means++'s stateless RNG.
        use_cosine_similarity: if True, l2-normalise the inputs (after any
            projection) and the codes, so the nearest code has the largest
            cosine similarity (ViT-VQGAN, arXiv:2110.04627, section 3.2).
        codebook_dim: None (default: codes of size embedding_dim) or d in
            [1, embedding_dim]: look codes up in a learned d-dimensional
            projection of the inputs and project the chosen code back
            (ViT-VQGAN's factorized codes); the codebook is then (K, d).
        gradient: "straight_through" (default, the paper's estimator) or
            "rotation": the rotation trick of Fifty et al. 2024
            (arXiv:2410.06424), which carries the angle between z_e and e_k
            into the gradient.
        **kwargs: standard `keras.layers.Layer` arguments (name, dtype, ...).

    Call arguments:
        inputs: floating tensor (..., embedding_dim), the encoder output z_e.
        training: if True, k-means++ seeding and dead-code restarts (when
            enabled) may assign the codebook; otherwise nothing changes.
        return_codes: if True, also return the int32 code indices.

    A restart assigns the codebook rows in place; the optimizer's slots for
    those rows (Adam's moments) are left as they are. A dead code received no
    gradient for many steps (the codebook loss reaches only assigned codes), so
    its moments have decayed towards zero and the row starts almost afresh.

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
            shape=self.codebook_shape,
            initializer=codebook_initializer(),
            dtype="float32",
            autocast=False,  # float32 even inside a mixed-precision autocast scope
            trainable=True,
            # Restarts assign it in replica context; every replica computes the same rows.
            aggregation="only_first_replica",
        )

    def _add_codebook_loss(self, inputs, quantized):
        self.add_loss(mean_or_zero(ops.square(ops.stop_gradient(inputs) - quantized)))
