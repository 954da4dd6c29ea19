import keras
from keras import ops

from vq_keras.layers._base_quantizer import Quantizer, _straight_through
from vq_keras.layers._validation import require_positive_int, takes_numpy_scalars
from vq_keras.layers.vector_quantizer_ema import VectorQuantizerEMA


@keras.saving.register_keras_serializable(package="vq_keras")
class ResidualVectorQuantizer(Quantizer):
    """Residual vector quantization (RVQ): a cascade of EMA vector quantizers.

    Stage 1 quantizes z (the encoder output); each following stage quantizes
    what the stages before it left over (Zeghidour et al. 2021, algorithm 1):

        r_1 = z,  q_i = Q_i(r_i),  r_{i+1} = r_i - q_i,  z_q = q_1 + ... + q_{N_q}

    Each stage Q_i is a `VectorQuantizerEMA` of its own (its codebook, EMA
    statistics, dead-code restart and k-means++ seeding, all per stage, all
    float32 and identical across replicas), fed r_i with sg[q_j] subtracted,
    so each stage adds its commitment loss beta |r_i - sg[q_i]|^2. The output
    is z_q with a straight-through gradient to z. Each position has one code
    per stage: the codes gain a last axis of length num_quantizers.

    Priors over these codes are not supported yet: a prior models one code
    per position, and flattening the stages into one grid (or as channels) is
    a modelling choice left open; stage 2 and generation refuse an
    autoencoder whose quantizer has `code_depth` set.

    Args:
        num_quantizers: N_q, the number of stages, at least 1.
        num_embeddings: K, the codes of each stage's codebook.
        embedding_dim: D, the size of each codebook vector; the last input axis.
        commitment_cost: beta, the weight of each stage's commitment loss.
        decay: gamma, the EMA decay in [0, 1) of every stage.
        epsilon: the Laplace smoothing constant of every stage, > 0.
        dead_code_threshold: None (no restarts) or a fraction in (0, 1) of a
            uniform share below which a stage's code is restarted (see
            `VectorQuantizer`); SoundStream restarts dead codes.
        usage_decay: the decay of each stage's usage EMA.
        codebook_init: "uniform" or "kmeans++" (per stage, on its residuals).
        seed: stage i's restarts and k-means++ use seed + i.
        **kwargs: standard `keras.layers.Layer` arguments (name, dtype, ...).

    Call arguments:
        inputs: floating tensor (..., embedding_dim), the encoder output z.
        training: if True, every stage updates its codebook.
        return_codes: if True, also return the int32 codes (..., num_quantizers).

    Input shape:
        (..., embedding_dim), e.g. (batch, height, width, embedding_dim).

    Output shape:
        Same as the input (and (..., num_quantizers) int32 codes with
        `return_codes=True`).

    Example:
        >>> rvq = ResidualVectorQuantizer(num_quantizers=4, num_embeddings=256, embedding_dim=64)
        >>> z_q = rvq(keras.random.normal((2, 8, 8, 64)), training=True)
        >>> codes = rvq.encode(keras.random.normal((2, 8, 8, 64)))  # int32 (2, 8, 8, 4)
        >>> vectors = rvq.lookup(codes)  # float32 (2, 8, 8, 64): the sum of the stages' codes

    Reference:
        Zeghidour et al., "SoundStream: An End-to-End Neural Audio Codec", 2021,
        arXiv:2107.03312, section 3.3.
    """

    @takes_numpy_scalars
    def __init__(
        self,
        num_quantizers,
        num_embeddings,
        embedding_dim,
        commitment_cost=0.25,
        decay=0.99,
        epsilon=1e-5,
        dead_code_threshold=None,
        usage_decay=0.99,
        codebook_init="uniform",
        seed=0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        require_positive_int("ResidualVectorQuantizer", "num_quantizers", num_quantizers)
        require_positive_int("ResidualVectorQuantizer", "seed", seed, allow_zero=True)
        self.num_quantizers = num_quantizers
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.commitment_cost = commitment_cost
        self.decay = decay
        self.epsilon = epsilon
        self.dead_code_threshold = dead_code_threshold
        self.usage_decay = usage_decay
        self.codebook_init = codebook_init
        self.seed = seed
        # The stages validate the shared arguments (with their messages); float32 in and out.
        self.stages = [
            VectorQuantizerEMA(
                num_embeddings, embedding_dim, commitment_cost, decay=decay, epsilon=epsilon,
                dead_code_threshold=dead_code_threshold, usage_decay=usage_decay, codebook_init=codebook_init,
                seed=seed + i, dtype="float32", name=f"stage_{i}",
            )
            for i in range(num_quantizers)
        ]

    @property
    def code_depth(self):
        """The codes' last axis: one code per stage."""
        return self.num_quantizers

    def build(self, input_shape):
        self._check_last_axis(input_shape)
        for stage in self.stages:
            stage.build(input_shape)

    def call(self, inputs, training=None, return_codes=False):
        inputs32 = ops.cast(inputs, "float32")
        residual, total, codes = inputs32, ops.zeros_like(inputs32), []
        for stage in self.stages:
            quantized, stage_codes = stage(residual, training=training, return_codes=True)
            quantized = ops.stop_gradient(quantized)
            residual = residual - quantized
            total = total + quantized
            codes.append(stage_codes)
        outputs = ops.cast(_straight_through(inputs32, total), self.compute_dtype)
        codes = ops.stack(codes, axis=-1)
        return (outputs, codes) if return_codes else outputs

    def encode(self, inputs):
        """Returns int32 codes (..., num_quantizers), stage 1 first."""
        self._check_dtype(inputs)
        residual, codes = ops.cast(inputs, "float32"), []
        for stage in self.stages:
            stage_codes = stage.encode(residual)
            residual = residual - stage.lookup(stage_codes)
            codes.append(stage_codes)
        return ops.stack(codes, axis=-1)

    def _lookup(self, codes):
        """The float32 sum of every stage's code vectors for int codes
        (..., num_quantizers) in [0, num_embeddings); other codes are an error."""
        codes = self._checked_codes(codes)
        if codes.shape[-1] != self.num_quantizers:
            raise ValueError(
                f"ResidualVectorQuantizer expects codes with a last axis of num_quantizers="
                f"{self.num_quantizers} (one code per stage) in lookup(). Received: shape={tuple(codes.shape)}"
            )
        return sum(stage.lookup(codes[..., i]) for i, stage in enumerate(self.stages))

    def get_config(self):
        config = super().get_config()
        config.update(
            num_quantizers=self.num_quantizers,
            num_embeddings=self.num_embeddings,
            embedding_dim=self.embedding_dim,
            commitment_cost=self.commitment_cost,
            decay=self.decay,
            epsilon=self.epsilon,
            dead_code_threshold=self.dead_code_threshold,
            usage_decay=self.usage_decay,
            codebook_init=self.codebook_init,
            seed=self.seed,
        )
        return config
