"""What every zoo model shares: presets as plain data and the quantizer choice."""

from vq_keras.layers.vector_quantizer import VectorQuantizer
from vq_keras.layers.vector_quantizer_ema import VectorQuantizerEMA

QUANTIZER_KINDS = ("ema", "vq")
# Images are centred on 0 inside the networks, as in Sonnet's VQ-VAE example.
PIXEL_SHIFT = 0.5


class PresetMixin:
    """`from_preset(name, **overrides)` and `presets()` over a class's PRESETS dict."""

    PRESETS = {}

    @classmethod
    def presets(cls):
        """The names of this model's presets."""
        return sorted(cls.PRESETS)

    @classmethod
    def from_preset(cls, name, **overrides):
        """Builds the preset `name` (constructor arguments, updated by `overrides`)."""
        if name not in cls.PRESETS:
            raise ValueError(
                f"Unknown {cls.__name__} preset {name!r}. Known presets: {', '.join(cls.presets())}."
            )
        model = cls(**{**cls.PRESETS[name], **overrides})
        model.build_if_needed()
        return model


def make_quantizer(
    quantizer, num_embeddings, embedding_dim, commitment_cost, decay, epsilon, name,
    dead_code_threshold=None, codebook_init="uniform", dtype=None,
):
    """The quantizer layer for `quantizer="ema"|"vq"`."""
    options = dict(dead_code_threshold=dead_code_threshold, codebook_init=codebook_init, name=name, dtype=dtype)
    if quantizer == "ema":
        return VectorQuantizerEMA(
            num_embeddings, embedding_dim, commitment_cost, decay=decay, epsilon=epsilon, **options
        )
    if quantizer == "vq":
        return VectorQuantizer(num_embeddings, embedding_dim, commitment_cost, **options)
    raise ValueError(f'quantizer must be one of {QUANTIZER_KINDS}. Received: quantizer={quantizer!r}')
