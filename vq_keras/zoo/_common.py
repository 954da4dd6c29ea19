"""What every zoo model shares: presets as plain data and the quantizer choice."""

import keras

from vq_keras.layers._registry import QUANTIZERS, is_quantizer, make_quantizer

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


def level_quantizers(quantizer, level_names, name, dtype, **arguments):
    """One quantizer layer per level, top first.

    `quantizer` is a name in `vq_keras.layers.QUANTIZERS` (built from `arguments`, the
    model's own, each kind taking those it reads), a quantizer layer (used as it is for
    one level, cloned from its config for each of several levels) or a serialized one
    (a model's config)."""
    if isinstance(quantizer, dict):
        quantizer = keras.saving.deserialize_keras_object(quantizer)
    named = lambda level: f"{name}_{level}" if level else name  # noqa: E731
    if isinstance(quantizer, str):
        return [make_quantizer(quantizer, name=named(level), dtype=dtype, **arguments) for level in level_names]
    if not is_quantizer(quantizer):
        raise TypeError(
            "quantizer must be a name (one of "
            f"{', '.join(map(repr, QUANTIZERS))}) or a vq_keras quantizer layer (see vq_keras.layers). "
            f"Received: quantizer={quantizer!r}"
        )
    if len(level_names) == 1:
        return [quantizer]
    config = quantizer.get_config()
    return [type(quantizer).from_config({**config, "name": named(level)}) for level in level_names]


def quantizer_config(quantizer):
    """What a model's config records of its `quantizer` argument: the name, or the layer serialized."""
    return quantizer if isinstance(quantizer, (str, dict)) else keras.saving.serialize_keras_object(quantizer)


def require_one_code_per_position(autoencoder, what):
    """Refuses an autoencoder whose codes have a stage axis (ResidualVectorQuantizer):
    the priors model one code per position."""
    depth = getattr(autoencoder.quantizers[0], "code_depth", None)
    if depth is not None:
        raise ValueError(
            f"{what} does not support {type(autoencoder.quantizers[0]).__name__} codes yet: they have "
            f"{depth} codes per position (one per stage) and the priors model one. Train the autoencoder "
            "with another quantizer (ema, vq or fsq) to fit a prior and generate."
        )
