import keras
from keras import layers as keras_layers
from keras import ops

from vq_keras.layers._validation import require_positive_int
from vq_keras.models.decoder import Decoder
from vq_keras.models.encoder import Encoder
from vq_keras.models.vq_model import VQModel
from vq_keras.zoo._common import PIXEL_SHIFT, PresetMixin, make_quantizer


def level_names(num_levels):
    """Top first: ("top", "bottom"), ("top", "middle", "bottom"), ("top", "middle1", ...)."""
    if num_levels == 2:
        return ("top", "bottom")
    if num_levels == 3:
        return ("top", "middle", "bottom")
    return ("top", *(f"middle{i}" for i in range(1, num_levels - 1)), "bottom")


@keras.saving.register_keras_serializable(package="vq_keras")
class VQVAE2(PresetMixin, VQModel):
    """VQ-VAE-2: a hierarchy of code grids, the top one coarsest.

    The bottom encoder downsamples the image by 2**bottom_downsamples (4 by
    default); each higher level's encoder downsamples the level below by 2.
    The top level is quantized first; each lower level's quantizer input is its
    encoder features joined with the decoding (upsampled by 2) of the quantized
    level above. The image decoder takes every level's quantized map, brought to
    the bottom resolution by stride-2 transposed convolutions. Every level has
    its own codebook; all share one train_step (`VQModel`).

    Args:
        num_levels: number of code grids (2 in the paper's ImageNet model, 3 for FFHQ-1024).
        num_hiddens: channels of the encoders and decoders.
        num_residual_hiddens: bottleneck channels of the residual blocks.
        num_residual_layers: residual blocks per encoder and decoder.
        embedding_dim: D, the size of each codebook vector (every level).
        num_embeddings: K, the number of codes per level.
        commitment_cost: beta, the weight of the commitment loss.
        quantizer: "ema" (`VectorQuantizerEMA`) or "vq" (`VectorQuantizer`).
        decay: gamma, the EMA decay (quantizer="ema").
        epsilon: Laplace smoothing of the EMA cluster sizes (quantizer="ema").
        bottom_downsamples: stride-2 convolutions of the bottom encoder.
        num_channels: image channels.
        data_variance: training-set pixel variance, the normaliser of the MSE.

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
            num_channels=num_channels, data_variance=data_variance, level_names=level_names(num_levels), **kwargs
        )
        self.num_levels = num_levels
        self.num_hiddens = num_hiddens
        self.num_residual_hiddens = num_residual_hiddens
        self.num_residual_layers = num_residual_layers
        self.embedding_dim = embedding_dim
        self.num_embeddings = num_embeddings
        self.commitment_cost = commitment_cost
        self.quantizer_kind = quantizer
        self.decay = decay
        self.epsilon = epsilon
        self.bottom_downsamples = bottom_downsamples
        self.downsampling = 2 ** (bottom_downsamples + num_levels - 1)
        residual = (num_hiddens, num_residual_hiddens, num_residual_layers)
        names = self.level_names
        bottom = num_levels - 1
        # Every list is indexed top first, like the codes.
        self.encoders = [
            Encoder(*residual, num_downsamples=bottom_downsamples if i == bottom else 1, name=f"encoder_{name}")
            for i, name in enumerate(names)
        ]
        self.pre_quantizers = [keras_layers.Conv2D(embedding_dim, 1, name=f"pre_quantizer_{n}") for n in names]
        self.level_quantizers = [
            make_quantizer(quantizer, num_embeddings, embedding_dim, commitment_cost, decay, epsilon, f"quantizer_{n}")
            for n in names
        ]
        # conditioners[i - 1] decodes level i - 1 (above) to level i's resolution.
        self.conditioners = [
            Decoder(*residual, output_channels=embedding_dim, num_upsamples=1, name=f"conditioner_{n}")
            for n in names[1:]
        ]
        # upsamplers[i] brings level i to the bottom resolution (bottom - i doublings).
        self.upsamplers = [
            keras.Sequential(
                [keras_layers.Conv2DTranspose(embedding_dim, 4, strides=2, padding="same") for _ in range(bottom - i)],
                name=f"upsampler_{name}",
            )
            for i, name in enumerate(names[:-1])
        ]
        self.decoder = Decoder(*residual, output_channels=num_channels, num_upsamples=bottom_downsamples, name="decoder")

    @property
    def quantizers(self):
        return list(self.level_quantizers)

    def build(self, input_shape):
        self.check_image_shape(input_shape)
        feature_shapes = []
        shape = tuple(input_shape)
        for encoder in reversed(self.encoders):  # bottom up
            encoder.build(shape)
            shape = encoder.compute_output_shape(shape)
            feature_shapes.insert(0, shape)
        above = None
        for i, shape in enumerate(feature_shapes):
            if above is not None:
                self.conditioners[i - 1].build(above)
                extra = self.conditioners[i - 1].compute_output_shape(above)[-1]
                shape = (*shape[:-1], shape[-1] + extra)
            self.pre_quantizers[i].build(shape)
            above = self.pre_quantizers[i].compute_output_shape(shape)
            self.level_quantizers[i].build(above)
            if i < len(self.upsamplers):
                self.upsamplers[i].build(above)
        self.decoder.build((*above[:-1], self.embedding_dim * self.num_levels))
        self.built = True

    def _quantize(self, images, training=None):
        """Quantized maps and int32 codes of every level, top first."""
        features = []
        hidden = images - PIXEL_SHIFT
        for encoder in reversed(self.encoders):
            hidden = encoder(hidden, training=training)
            features.insert(0, hidden)
        quantized, codes = [], []
        for i, hidden in enumerate(features):
            if quantized:
                hidden = ops.concatenate([hidden, self.conditioners[i - 1](quantized[-1])], axis=-1)
            level_quantized, level_codes = self.level_quantizers[i](
                self.pre_quantizers[i](hidden), training=training, return_codes=True
            )
            quantized.append(level_quantized)
            codes.append(level_codes)
        return quantized, codes

    def _decode_quantized(self, quantized):
        maps = [upsample(q) for upsample, q in zip(self.upsamplers, quantized)] + [quantized[-1]]
        return self.decoder(ops.concatenate(maps, axis=-1)) + PIXEL_SHIFT

    def call(self, images, training=None, return_codes=False):
        quantized, codes = self._quantize(images, training=training)
        reconstruction = self._decode_quantized(quantized)
        return (reconstruction, codes) if return_codes else reconstruction

    def encode(self, images):
        """float32 images in [0, 1] -> list of int32 code grids, top first."""
        images = ops.convert_to_tensor(images)
        self._check_images(images)
        return self._quantize(images, training=False)[1]

    def decode(self, codes):
        """List of int32 code grids (top first) -> float32 images clipped to [0, 1]."""
        if len(codes) != self.num_levels:
            raise ValueError(
                f"VQVAE2 with num_levels={self.num_levels} expects {self.num_levels} code grids "
                f"(top first). Received: {len(codes)}"
            )
        self.build_if_needed()
        quantized = [quantizer.lookup(c) for quantizer, c in zip(self.level_quantizers, codes)]
        return ops.clip(self._decode_quantized(quantized), 0.0, 1.0)

    def code_shapes(self, image_size):
        """(height, width) of every level's code grid for images of `image_size`, top first.

        Computed from the encoders' output shapes alone: no weights or data needed.
        """
        shape = (None, *image_size, self.num_channels)
        self.check_image_shape(shape)
        grids = []
        for encoder in reversed(self.encoders):
            shape = encoder.compute_output_shape(shape)
            grids.insert(0, tuple(shape[1:3]))
        return grids

    def get_config(self):
        config = super().get_config()
        config.update(
            num_levels=self.num_levels,
            num_hiddens=self.num_hiddens,
            num_residual_hiddens=self.num_residual_hiddens,
            num_residual_layers=self.num_residual_layers,
            embedding_dim=self.embedding_dim,
            num_embeddings=self.num_embeddings,
            commitment_cost=self.commitment_cost,
            quantizer=self.quantizer_kind,
            decay=self.decay,
            epsilon=self.epsilon,
            bottom_downsamples=self.bottom_downsamples,
        )
        return config
