"""The principle behind #24's cases, over every public constructor of vq_keras.layers, .models and .zoo:
a Python number may be given as a NumPy scalar, a float is refused when NaN or infinite, an empty batch
changes no quantizer state and gives no NaN, and code levels in the wrong order or shape are refused
with a ValueError naming the expected shapes."""

import inspect
import math

import numpy as np
import pytest

from tests.presets import TINY_AUTOENCODER
from vq_keras import layers, models, zoo
from vq_keras.layers._registry import constructor_parameters

# What each class needs beyond its defaults (small sizes).
REQUIRED = {
    "CausalSelfAttention": dict(num_heads=2, key_dim=4, mask_type="A"),
    "FiniteScalarQuantizer": dict(levels=(4, 3)),
    "GatedPixelCNNBlock": dict(filters=4, kernel_size=3, mask_type="A"),
    "MaskedConv2D": dict(filters=4, kernel_size=3, mask_type="A"),
    "ResidualStack": dict(num_hiddens=4, num_residual_hiddens=2, num_residual_layers=1),
    "ResidualVectorQuantizer": dict(num_quantizers=2, num_embeddings=16, embedding_dim=4),
    "TransformerBlock": dict(num_heads=2, intermediate_dim=8),
    "VectorQuantizer": dict(num_embeddings=16, embedding_dim=4),
    "VectorQuantizerEMA": dict(num_embeddings=16, embedding_dim=4),
    "Decoder": dict(num_hiddens=4, num_residual_hiddens=2, num_residual_layers=1, output_channels=3),
    "Encoder": dict(num_hiddens=4, num_residual_hiddens=2, num_residual_layers=1),
    "ImageClassifier": dict(widths=(4, 8)),
    "MaskGITPrior": dict(num_embeddings=16, grid_shape=(4, 4), num_layers=1, hidden_dim=8, num_heads=2),
    "PixelCNNPrior": dict(num_embeddings=16, num_layers=1, num_filters=8),
    "TransformerPrior": dict(num_embeddings=16, grid_shape=(4, 4), num_layers=1, hidden_dim=8, num_heads=2),
    "VQVAE": dict(TINY_AUTOENCODER),
    "VQVAE2": dict(TINY_AUTOENCODER),
}
# Abstract bases and errors: not built by users.
NOT_BUILT = ("AutoregressivePrior", "MismatchedAutoencoder", "Prior", "VQModel", "HierarchicalPrior")
CLASSES = {
    name: getattr(module, name)
    for module in (layers, models, zoo) for name in module.__all__
    if inspect.isclass(getattr(module, name)) and name not in NOT_BUILT
}


def _numeric_parameters(cls):
    """{name: a valid value} of the numbers `cls` takes: its defaults and REQUIRED's numbers."""
    stop = next(base for base in cls.__mro__ if base.__module__.startswith("keras."))
    values = {p.name: p.default for p in constructor_parameters(cls, stop)}
    values.update(REQUIRED.get(cls.__name__, {}))
    return {name: value for name, value in values.items() if _is_number(value)}


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _numpy(value):
    """The NumPy scalar of the same value (float64: a float32 would hold another number, e.g. for 0.99)."""
    return np.int32(value) if isinstance(value, int) else np.float64(value)


def test_every_public_class_is_in_the_table():
    assert sorted(CLASSES) == sorted(REQUIRED)


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_numpy_scalars_are_taken_as_the_numbers_they_hold(name):
    cls, plain = CLASSES[name], REQUIRED[name]
    numbers = _numeric_parameters(cls)
    assert numbers or name == "FiniteScalarQuantizer", "no numeric parameter found"
    with_numpy = {**plain, **{key: _numpy(value) for key, value in numbers.items()}}
    expected, got = cls(**{**plain, **numbers}).get_config(), cls(**with_numpy).get_config()
    assert {key: got[key] for key in numbers if key in got} == {key: expected[key] for key in numbers if key in expected}


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_nan_and_infinite_floats_are_refused_naming_the_argument(name):
    cls, plain = CLASSES[name], REQUIRED[name]
    floats = [key for key, value in _numeric_parameters(cls).items() if isinstance(value, float)]
    for key in floats:
        for bad in (math.nan, math.inf, -math.inf, np.float32("nan")):
            with pytest.raises(ValueError, match=key):
                cls(**{**plain, key: bad})


