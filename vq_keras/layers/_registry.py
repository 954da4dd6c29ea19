"""Every quantizer by name: how VQVAE, VQVAE2 and `training.fit --quantizer` choose one.

A new quantizer is one file with a `Quantizer` subclass (see `_base_quantizer`) and one
line in QUANTIZERS.
"""

import inspect

import keras

from vq_keras.layers._base_quantizer import Quantizer
from vq_keras.layers.finite_scalar_quantizer import FiniteScalarQuantizer
from vq_keras.layers.residual_vector_quantizer import ResidualVectorQuantizer
from vq_keras.layers.vector_quantizer import VectorQuantizer
from vq_keras.layers.vector_quantizer_ema import VectorQuantizerEMA

QUANTIZERS = {
    "ema": VectorQuantizerEMA,
    "vq": VectorQuantizer,
    "fsq": FiniteScalarQuantizer,
    "rvq": ResidualVectorQuantizer,
}


def constructor_parameters(cls, stop):
    """The named constructor parameters of `cls`: its own and those of its bases below `stop`."""
    parameters = []
    for base in cls.__mro__:
        if base is stop:
            break
        if "__init__" in vars(base):
            parameters += [
                p for p in inspect.signature(base.__init__).parameters.values()
                if p.kind is p.POSITIONAL_OR_KEYWORD and p.name != "self"
            ]
    return parameters


def quantizer_parameters(kind):
    """The constructor parameters (inspect.Parameter) of quantizer `kind`: its own and its bases'."""
    return constructor_parameters(QUANTIZERS[kind], keras.layers.Layer)


def quantizer_arguments(kind):
    """The names of the constructor arguments of quantizer `kind`."""
    return {p.name for p in quantizer_parameters(kind)}


def make_quantizer(kind, **arguments):
    """The quantizer layer named `kind`, given those of `arguments` its constructor takes.

    The others are left out, so a model can pass every quantizer argument it has (for
    example `decay`, which only "ema" and "rvq" read) and `name` / `dtype`.
    """
    if kind not in QUANTIZERS:
        raise ValueError(
            f"quantizer must be one of {tuple(QUANTIZERS)} or a quantizer layer. Received: quantizer={kind!r}"
        )
    accepted = quantizer_arguments(kind) | {"name", "dtype"}
    missing = [p.name for p in quantizer_parameters(kind) if p.default is p.empty and p.name not in arguments]
    if missing:
        raise ValueError(
            f"quantizer={kind!r} ({QUANTIZERS[kind].__name__}) needs {', '.join(missing)}, which this model does "
            f"not have. Received: {', '.join(sorted(arguments))}. Pass a layer instead, e.g. "
            f"quantizer={QUANTIZERS[kind].__name__}({', '.join(f'{n}=...' for n in missing)}, ...)."
        )
    return QUANTIZERS[kind](**{name: value for name, value in arguments.items() if name in accepted})


def is_quantizer(layer):
    """Whether `layer` is a quantizer layer (meets the contract in `_base_quantizer`)."""
    return isinstance(layer, Quantizer)
