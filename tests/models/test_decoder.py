import numpy as np
import pytest
import keras

from vq_keras.models import Decoder


@pytest.mark.parametrize("num_upsamples, size", [(1, 16), (2, 32), (3, 64)])
def test_upsamples_by_two_per_stage(num_upsamples, size):
    decoder = Decoder(16, 8, 1, output_channels=3, num_upsamples=num_upsamples)
    x = np.random.default_rng(0).random((2, 8, 8, 5)).astype("float32")
    assert tuple(decoder(x).shape) == (2, size, size, 3)
    assert tuple(decoder.compute_output_shape((None, 8, 8, 5))) == (None, size, size, 3)


def test_config_and_keras_file_round_trip(tmp_path):
    inputs = keras.Input((4, 4, 6))
    model = keras.Model(inputs, Decoder(8, 4, 1, output_channels=1)(inputs))
    layer = model.layers[-1]
    assert Decoder.from_config(layer.get_config()).get_config() == layer.get_config()
    model.save(tmp_path / "decoder.keras")
    x = np.random.default_rng(1).random((1, 4, 4, 6)).astype("float32")
    np.testing.assert_array_equal(keras.saving.load_model(tmp_path / "decoder.keras")(x).numpy(), model(x).numpy())


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="Decoder expects output_channels to be a positive integer. Received: output_channels=0"):
        Decoder(8, 4, 1, output_channels=0)
