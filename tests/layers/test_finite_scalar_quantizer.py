import keras
import numpy as np
import pytest

from tests.backend import input_jacobian, to_numpy
from tests.layer_harness import run_layer_test
from vq_keras.layers import FiniteScalarQuantizer

pytestmark = pytest.mark.backends  # the same checks on every backend (tests/backend.py)


def _numpy_fsq(z, levels):
    """The paper's appendix A.1, in float64: levels per channel, codes, normalised output."""
    levels = to_numpy(levels)
    half_l = (levels - 1) * (1 - 1e-3) / 2
    offset = np.where(levels % 2 == 0, 0.5, 0.0)
    shift = np.tan(offset / half_l)
    bounded = np.tanh(z.astype(np.float64) + shift) * half_l - offset
    rounded = np.round(bounded)
    digits = (rounded + levels // 2).astype(int)
    # Channel 0 the least significant digit: ravel_multi_index with the channels reversed.
    codes = np.ravel_multi_index(tuple(np.moveaxis(digits[..., ::-1], -1, 0)), tuple(levels[::-1]))
    return rounded / (levels // 2), codes, bounded


def test_output_and_codes_match_the_paper_in_numpy():
    levels = (8, 5, 5, 5)
    layer = FiniteScalarQuantizer(levels)
    assert layer.num_embeddings == 1000 and layer.embedding_dim == 4
    z = np.random.default_rng(0).normal(size=(3, 6, 6, 4)).astype("float32") * 2
    expected, codes, _ = _numpy_fsq(z, levels)
    outputs, got = layer(z, return_codes=True)
    assert keras.backend.standardize_dtype(got.dtype) == "int32" and got.shape == (3, 6, 6)
    np.testing.assert_array_equal(to_numpy(got), codes)
    np.testing.assert_allclose(to_numpy(outputs), expected, atol=1e-6)
    np.testing.assert_array_equal(to_numpy(layer.encode(z)), codes)
    np.testing.assert_allclose(to_numpy(layer.lookup(got)), expected, atol=1e-6)
    assert layer.losses == []  # no codebook, no commitment


@pytest.mark.parametrize("levels", [(8, 5, 5, 5), (2, 3, 4), (7,)])
def test_every_code_is_reachable_and_lookup_inverts_encode(levels):
    layer = FiniteScalarQuantizer(levels)
    codes = np.arange(layer.num_embeddings, dtype="int32")
    vectors = to_numpy(layer.lookup(codes))
    assert vectors.min() >= -1 and vectors.max() <= 1
    for channel, level in enumerate(levels):  # L evenly spaced values per channel
        assert len(np.unique(vectors[:, channel])) == level
    # Inputs that land on each level: invert the bound at the level (moved 0.1 inside the
    # open range of the bound for the outermost levels, which it only approaches).
    levels_arr = to_numpy(levels)
    half_l = (levels_arr - 1) * (1 - 1e-3) / 2
    offset = np.where(levels_arr % 2 == 0, 0.5, 0.0)
    target = np.clip(vectors * (levels_arr // 2), -half_l - offset + 0.1, half_l - offset - 0.1)
    z = np.arctanh((target + offset) / half_l) - np.tan(offset / half_l)
    assert np.isfinite(z).all()
    np.testing.assert_array_equal(to_numpy(layer.encode(z.astype("float32"))), codes)


def test_gradient_is_straight_through_the_bound():
    levels = (8, 5, 3)
    layer = FiniteScalarQuantizer(levels)
    z = np.random.default_rng(1).normal(size=(5, 3)).astype("float32")
    gradient = input_jacobian(lambda z: keras.ops.sum(layer(z)), z)
    levels_arr = to_numpy(levels)
    half_l = (levels_arr - 1) * (1 - 1e-3) / 2
    shift = np.tan(np.where(levels_arr % 2 == 0, 0.5, 0.0) / half_l)
    expected = (1 - np.tanh(to_numpy(z).astype(np.float64) + shift) ** 2) * half_l / (levels_arr // 2)
    np.testing.assert_allclose(gradient, expected, rtol=1e-5)


@pytest.mark.parametrize(
    "levels, error, message",
    [
        ((8, 1, 5), ValueError, r"FiniteScalarQuantizer expects every level to be an integer of at least 2 "
         r"\(a channel with one level carries no information\). Received: levels=\(8, 1, 5\)"),
        ((), ValueError, r"expects levels to be a non-empty sequence of integers, one per channel, e.g. "
         r"\(8, 5, 5, 5\). Received: levels=\(\)"),
        ("855", ValueError, r"Received: levels='855'"),
        ((4, 2.5), ValueError, r"Received: levels=\(4, 2.5\)"),
    ],
)
def test_bad_levels_are_clear_errors(levels, error, message):
    with pytest.raises(error, match=message):
        FiniteScalarQuantizer(levels)


def test_wrong_last_axis_and_bad_codes_are_clear_errors():
    layer = FiniteScalarQuantizer((8, 5, 5, 5))
    with pytest.raises(ValueError, match=r"FiniteScalarQuantizer expects the last input axis to equal "
                                         r"embedding_dim=4. Received: input_shape=\(2, 3, 64\)"):
        layer(np.zeros((2, 3, 64), "float32"))
    with pytest.raises(ValueError, match=r"expects codes in \[0, num_embeddings=1000\)"):
        layer.lookup(np.array([0, 1000], "int32"))
    with pytest.raises(TypeError, match=r"expects integer codes"):
        layer.lookup(np.array([0.0]))


def test_the_layer_harness(tmp_path):
    run_layer_test(
        FiniteScalarQuantizer, dict(levels=(8, 5, 5)), (2, 4, 4, 3), expected_output_shape=(2, 4, 4, 3),
        expected_num_trainable_weights=0, expected_num_non_trainable_weights=0, jit_compile=True, tmp_path=tmp_path,
    )


def test_config_round_trip():
    layer = FiniteScalarQuantizer((8, 8, 8, 5, 5, 5), name="fsq")
    config = layer.get_config()
    assert config["levels"] == [8, 8, 8, 5, 5, 5]
    clone = FiniteScalarQuantizer.from_config(config)
    assert clone.get_config() == config and clone.num_embeddings == 64000
    assert keras.saving.get_registered_name(FiniteScalarQuantizer) == "vq_keras>FiniteScalarQuantizer"
