import numpy as np
import pytest
import keras
from keras import ops

from tests.backend import input_jacobian, loss_and_gradients, to_numpy
from tests.layer_harness import run_layer_test
from vq_keras.layers import MaskedConv2D
from vq_keras.layers.masked_conv2d import causal_mask

pytestmark = pytest.mark.backends  # the same checks on every backend (tests/backend.py)


def _numpy_conv_same(x, kernel, bias):
    """Stride-1 'same' convolution in NumPy (odd kernels), NHWC / HWIO."""
    kh, kw = kernel.shape[:2]
    padded = np.pad(x.astype(np.float64), ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    out = np.zeros(x.shape[:3] + (kernel.shape[3],))
    for i in range(kh):
        for j in range(kw):
            out += padded[:, i : i + x.shape[1], j : j + x.shape[2], :] @ kernel[i, j]
    return out + bias


def test_masks_a_and_b_differ_exactly_at_the_centre():
    expected_a = np.array(
        [
            [1, 1, 1, 1, 1],
            [1, 1, 1, 1, 1],
            [1, 1, 0, 0, 0],
            [0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0],
        ],
        "float32",
    )
    mask_a, mask_b = causal_mask((5, 5), "A"), causal_mask((5, 5), "B")
    np.testing.assert_array_equal(mask_a, expected_a)
    difference = mask_b - mask_a
    assert difference[2, 2] == 1 and np.count_nonzero(difference) == 1
    # A non-square kernel: rows above the centre row, then left of (and at, for B) the centre.
    np.testing.assert_array_equal(causal_mask((3, 5), "B"), [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [0, 0, 0, 0, 0]])
    layer_a, layer_b = MaskedConv2D(4, 5, "A"), MaskedConv2D(4, 5, "B")
    layer_a.build((None, 6, 6, 3))
    layer_b.build((None, 6, 6, 3))
    assert layer_a.kernel_mask.shape == (5, 5, 1, 1)
    np.testing.assert_array_equal(layer_a.kernel_mask[:, :, 0, 0], mask_a)
    np.testing.assert_array_equal(layer_b.kernel_mask[:, :, 0, 0], mask_b)
    assert len(layer_a.weights) == 2  # the mask is a constant, not a weight


@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_matches_numpy_masked_convolution(mask_type):
    layer = MaskedConv2D(5, (3, 5), mask_type)
    x = np.random.default_rng(0).normal(size=(2, 6, 7, 3)).astype("float32")
    output = to_numpy(layer(x))
    kernel, bias = (to_numpy(w) for w in layer.weights)
    expected = _numpy_conv_same(x, kernel * causal_mask((3, 5), mask_type)[:, :, None, None], bias)
    np.testing.assert_allclose(output, expected, rtol=1e-5, atol=1e-5)
    # The kernel variable itself is untouched; the mask acts inside the convolution.
    assert np.count_nonzero(kernel[2]) == kernel[2].size


@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_output_depends_only_on_earlier_positions(mask_type):
    layer = MaskedConv2D(2, 3, mask_type, dilation_rate=1)
    x = np.random.default_rng(1).normal(size=(1, 4, 4, 2)).astype("float32")
    jacobian = input_jacobian(lambda x: ops.sum(layer(x), axis=-1)[0], x)  # (4, 4, 1, 4, 4, 2)
    jacobian = np.abs(jacobian).sum(axis=-1).reshape(16, 16)
    later = np.triu(np.ones((16, 16)), k=0 if mask_type == "A" else 1)
    assert not np.any(jacobian[later > 0])
    assert jacobian[5, 4] > 0 and jacobian[5, 0] > 0 and jacobian[5, 2] > 0  # left, above-left, above-right
    assert (jacobian[5, 5] > 0) == (mask_type == "B")


def test_kernel_gradient_is_zero_at_masked_taps():
    layer = MaskedConv2D(3, 3, "A")
    x = np.random.default_rng(2).normal(size=(2, 5, 5, 2)).astype("float32")
    layer(x)
    _, gradients = loss_and_gradients(layer, lambda y: ops.sum(ops.square(y)), x)
    gradient = to_numpy(gradients[[v.path for v in layer.trainable_variables].index(layer.kernel.path)])
    masked = causal_mask((3, 3), "A") == 0
    assert not np.any(gradient[masked]) and np.all(np.abs(gradient[~masked]).sum(axis=(-1, -2)) > 0)


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        (
            (8, 3, "C"),
            {},
            'MaskedConv2D expects mask_type to be "A" (the first layer: excludes the current position) '
            'or "B" (later layers: includes it). Received: mask_type=\'C\'',
        ),
        (
            (8, (3, 4), "A"),
            {},
            "MaskedConv2D expects an odd kernel_size, so that the kernel has a centre tap. "
            "Received: kernel_size=(3, 4). Use e.g. 3, 5 or 7.",
        ),
        (
            (8, 3, "B"),
            {"padding": "valid"},
            'MaskedConv2D expects padding="same" and strides=1, so that output position (i, j) is '
            "input position (i, j) and the mask is causal in raster order. "
            "Received: padding='valid', strides=(1, 1)",
        ),
        (
            (8, 3, "B"),
            {"strides": 2},
            'MaskedConv2D expects padding="same" and strides=1, so that output position (i, j) is '
            "input position (i, j) and the mask is causal in raster order. "
            "Received: padding='same', strides=(2, 2)",
        ),
    ],
)
def test_bad_arguments_are_clear_errors(args, kwargs, message):
    with pytest.raises(ValueError) as error:
        MaskedConv2D(*args, **kwargs)
    assert str(error.value) == message


@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_the_layer_harness(mask_type, tmp_path):
    run_layer_test(
        MaskedConv2D, dict(filters=4, kernel_size=3, mask_type=mask_type, activation="relu"), (2, 5, 5, 3),
        expected_output_shape=(2, 5, 5, 4), expected_num_trainable_weights=2, expected_num_non_trainable_weights=0,
        jit_compile=True, tmp_path=tmp_path,
    )


def test_both_masks_survive_a_keras_file_round_trip(tmp_path):
    inputs = keras.Input((5, 5, 3))
    hidden = MaskedConv2D(4, 3, "A", activation="relu")(inputs)
    model = keras.Model(inputs, MaskedConv2D(4, 3, "B")(hidden))
    layer = model.layers[1]
    clone = MaskedConv2D.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config() and clone.mask_type == "A"
    x = np.random.default_rng(3).normal(size=(2, 5, 5, 3)).astype("float32")
    model.save(tmp_path / "masked.keras")
    reloaded = keras.saving.load_model(tmp_path / "masked.keras")
    assert [type(l).__name__ for l in reloaded.layers[1:]] == ["MaskedConv2D", "MaskedConv2D"]
    assert [l.mask_type for l in reloaded.layers[1:]] == ["A", "B"]
    np.testing.assert_array_equal(to_numpy(reloaded(x)), to_numpy(model(x)))
