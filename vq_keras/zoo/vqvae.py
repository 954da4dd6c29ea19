import keras

from vq_keras.layers._validation import takes_numpy_scalars
from vq_keras.zoo._levels import LevelledVQVAE


@keras.saving.register_keras_serializable(package="vq_keras")
class VQVAE(LevelledVQVAE):
    """VQ-VAE: encoder, 1x1 convolution to embedding_dim, quantizer, decoder.

    The image is downsampled by 4 to one grid of codes (32x32 -> 8x8).

    Args:
        num_hiddens: channels of the encoder and decoder.
        num_residual_hiddens: bottleneck channels of the residual blocks.
        num_residual_layers: residual blocks in the encoder and in the decoder.
        embedding_dim: D, the size of each codebook vector.
        num_embeddings: K, the number of codes.
        commitment_cost: beta, the weight of the commitment loss.
        quantizer: a name: "ema" (`VectorQuantizerEMA`), "vq" (`VectorQuantizer`),
            or "fsq" (`FiniteScalarQuantizer`, levels (8, 5, 5, 5)), built from
            these arguments; or a quantizer layer, e.g. a
            `ResidualVectorQuantizer(num_quantizers, ...)` (VQVAE2 clones it per level from its
            config). It fixes embedding_dim and num_embeddings (FSQ:
            len(levels) and prod(levels)).
        decay: gamma, the EMA decay (used by quantizer="ema").
        epsilon: Laplace smoothing of the EMA cluster sizes (quantizer="ema").
        num_channels: image channels.
        data_variance: training-set pixel variance, the normaliser of the MSE.
        dead_code_threshold: None (as in the paper) or a fraction in (0, 1) of a
            uniform share of the assignments below which a code is restarted
            on an encoder output (see `VectorQuantizer`); every level.
        codebook_init: "uniform" (as in the paper) or "kmeans++" (seeded from
            the first training batch); every level.

    Call arguments:
        images: float32 (batch, height, width, num_channels) in [0, 1].
        training: whether the EMA codebook updates.
        return_codes: also return `[codes]`, the int32 code grid in a list.

    Input shape:
        (batch, height, width, num_channels), height and width multiples of 4.

    Output shape:
        The reconstruction, same shape as the input (not clipped).

    Example:
        >>> model = VQVAE.from_preset("cifar10")
        >>> model.compile()  # Adam(3e-4)
        >>> codes = model.encode(images)      # int32 (N, 8, 8)
        >>> images2 = model.decode(codes)     # float32 (N, 32, 32, 3) in [0, 1]

    Reference:
        van den Oord et al., "Neural Discrete Representation Learning", 2017,
        arXiv:1711.00937.
    """

    PRESETS = {
        # The paper's CIFAR-10 model, as in Sonnet's VQ-VAE example.
        "cifar10": dict(
            num_hiddens=128,
            num_residual_hiddens=32,
            num_residual_layers=2,
            embedding_dim=64,
            num_embeddings=512,
            commitment_cost=0.25,
            quantizer="ema",
            decay=0.99,
            num_channels=3,
        ),
    }
    @takes_numpy_scalars
    def __init__(
        self,
        num_hiddens=128,
        num_residual_hiddens=32,
        num_residual_layers=2,
        embedding_dim=64,
        num_embeddings=512,
        commitment_cost=0.25,
        quantizer="ema",
        decay=0.99,
        epsilon=1e-5,
        num_channels=3,
        data_variance=1.0,
        dead_code_threshold=None,
        codebook_init="uniform",
        **kwargs,
    ):
        super().__init__(
            level_names=("",), num_hiddens=num_hiddens, num_residual_hiddens=num_residual_hiddens,
            num_residual_layers=num_residual_layers, embedding_dim=embedding_dim, num_embeddings=num_embeddings,
            commitment_cost=commitment_cost, quantizer=quantizer, decay=decay, epsilon=epsilon,
            bottom_downsamples=2, num_channels=num_channels, data_variance=data_variance,
            dead_code_threshold=dead_code_threshold, codebook_init=codebook_init, **kwargs,
        )

    @property
    def quantizer(self):
        """The quantizer layer (`VectorQuantizerEMA` or `VectorQuantizer`)."""
        return self.level_quantizers[0]

    def encode(self, images):
        """float32 images in [0, 1] (N, H, W, C) -> int32 codes (N, H/4, W/4)."""
        return self.encode_levels(images)[0]

    def decode(self, codes):
        """int32 codes (N, h, w) -> float32 images (N, 4h, 4w, C) clipped to [0, 1]."""
        return self.decode_levels([codes])
