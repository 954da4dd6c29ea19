"""What every zoo model shares: presets as plain data and the quantizer choice."""

import os

import keras

from vq_keras.layers._registry import (
    QUANTIZERS, constructor_parameters, is_quantizer, make_quantizer, quantizer_arguments,
)
from vq_keras.zoo._trained import headline, load, looks_like_path, trained_entries

# Images are centred on 0 inside the networks, as in Sonnet's VQ-VAE example.
PIXEL_SHIFT = 0.5


class PresetMixin:
    """`from_preset(name_or_path, **overrides)` and `presets()`: the architecture presets of a
    class's PRESETS dict (random weights) and the trained zoo entries of the class (KerasHub's
    convention: a trained preset's name returns the trained model)."""

    PRESETS = {}
    # The weights file of this class's entry folders.
    PRESET_FILE = "model.keras"

    @classmethod
    def presets(cls):
        """{name: description} of this class's presets: the architectures and, with their
        measured figures (results.json), the trained entries shipped with the package."""
        names = {name: "architecture (random weights)" for name in cls.PRESETS}
        names.update({name: headline(folder) for name, folder in trained_entries(cls.__name__).items()})
        return dict(sorted(names.items()))

    @classmethod
    def from_preset(cls, name, **overrides):
        """The trained model when `name` is a shipped entry or a folder (a zoo entry, or a run
        written by training.fit) or `.keras` file; else builds the architecture preset `name`
        (constructor arguments, updated by `overrides`)."""
        if not (isinstance(name, os.PathLike) or (isinstance(name, str) and name)):
            raise ValueError(
                f"{cls.__name__}.from_preset expects a preset name ({', '.join(sorted(cls.PRESETS)) or 'none'}), a "
                f"trained entry's name ({', '.join(trained_entries(cls.__name__)) or 'none'}), or a folder or .keras "
                f"path. Received: {name!r}"
            )
        if isinstance(name, str) and name in cls.PRESETS:
            arguments = {**cls.PRESETS[name], **overrides}
            _refuse_ignored_overrides(cls, name, arguments, overrides)
            model = cls(**arguments)
            model.build_if_needed()
            return model
        # Any class's entry name goes to load, which names the class that loads it.
        if not isinstance(name, str) or name in trained_entries() or looks_like_path(name):
            if overrides:
                raise ValueError(
                    f"{cls.__name__}.from_preset({str(name)!r}) loads trained weights, which fix the "
                    f"architecture, so it takes no overrides. Received: {sorted(overrides)}. Build an "
                    f"architecture preset ({', '.join(sorted(cls.PRESETS)) or 'none'}) with them instead."
                )
            return load(name, cls.PRESET_FILE, cls.__name__)
        raise ValueError(
            f"Unknown {cls.__name__} preset {name!r}. Architecture presets: "
            f"{', '.join(sorted(cls.PRESETS)) or 'none'}; trained: {', '.join(trained_entries(cls.__name__)) or 'none'}; "
            f"or a folder holding {cls.PRESET_FILE}."
        )


def _refuse_ignored_overrides(cls, preset, arguments, overrides):
    """A ValueError for overrides of quantizer settings that the chosen quantizer would ignore: a kind
    that does not take them (num_embeddings with "fsq"), or a layer, which brings its own."""
    model_parameters = {p.name: p for p in constructor_parameters(cls, keras.Model)}
    if "quantizer" not in model_parameters:  # a prior or a classifier
        return
    # embedding_dim too: a quantizer that does not take it (fsq, a layer) sets it for the networks
    quantizer_settings = set().union(*map(quantizer_arguments, QUANTIZERS))
    quantizer = arguments.get("quantizer", model_parameters["quantizer"].default)
    taken = quantizer_arguments(quantizer) if isinstance(quantizer, str) and quantizer in QUANTIZERS else set()
    ignored = sorted(n for n in overrides if n in quantizer_settings & set(model_parameters) and n not in taken)
    if ignored:
        given, it = ", ".join(f"{n}={overrides[n]!r}" for n in ignored), "it" if len(ignored) == 1 else "them"
        if isinstance(quantizer, str):
            takers = sorted(kind for kind in QUANTIZERS if set(ignored) <= quantizer_arguments(kind))
            fix = f"Drop {it}, or choose a quantizer that takes {it} ({', '.join(map(repr, takers)) or 'none'})."
            why = f"quantizer={quantizer!r} ({QUANTIZERS[quantizer].__name__}) does not take {it}"
        else:
            fix, why = f"Set {it} on the layer instead.", f"the quantizer layer passed ({type(quantizer).__name__}) has its own"
        raise ValueError(f"{cls.__name__}.from_preset({preset!r}) would ignore {given}: {why}. {fix}")


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
