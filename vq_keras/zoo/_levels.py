"""The one autoencoder body behind VQVAE (one code grid) and VQVAE2 (several)."""

import keras
from keras import layers as keras_layers
from keras import ops

from vq_keras._conv_init import conv_kernel_initializer, transposed_kernel_initializer
from vq_keras._index_checks import checked_range
from vq_keras.models.decoder import Decoder
from vq_keras.models.encoder import Encoder
from vq_keras.models.vq_model import VQModel, select_images
from vq_keras.zoo._common import PIXEL_SHIFT, PresetMixin, level_quantizers, quantizer_config


class LevelledVQVAE(PresetMixin, VQModel):
    """Encoders, quantizers and decoders for `len(level_names)` code grids.

    The bottom encoder downsamples the image by 2**bottom_downsamples; each
    higher level's encoder downsamples the level below by 2. The top level is
    quantized first; each lower level's quantizer input is its encoder features
    joined with the decoding (upsampled by 2) of the quantized level above. The
    image decoder takes every level's quantized map, brought to the bottom
    resolution by stride-2 transposed convolutions. With one level this is
    exactly the VQ-VAE of van den Oord et al. Lists are indexed top first.

    `quantizer` is a name in `vq_keras.layers.QUANTIZERS`, built from the model's
    quantizer arguments (each kind takes those it reads), or a quantizer layer
    (cloned per level from its config when there are several). The quantizer
    fixes `embedding_dim` (the 1x1 convolution's output channels) and
    `num_embeddings` (codes per position): a `FiniteScalarQuantizer(levels)` has
    len(levels) and prod(levels), whatever the model's own arguments say.
    """

    def __init__(
        self,
        level_names,
        num_hiddens,
        num_residual_hiddens,
        num_residual_layers,
        embedding_dim,
        num_embeddings,
        commitment_cost,
        quantizer,
        decay,
        epsilon,
        bottom_downsamples,
        num_channels,
        data_variance,
        dead_code_threshold=None,
        codebook_init="uniform",
        **kwargs,
    ):
        super().__init__(num_channels=num_channels, data_variance=data_variance, level_names=level_names, **kwargs)
        dtype = self.dtype_policy  # Keras does not pass a (mixed) policy on to sublayers
        # Assigned after the pre-quantizers, as before, so the weights keep their order.
        quantizers = level_quantizers(
            quantizer, self.level_names, "quantizer", dtype, num_embeddings=num_embeddings,
            embedding_dim=embedding_dim, commitment_cost=commitment_cost, decay=decay, epsilon=epsilon,
            dead_code_threshold=dead_code_threshold, codebook_init=codebook_init,
        )
        embedding_dim = quantizers[0].embedding_dim
        self.dead_code_threshold = dead_code_threshold
        self.codebook_init = codebook_init
        self.num_hiddens = num_hiddens
        self.num_residual_hiddens = num_residual_hiddens
        self.num_residual_layers = num_residual_layers
        self.embedding_dim = embedding_dim
        self.num_embeddings = quantizers[0].num_embeddings
        self.commitment_cost = commitment_cost
        self.quantizer_kind = quantizer_config(quantizer)
        self.decay = decay
        self.epsilon = epsilon
        self.bottom_downsamples = bottom_downsamples
        num_levels = len(self.level_names)
        self.downsampling = 2 ** (bottom_downsamples + num_levels - 1)
        residual = (num_hiddens, num_residual_hiddens, num_residual_layers)
        bottom = num_levels - 1
        named = lambda base, level: f"{base}_{level}" if level else base  # noqa: E731
        self.encoders = [
            Encoder(*residual, num_downsamples=bottom_downsamples if i == bottom else 1, name=named("encoder", level), dtype=dtype)
            for i, level in enumerate(self.level_names)
        ]
        self.pre_quantizers = [
            keras_layers.Conv2D(
                embedding_dim, 1, name=named("pre_quantizer", level), kernel_initializer=conv_kernel_initializer(),
                dtype=dtype,
            )
            for level in self.level_names
        ]
        self.level_quantizers = quantizers
        # conditioners[i - 1] decodes level i - 1 (above) to level i's resolution.
        self.conditioners = [
            Decoder(*residual, output_channels=embedding_dim, num_upsamples=1, name=named("conditioner", level), dtype=dtype)
            for level in self.level_names[1:]
        ]
        # upsamplers[i] brings level i to the bottom resolution (bottom - i doublings).
        self.upsamplers = [
            keras.Sequential(
                [
                    keras_layers.Conv2DTranspose(
                        embedding_dim, 4, strides=2, padding="same",
                        kernel_initializer=transposed_kernel_initializer(), dtype=dtype,
                    )
                    for _ in range(bottom - i)
                ],
                name=named("upsampler", level),
            )
            for i, level in enumerate(self.level_names[:-1])
        ]
        for upsampler in self.upsamplers:
            upsampler.dtype_policy = dtype  # keras.Sequential takes no dtype argument
        self.decoder = Decoder(
            *residual, output_channels=num_channels, num_upsamples=bottom_downsamples, name="decoder", dtype=dtype
        )
        self.track_code_usage()

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
        self.decoder.build((*above[:-1], self.embedding_dim * len(self.level_names)))
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
        return ops.cast(self.decoder(ops.concatenate(maps, axis=-1)), "float32") + PIXEL_SHIFT

    def call(self, images, training=None, return_codes=False):
        # JAX's stateless_call (the steps of fit, evaluate, predict) calls `call` directly with the batch.
        images = select_images(images)
        self._check_dtype(images)
        quantized, codes = self._quantize(images, training=training)
        reconstruction = self._decode_quantized(quantized)
        return (reconstruction, codes) if self._returns_codes(return_codes) else reconstruction

    def encode_levels(self, images):
        """float32 images in [0, 1] -> list of int32 code grids, top first."""
        images = ops.convert_to_tensor(self._checked_images(images))
        return self._quantize(images, training=False)[1]

    def decode_levels(self, codes):
        """List of int32 code grids, top first -> float32 images clipped to [0, 1]."""
        if len(codes) != len(self.level_names):
            raise ValueError(
                f"{type(self).__name__} expects {len(self.level_names)} code grid(s), top first. "
                f"Received: {len(codes)}"
            )
        self.build_if_needed()
        codes = [ops.convert_to_tensor(c) for c in codes]
        self._check_grid_shapes(codes)
        codes = [self._check_codes(level, level_codes) for level, level_codes in zip(self.level_names, codes)]
        quantized = [quantizer.lookup(c) for quantizer, c in zip(self.level_quantizers, codes)]
        return ops.clip(self._decode_quantized(quantized), 0.0, 1.0)

    def _check_grid_shapes(self, codes):
        """A ValueError naming the expected shapes when the grids (static shapes) do not fit together,
        top first: each level's (height, width) follows from the top grid's for these images."""
        depth = getattr(self.level_quantizers[0], "code_depth", None)
        rank = 3 if depth is None else 4
        shapes = [tuple(c.shape) for c in codes]
        if any(None in shape[1:3] for shape in shapes if len(shape) == rank):
            return  # not known until run (a graph): the lookups check what they get
        expected = None
        if all(len(shape) == rank for shape in shapes):
            top = shapes[0][1:3]
            expected = self.code_shapes((top[0] * self.downsampling, top[1] * self.downsampling))
            if [shape[1:3] for shape in shapes] == expected and len({shape[0] for shape in shapes}) == 1:
                return
        raise ValueError(self._grid_shapes_message(shapes, expected, depth))

    def _grid_shapes_message(self, shapes, expected, depth):
        """What `_check_grid_shapes` says: the grids it takes and, when the top grid fixes them, their sizes."""
        names = self.level_names
        levels = f"{len(names)} code grids, top first ({', '.join(names)})" if len(names) > 1 else "one code grid"
        grid = "(batch, height, width" + ("" if depth is None else f", {depth}") + ")"
        follows = ""
        if expected:
            sizes = ", ".join(f"{h}x{w}" for h, w in expected)
            follows = f" For a top grid of {expected[0][0]}x{expected[0][1]} the grids are {sizes}."
        received = ", ".join(str(shape) for shape in shapes)
        return (
            f"{type(self).__name__} expects {levels}, each of shape {grid} with one batch size.{follows} "
            f"Received shapes: {received}"
        )

    def _check_codes(self, level, codes):
        """Out-of-range codes are an error, never a wrapped or zero lookup (as on a GPU).

        Returns the codes; in a graph, with the range assertions attached, so that they run
        before (not racing) the lookup."""
        where = f" for level {level!r}" if level else ""
        dtype = keras.backend.standardize_dtype(codes.dtype)
        if not keras.backend.is_int_dtype(dtype):
            raise TypeError(f"{type(self).__name__} expects integer codes{where}. Received: dtype={dtype}")
        message = (
            f"{type(self).__name__} expects codes{where} in [0, {self.num_embeddings}) "
            "(num_embeddings)."
        )
        return checked_range(codes, self.num_embeddings, message, what="codes")

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
            num_hiddens=self.num_hiddens,
            num_residual_hiddens=self.num_residual_hiddens,
            num_residual_layers=self.num_residual_layers,
            embedding_dim=self.embedding_dim,
            num_embeddings=self.num_embeddings,
            commitment_cost=self.commitment_cost,
            quantizer=self.quantizer_kind,
            decay=self.decay,
            epsilon=self.epsilon,
            dead_code_threshold=self.dead_code_threshold,
            codebook_init=self.codebook_init,
        )
        return config
