import numpy as np
import pytest

from tests.layer_harness import run_layer_test
from vq_keras.models import Encoder

pytestmark = pytest.mark.backends


@pytest.mark.parametrize("num_downsamples, size", [(1, 16), (2, 8), (3, 4)])
def test_downsamples_by_two_per_stage(num_downsamples, size):
    encoder = Encoder(16, 8, 1, num_downsamples=num_downsamples)
    x = np.random.default_rng(0).random((2, 32, 32, 3)).astype("float32")
    assert tuple(encoder(x).shape) == (2, size, size, 16)
    assert tuple(encoder.compute_output_shape((None, 32, 32, 3))) == (None, size, size, 16)
    strided = [layer for layer in encoder.stages if getattr(layer, "strides", (1, 1)) == (2, 2)]
    assert [layer.filters for layer in strided] == [8] + [16] * (num_downsamples - 1)


def test_builds_from_shapes_alone():
    encoder = Encoder(128, 32, 2)
    encoder.build((None, None, None, 3))
    assert encoder.built and all(layer.built for layer in encoder.stages)
    # conv4x4 3->64, conv4x4 64->128, conv3x3 128->128, 2 x (conv3x3 128->32, conv1x1 32->128)
    expected = (16 * 3 * 64 + 64) + (16 * 64 * 128 + 128) + (9 * 128 * 128 + 128) + 2 * (9 * 128 * 32 + 32 + 32 * 128 + 128)
    assert encoder.count_params() == expected


def test_the_layer_harness(tmp_path):
    run_layer_test(
        Encoder, dict(num_hiddens=8, num_residual_hiddens=4, num_residual_layers=1, num_downsamples=1), (1, 16, 16, 3),
        expected_output_shape=(1, 8, 8, 8), expected_num_trainable_weights=8,  # 2 convs and 1 residual layer's 2
        expected_num_non_trainable_weights=0, jit_compile=True, tmp_path=tmp_path,
    )


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="Encoder expects num_downsamples to be a positive integer. Received: num_downsamples=0"):
        Encoder(8, 4, 1, num_downsamples=0)