QUANTIZER_CLASSES = ["FiniteScalarQuantizer", "ResidualVectorQuantizer", "VectorQuantizer", "VectorQuantizerEMA"]


@pytest.mark.parametrize("name", QUANTIZER_CLASSES)
def test_an_empty_batch_changes_no_quantizer_state_and_gives_no_nan(name):
    kwargs = {**REQUIRED[name], **({"dead_code_threshold": 0.5} if name != "FiniteScalarQuantizer" else {})}
    quantizer = CLASSES[name](**kwargs)
    dim = quantizer.embedding_dim
    quantizer(np.random.default_rng(0).normal(size=(6, dim)).astype("float32"), training=True)  # built, state set
    before = [np.array(v) for v in quantizer.variables]
    for shape in ((0, dim), (0, 3, 3, dim)):
        out = quantizer(np.zeros(shape, "float32"), training=True)
        assert out.shape == shape and not np.isnan(np.asarray(out)).any()
        assert all(np.isfinite(np.asarray(loss)) for loss in quantizer.losses)
    after = [np.array(v) for v in quantizer.variables]
    for variable, old, new in zip(quantizer.variables, before, after):
        np.testing.assert_array_equal(new, old, err_msg=variable.path)


def test_code_levels_in_the_wrong_order_or_shape_are_refused_naming_the_shapes():
    model = zoo.VQVAE2(**TINY_AUTOENCODER)
    model.build_if_needed()
    top, bottom = model.encode(np.zeros((2, 32, 32, 3), "float32"))
    np.testing.assert_array_equal(model.decode([np.asarray(top), np.asarray(bottom)]), model.decode([top, bottom]))
    expected = "VQVAE2 expects 2 code grids, top first (top, bottom), each of shape (batch, height, width) with one batch size."
    cases = {  # wrong levels: what the message adds after `expected`
        "reversed": ([bottom, top], " For a top grid of 8x8 the grids are 8x8, 16x16. Received shapes: (2, 8, 8), (2, 4, 4)"),
        "cropped": ([top, bottom[:, :4]], " For a top grid of 4x4 the grids are 4x4, 8x8. Received shapes: (2, 4, 4), (2, 4, 8)"),
        "unbatched": ([top[0], bottom[0]], " Received shapes: (4, 4), (8, 8)"),
        "batches": ([top, bottom[:1]], " For a top grid of 4x4 the grids are 4x4, 8x8. Received shapes: (2, 4, 4), (1, 8, 8)"),
    }
    for name, (wrong, message) in cases.items():
        with pytest.raises(ValueError) as error:
            model.decode(wrong)
        assert str(error.value) == expected + message, name
    with pytest.raises(ValueError, match=r"^VQVAE2 expects 2 code grid\(s\), top first. Received: 1"):
        model.decode([top])


@pytest.mark.parametrize("kind", ["pixelcnn", "maskgit"])
def test_generate_takes_numpy_scalars_and_draws_what_python_numbers_draw(kind):
    from tests.presets import TINY_PRIORS

    autoencoder = zoo.VQVAE(**TINY_AUTOENCODER)
    prior = zoo.PRIORS[kind](16, grid_shape=(8, 8), num_classes=3, label_dropout=0.1, **TINY_PRIORS[kind])
    prior.build_if_needed()
    plain = dict(num=2, seed=0, labels=1, temperature=1.0, top_k=3, top_p=0.5, guidance=2.0)
    plain.update(num_steps=2) if kind == "maskgit" else None
    with_numpy = {key: _numpy(value) for key, value in plain.items()}
    np.testing.assert_array_equal(zoo.generate(autoencoder, prior, **with_numpy), zoo.generate(autoencoder, prior, **plain))
    with pytest.raises(ValueError, match=r"temperature to be a finite number"):
        zoo.generate(autoencoder, prior, **{**plain, "temperature": np.float32("inf")})
