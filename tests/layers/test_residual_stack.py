import numpy as np
import pytest

from tests.backend import to_numpy
from tests.layer_harness import run_layer_test
from vq_keras.layers import ResidualStack

pytestmark = pytest.mark.backends  # the same checks on every backend (tests/backend.py)


def _numpy_conv_same(x, kernel, bias):
    """Stride-1 'same' convolution in NumPy (odd kernels), NHWC / HWIO."""
    kh, kw = kernel.shape[:2]
    padded = np.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    out = np.zeros(x.shape[:3] + (kernel.shape[3],))
    for i in range(kh):
        for j in range(kw):
            out += padded[:, i : i + x.shape[1], j : j + x.shape[2], :] @ kernel[i, j]
    return out + bias


def test_matches_numpy_residual_blocks():
    stack = ResidualStack(num_hiddens=6, num_residual_hiddens=4, num_residual_layers=2)
    x = np.random.default_rng(0).normal(size=(2, 5, 5, 6)).astype("float32")
    output = to_numpy(stack(x))
    h = x.astype(np.float64)
    relu = lambda v: np.maximum(v, 0)  # noqa: E731
    for _, conv3, _, conv1 in stack.blocks:
        inner = relu(_numpy_conv_same(relu(h), *[to_numpy(w) for w in conv3.weights]))
        h = h + _numpy_conv_same(inner, *[to_numpy(w) for w in conv1.weights])
    np.testing.assert_allclose(output, relu(h), rtol=1e-4, atol=1e-5)


def test_zero_layers_is_relu():
    stack = ResidualStack(4, 2, 0)
    x = np.random.default_rng(1).normal(size=(1, 3, 3, 4)).astype("float32")
    np.testing.assert_array_equal(to_numpy(stack(x)), np.maximum(x, 0))


def test_wrong_channels_is_a_clear_error():
    with pytest.raises(ValueError) as error:
        ResidualStack(8, 4, 1)(np.zeros((1, 4, 4, 3), "float32"))
    assert str(error.value) == (
        "ResidualStack expects 4D inputs (batch, height, width, num_hiddens=8). "
        "Received: input_shape=(1, 4, 4, 3)"
    )


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="num_residual_layers to be a non-negative integer. Received: num_residual_layers=-1"):
        ResidualStack(8, 4, -1)


def test_the_layer_harness(tmp_path):
    layer = run_layer_test(
        ResidualStack, dict(num_hiddens=8, num_residual_hiddens=4, num_residual_layers=2), (2, 4, 4, 8),
        expected_output_shape=(2, 4, 4, 8), expected_num_trainable_weights=8,  # 2 layers x 2 convs x (kernel, bias)
        expected_num_non_trainable_weights=0,
        jit_compile=True, tmp_path=tmp_path,
    )
    x = np.random.default_rng(2).normal(size=(2, 4, 4, 8)).astype("float32")
    assert np.any(to_numpy(layer(x)) != x)
