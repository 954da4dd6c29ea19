import keras
from keras import layers as keras_layers
from keras import ops

from vq_keras.models.decoder import Decoder
from vq_keras.models.encoder import Encoder
from vq_keras.models.vq_model import VQModel
from vq_keras.zoo._common import PIXEL_SHIFT, PresetMixin, make_quantizer


@keras.saving.register_keras_serializable(package="vq_keras")
class VQVAE(PresetMixin, VQModel):
    """VQ-VAE: encoder, 1x1 convolution to embedding_dim, quantizer, decoder.

    The image is downsampled by 4 to one grid of codes (32x32 -> 8x8).

    Args:
        num_hiddens: channels of the encoder and decoder.
        num_residual_hiddens: bottleneck channels of the residual blocks.
        num_residual_layers: residual blocks in the encoder and in the decoder.
        embedding_dim: D, the size of each codebook vector.
        num_embeddings: K, the number of codes.
        commitment_cost: beta, the weight of the commitment loss.
        quantizer: "ema" (`VectorQuantizerEMA`) or "vq" (`VectorQuantizer`).
        decay: gamma, the EMA decay (used by quantizer="ema").
        epsilon: Laplace smoothing of the EMA cluster sizes (quantizer="ema").
        num_channels: image channels.
        data_variance: training-set pixel variance, the normaliser of the MSE.

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
    downsampling = 4

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
        **kwargs,
    ):
        super().__init__(num_channels=num_channels, data_variance=data_variance, **kwargs)
        self.num_hiddens = num_hiddens
        self.num_residual_hiddens = num_residual_hiddens
        self.num_residual_layers = num_residual_layers
        self.embedding_dim = embedding_dim
        self.num_embeddings = num_embeddings
        self.commitment_cost = commitment_cost
        self.quantizer_kind = quantizer
        self.decay = decay
        self.epsilon = epsilon
        self.encoder = Encoder(num_hiddens, num_residual_hiddens, num_residual_layers, name="encoder")
        self.pre_quantizer = keras_layers.Conv2D(embedding_dim, 1, name="pre_quantizer")
        self.quantizer = make_quantizer(
            quantizer, num_embeddings, embedding_dim, commitment_cost, decay, epsilon, name="quantizer"
        )
        self.decoder = Decoder(
            num_hiddens, num_residual_hiddens, num_residual_layers, output_channels=num_channels, name="decoder"
        )

    @property
    def quantizers(self):
        return [self.quantizer]

    def build(self, input_shape):
        self.check_image_shape(input_shape)
        shape = self.encoder.compute_output_shape(input_shape)
        self.encoder.build(input_shape)
        self.pre_quantizer.build(shape)
        shape = self.pre_quantizer.compute_output_shape(shape)
        self.quantizer.build(shape)
        self.decoder.build(shape)
        self.built = True

    def _encode_features(self, images, training=None):
        return self.pre_quantizer(self.encoder(images - PIXEL_SHIFT, training=training))

    def _decode_vectors(self, vectors):
        return self.decoder(vectors) + PIXEL_SHIFT

    def call(self, images, training=None, return_codes=False):
        features = self._encode_features(images, training=training)
        quantized, codes = self.quantizer(features, training=training, return_codes=True)
        reconstruction = self._decode_vectors(quantized)
        return (reconstruction, [codes]) if return_codes else reconstruction

    def encode(self, images):
        """float32 images in [0, 1] (N, H, W, C) -> int32 codes (N, H/4, W/4)."""
        images = ops.convert_to_tensor(images)
        self._check_images(images)
        return self.quantizer.encode(self._encode_features(images))

    def decode(self, codes):
        """int32 codes (N, h, w) -> float32 images (N, 4h, 4w, C) clipped to [0, 1]."""
        self.build_if_needed()
        return ops.clip(self._decode_vectors(self.quantizer.lookup(codes)), 0.0, 1.0)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_hiddens=self.num_hiddens,
            num_residual_hiddens=self.num_residual_hiddens,
            num_residual_layers=self.num_residual_layers,
            embedding_dim=self.embedding_dim,
            num_embeddings=self.num_embeddings,
            commitment_cost=self.commitment_cost,
            quantizer=self.quantizer_kind,
            decay=self.decay,
            epsilon=self.epsilon,
        )
        return config
