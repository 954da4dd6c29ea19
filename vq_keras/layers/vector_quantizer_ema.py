import keras
from keras import ops

from vq_keras._replicas import sum_over_replicas
from vq_keras.layers._base_quantizer import BaseQuantizer, codebook_initializer
from vq_keras.layers._validation import require_number, takes_numpy_scalars


@keras.saving.register_keras_serializable(package="vq_keras")
class VectorQuantizerEMA(BaseQuantizer):
    """Vector quantization layer whose codebook follows exponential moving averages.

    The nearest-code lookup and straight-through gradient are those of
    `VectorQuantizer`; the codebook is not trained by gradients. Instead, on
    every call with `training=True`, with n_i the number of vectors assigned
    to code i and s_i their sum (summed over all `tf.distribute` replicas):

        N_i <- decay * N_i + (1 - decay) * n_i
        m_i <- decay * m_i + (1 - decay) * s_i
        e_i  = m_i / N~_i,  N~_i = (N_i + epsilon) / (n + K epsilon) * n

    where n = sum_i N_i (Laplace smoothing, so no code divides by zero) and
    N, m are zero-debiased by 1 - decay^t as in Sonnet. All statistics are
    non-trainable float32 weights. Only the commitment loss is added. A
    restarted code (see `dead_code_threshold`) gets e_i = the chosen vector,
    N_i = mean_j N_j and m_i = N_i e_i, so the next update averages its new
    vectors with e_i rather than undoing the restart.

    Args:
        num_embeddings: K, the number of codebook vectors.
        embedding_dim: D, the size of each codebook vector; the last input axis.
        commitment_cost: beta, the weight of the commitment loss.
        decay: gamma, the EMA decay in [0, 1).
        epsilon: the Laplace smoothing constant, > 0.
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
        training: if True, update the codebook and its statistics.
        return_codes: if True, also return the int32 code indices.

    Input shape:
        (..., embedding_dim), e.g. (batch, height, width, embedding_dim).

    Output shape:
        Same as the input (and (...,) int32 codes with `return_codes=True`).

    Example:
        >>> vq = VectorQuantizerEMA(num_embeddings=512, embedding_dim=64, decay=0.99)
        >>> z_q = vq(keras.random.normal((2, 8, 8, 64)), training=True)

    Reference:
        van den Oord et al., "Neural Discrete Representation Learning", 2017,
        arXiv:1711.00937, appendix A.1.
    """

    codebook_is_state = True  # assigned from the EMA statistics, never trained by gradients

    @takes_numpy_scalars
    def __init__(
        self,
        num_embeddings,
        embedding_dim,
        commitment_cost=0.25,
        decay=0.99,
        epsilon=1e-5,
        **kwargs,
    ):
        super().__init__(num_embeddings, embedding_dim, commitment_cost, **kwargs)
        require_number("VectorQuantizerEMA", "decay (gamma)", decay, low=0, high=1)
        require_number("VectorQuantizerEMA", "epsilon", epsilon, low=0, low_inclusive=False)
        self.decay = decay
        self.epsilon = epsilon

    def _build_codebook(self):
        shape = self.codebook_shape
        self.codebook = self._add_state(
            "codebook", shape, codebook_initializer()
        )
        self.ema_cluster_size = self._add_state("ema_cluster_size", (self.num_embeddings,), "zeros")
        self.ema_embedding_sum = self._add_state("ema_embedding_sum", shape, "zeros")
        self.ema_steps = self._add_state("ema_steps", (), "zeros")

    def _update_codebook(self, flat_inputs, flat_codes, counts):
        counts = sum_over_replicas(counts)
        # A segment sum (N x D additions), not one_hot(codes)^T @ inputs (N x K x D).
        sums = sum_over_replicas(ops.segment_sum(flat_inputs, flat_codes, num_segments=self.num_embeddings))
        keep = self.decay
        cluster_size = keep * self.ema_cluster_size + (1.0 - keep) * counts
        embedding_sum = keep * self.ema_embedding_sum + (1.0 - keep) * sums
        steps = self.ema_steps + 1.0
        self.ema_cluster_size.assign(cluster_size)
        self.ema_embedding_sum.assign(embedding_sum)
        self.ema_steps.assign(steps)

        debias = 1.0 - ops.power(keep, steps)
        cluster_size = cluster_size / debias
        total = ops.sum(cluster_size)
        smoothed = (
            (cluster_size + self.epsilon)
            / (total + self.num_embeddings * self.epsilon)
            * total
        )
        self.codebook.assign(embedding_sum / debias / smoothed[:, None])

    def _restart_codes(self, dead, vectors):
        # A restarted code keeps the mean cluster size N and gets m = N * e, so
        # the next EMA update averages its new vectors with e instead of undoing it.
        cluster_size = ops.convert_to_tensor(self.ema_cluster_size)
        embedding_sum = ops.convert_to_tensor(self.ema_embedding_sum)
        size = ops.mean(cluster_size)
        self.ema_cluster_size.assign(ops.where(dead, size, cluster_size))
        self.ema_embedding_sum.assign(ops.where(dead[:, None], size * vectors, embedding_sum))
        super()._restart_codes(dead, vectors)

    def get_config(self):
        config = super().get_config()
        config.update(decay=self.decay, epsilon=self.epsilon)
        return config
