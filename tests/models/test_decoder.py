import numpy as np
import pytest

from tests.layer_harness import run_layer_test
from vq_keras.models import Decoder

pytestmark = pytest.mark.backends


@pytest.mark.parametrize("num_upsamples, size", [(1, 16), (2, 32), (3, 64)])
def test_upsamples_by_two_per_stage(num_upsamples, size):
    decoder = Decoder(16, 8, 1, output_channels=3, num_upsamples=num_upsamples)
    x = np.random.default_rng(0).random((2, 8, 8, 5)).astype("float32")
    assert tuple(decoder(x).shape) == (2, size, size, 3)
    assert tuple(decoder.compute_output_shape((None, 8, 8, 5))) == (None, size, size, 3)


def test_the_layer_harness(tmp_path):
    run_layer_test(
        Decoder, dict(num_hiddens=8, num_residual_hiddens=4, num_residual_layers=1, output_channels=1), (1, 4, 4, 6),
        expected_output_shape=(1, 16, 16, 1), expected_num_trainable_weights=10,  # conv, 2 residual, 2 transposed
        expected_num_non_trainable_weights=0, jit_compile=True, tmp_path=tmp_path,
    )


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="Decoder expects output_channels to be a positive integer. Received: output_channels=0"):
        Decoder(8, 4, 1, output_channels=0)
