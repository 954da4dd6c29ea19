import keras

from vq_keras.layers._validation import require_positive_int, takes_numpy_scalars
from vq_keras.zoo._levels import LevelledVQVAE


def level_names(num_levels):
    """Top first: ("top", "bottom"), ("top", "middle", "bottom"), ("top", "middle1", ...)."""
    if num_levels == 2:
        return ("top", "bottom")
    if num_levels == 3:
        return ("top", "middle", "bottom")
    return ("top", *(f"middle{i}" for i in range(1, num_levels - 1)), "bottom")


@keras.saving.register_keras_serializable(package="vq_keras")
class VQVAE2(LevelledVQVAE):
    """VQ-VAE-2: a hierarchy of code grids, the top one coarsest.

    The bottom encoder downsamples the image by 2**bottom_downsamples (4 by
    default); each higher level's encoder downsamples the level below by 2.
    The top level is quantized first; each lower level's quantizer input is its
    encoder features joined with the decoding (upsampled by 2) of the quantized
    level above. The image decoder takes every level's quantized map, brought to
    the bottom resolution by stride-2 transposed convolutions. Every level has
    its own codebook; VQVAE is the same network with one level, and all share
    one train_step (`VQModel`).

    Args:
        num_levels: number of code grids (2 in the paper's ImageNet model, 3 for FFHQ-1024).
        num_hiddens: channels of the encoders and decoders.
        num_residual_hiddens: bottleneck channels of the residual blocks.
        num_residual_layers: residual blocks per encoder and decoder.
        embedding_dim: D, the size of each codebook vector (every level).
        num_embeddings: K, the number of codes per level.
        commitment_cost: beta, the weight of the commitment loss.
        quantizer: a name: "ema" (`VectorQuantizerEMA`), "vq" (`VectorQuantizer`),
            or "fsq" (`FiniteScalarQuantizer`, levels (8, 5, 5, 5)), built from
            these arguments; or a quantizer layer, e.g. a
            `ResidualVectorQuantizer(num_quantizers, ...)` (VQVAE2 clones it per level from its
            config). It fixes embedding_dim and num_embeddings (FSQ:
            len(levels) and prod(levels)).
        decay: gamma, the EMA decay (quantizer="ema").
        epsilon: Laplace smoothing of the EMA cluster sizes (quantizer="ema").
        bottom_downsamples: stride-2 convolutions of the bottom encoder.
        num_channels: image channels.
        data_variance: training-set pixel variance, the normaliser of the MSE.
        dead_code_threshold: None (as in the paper) or a fraction in (0, 1) of a
            uniform share of the assignments below which a code is restarted
            on an encoder output (see `VectorQuantizer`); every level.
        codebook_init: "uniform" (as in the paper) or "kmeans++" (seeded from
            the first training batch); every level.

    Call arguments:
        images: float32 (batch, height, width, num_channels) in [0, 1].
        training: whether the EMA codebooks update.
        return_codes: also return the list of int32 code grids, top first.

    Input shape:
        (batch, height, width, num_channels), height and width multiples of
        2**(bottom_downsamples + num_levels - 1).

    Output shape:
        The reconstruction, same shape as the input (not clipped).

    Example:
        >>> model = VQVAE2.from_preset("cifar10")
        >>> top, bottom = model.encode(images)  # int32 (N, 4, 4), (N, 8, 8)
        >>> images2 = model.decode([top, bottom])

    Reference:
        Razavi, van den Oord, Vinyals, "Generating Diverse High-Fidelity Images
        with VQ-VAE-2", 2019, arXiv:1906.00446.
    """

    PRESETS = {
        # 32x32 images: bottom 8x8 and top 4x4 code grids.
        "cifar10": dict(
            num_levels=2, num_hiddens=128, num_residual_hiddens=32, num_residual_layers=2,
            embedding_dim=64, num_embeddings=512, commitment_cost=0.25, quantizer="ema", decay=0.99,
        ),
        # The paper's ImageNet model: 256x256 images, bottom 64x64 and top 32x32 grids.
        "imagenet256": dict(
            num_levels=2, num_hiddens=128, num_residual_hiddens=64, num_residual_layers=2,
            embedding_dim=64, num_embeddings=512, commitment_cost=0.25, quantizer="ema", decay=0.99,
        ),
        # The paper's FFHQ model: 1024x1024 images, 128x128, 64x64 and 32x32 grids.
        "ffhq1024": dict(
            num_levels=3, num_hiddens=128, num_residual_hiddens=64, num_residual_layers=2,
            embedding_dim=64, num_embeddings=512, commitment_cost=0.25, quantizer="ema", decay=0.99,
            bottom_downsamples=3,
        ),
    }

    @takes_numpy_scalars
    def __init__(
        self,
        num_levels=2,
        num_hiddens=128,
        num_residual_hiddens=32,
        num_residual_layers=2,
        embedding_dim=64,
        num_embeddings=512,
        commitment_cost=0.25,
        quantizer="ema",
        decay=0.99,
        epsilon=1e-5,
        bottom_downsamples=2,
        num_channels=3,
        data_variance=1.0,
        dead_code_threshold=None,
        codebook_init="uniform",
        **kwargs,
    ):
        require_positive_int("VQVAE2", "num_levels", num_levels)
        if num_levels < 2:
            raise ValueError(
                f"VQVAE2 expects num_levels >= 2. Received: num_levels={num_levels}. "
                "For a single code grid use VQVAE."
            )
        require_positive_int("VQVAE2", "bottom_downsamples", bottom_downsamples)
        super().__init__(
            level_names=level_names(num_levels), num_hiddens=num_hiddens, num_residual_hiddens=num_residual_hiddens,
            num_residual_layers=num_residual_layers, embedding_dim=embedding_dim, num_embeddings=num_embeddings,
            commitment_cost=commitment_cost, quantizer=quantizer, decay=decay, epsilon=epsilon,
            bottom_downsamples=bottom_downsamples, num_channels=num_channels, data_variance=data_variance,
            dead_code_threshold=dead_code_threshold, codebook_init=codebook_init, **kwargs,
        )
        self.num_levels = num_levels

    def encode(self, images):
        """float32 images in [0, 1] -> list of int32 code grids, top first."""
        return self.encode_levels(images)

    def decode(self, codes):
        """List of int32 code grids (top first) -> float32 images clipped to [0, 1]."""
        return self.decode_levels(codes)

    def get_config(self):
        config = super().get_config()
        config.update(num_levels=self.num_levels, bottom_downsamples=self.bottom_downsamples)
        return config
