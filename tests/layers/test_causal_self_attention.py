import numpy as np
import pytest
import keras
from keras import ops

from tests.backend import input_jacobian, to_numpy
from tests.layer_harness import run_layer_test
from vq_keras.layers import CausalSelfAttention

pytestmark = pytest.mark.backends  # the same checks on every backend (tests/backend.py)

HEIGHT, WIDTH, CHANNELS = 3, 4, 6
POSITIONS = HEIGHT * WIDTH


def _inputs(batch=1, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, HEIGHT, WIDTH, CHANNELS)).astype("float32")


def _dependence(layer, x):
    """bool (positions, positions): [p, q] iff output p has a non-zero gradient w.r.t. input q."""
    weights = np.random.default_rng(9).normal(size=(CHANNELS,)).astype("float32")
    jacobian = np.abs(input_jacobian(lambda x: ops.tensordot(layer(x)[0], weights, axes=1), x)).sum(axis=-1)
    return jacobian.reshape(POSITIONS, POSITIONS) > 0


def _numpy_attention(layer, x):
    """The layer's math in NumPy, float64."""
    q_w, q_b, k_w, k_b, v_w, v_b, o_w, o_b = (to_numpy(w).astype(np.float64) for w in layer.weights)
    heads = layer.num_heads
    flat = x.reshape(x.shape[0], -1, x.shape[-1]).astype(np.float64)
    split = lambda t: t.reshape(t.shape[0], t.shape[1], heads, -1).transpose(0, 2, 1, 3)  # noqa: E731
    asking = flat
    if layer.mask_type == "A":  # queries from the previous position, zeros first
        asking = np.concatenate([np.zeros_like(flat[:, :1]), flat[:, :-1]], axis=1)
    q, k, v = split(asking @ q_w + q_b), split(flat @ k_w + k_b), split(flat @ v_w + v_b)
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(layer.key_dim)
    length = flat.shape[1]
    allowed = np.tril(np.ones((length, length), bool), k=0 if layer.mask_type == "B" else -1)
    scores = np.where(allowed, scores, -np.inf)
    weights = np.exp(scores - scores.max(-1, keepdims=True, initial=-1e300, where=allowed))
    weights = np.where(allowed, weights, 0.0)
    weights = weights / np.maximum(weights.sum(-1, keepdims=True), 1e-300)
    attended = (weights @ v).transpose(0, 2, 1, 3).reshape(flat.shape[0], length, -1)
    out = (attended @ o_w + o_b).reshape(x.shape)
    return x + out if layer.mask_type == "B" else out


@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_matches_numpy(mask_type):
    layer = CausalSelfAttention(num_heads=2, key_dim=3, mask_type=mask_type, value_dim=4)
    x = _inputs(batch=2)
    np.testing.assert_allclose(to_numpy(layer(x)), _numpy_attention(layer, x), rtol=1e-4, atol=1e-5)


def test_type_a_attends_strictly_earlier_positions_only():
    layer = CausalSelfAttention(num_heads=2, key_dim=4, mask_type="A")
    depends = _dependence(layer, _inputs())
    # Every strictly earlier position, and nothing else (no residual).
    np.testing.assert_array_equal(depends, np.tril(np.ones((POSITIONS, POSITIONS), bool), k=-1))
    # Position 0 has nothing to attend to: zeros, not an average of the future.
    np.testing.assert_array_equal(to_numpy(layer(_inputs())[0, 0, 0]), np.zeros(CHANNELS))


def test_type_b_attends_earlier_positions_and_itself():
    layer = CausalSelfAttention(num_heads=3, key_dim=2, mask_type="B")
    depends = _dependence(layer, _inputs())
    np.testing.assert_array_equal(depends, np.tril(np.ones((POSITIONS, POSITIONS), bool), k=0))
    np.testing.assert_array_equal(to_numpy(layer.attention_mask(3)), [[1, 0, 0], [1, 1, 0], [1, 1, 1]])


def test_scores_and_softmax_stay_float32_under_mixed_precision():
    x = _inputs(batch=2)
    reference = CausalSelfAttention(2, 3, "B")
    reference(x)
    mixed = CausalSelfAttention(2, 3, "B", dtype="mixed_float16")
    mixed(x)
    mixed.set_weights(reference.get_weights())
    outputs = mixed(x)
    assert keras.backend.standardize_dtype(outputs.dtype) == "float16"
    np.testing.assert_allclose(to_numpy(outputs).astype("float32"), to_numpy(reference(x)), atol=2e-2)


def test_dropout_only_in_training():
    layer = CausalSelfAttention(1, 4, "B", dropout=0.5)
    x = _inputs()
    np.testing.assert_array_equal(to_numpy(layer(x)), to_numpy(layer(x, training=False)))
    assert np.abs(to_numpy(layer(x, training=True)) - to_numpy(layer(x))).max() > 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(num_heads=2, key_dim=4, mask_type="C"),
            'CausalSelfAttention expects mask_type to be "A" (the first layer: excludes the current '
            "position) or \"B\" (later layers: includes it). Received: mask_type='C'",
        ),
        (
            dict(num_heads=0, key_dim=4, mask_type="B"),
            "CausalSelfAttention expects num_heads to be a positive integer. Received: num_heads=0",
        ),
        (
            dict(num_heads=2, key_dim=4, mask_type="B", dropout=-0.1),
            r"CausalSelfAttention expects dropout in [0, 1). Received: dropout=-0.1",
        ),
    ],
)
def test_bad_arguments_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError) as error:
        CausalSelfAttention(**kwargs)
    assert str(error.value) == message


def test_wrong_rank_is_a_clear_error():
    with pytest.raises(ValueError) as error:
        CausalSelfAttention(2, 4, "B")(np.zeros((2, 12, 6), "float32"))
    assert str(error.value) == (
        "CausalSelfAttention expects 4D inputs (batch, height, width, channels) with a known "
        "number of channels. Received: input_shape=(2, 12, 6)"
    )


def test_the_layer_harness(tmp_path):
    run_layer_test(
        CausalSelfAttention, dict(num_heads=2, key_dim=3, mask_type="B", value_dim=5, dropout=0.1),
        (2, HEIGHT, WIDTH, CHANNELS), expected_output_shape=(2, HEIGHT, WIDTH, CHANNELS),
        expected_num_trainable_weights=8, expected_num_non_trainable_weights=0, jit_compile=True, tmp_path=tmp_path,
    )


@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_step_by_step_with_the_cache_equals_the_whole_grid(mask_type):
    layer = CausalSelfAttention(num_heads=2, key_dim=3, mask_type=mask_type, value_dim=4)
    x = _inputs(batch=2, seed=3)
    expected = to_numpy(layer(x)).reshape(2, POSITIONS, CHANNELS)
    flat = x.reshape(2, POSITIONS, CHANNELS)
    cache = layer.empty_cache(2, POSITIONS, CHANNELS)
    for position in range(POSITIONS):
        outputs, cache = layer.step(flat[:, position], position, cache)
        np.testing.assert_allclose(to_numpy(outputs), expected[:, position], rtol=1e-5, atol=1e-6)
