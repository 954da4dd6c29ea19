import numpy as np
import pytest
import keras

from tests.backend import input_jacobian, losses_and_gradients, to_numpy
from tests.layer_harness import run_layer_test
from vq_keras.layers import VectorQuantizer

pytestmark = pytest.mark.backends  # the same checks on every backend (tests/backend.py)


def _numpy_nearest(x, codebook):
    flat = x.reshape(-1, codebook.shape[1]).astype(np.float64)
    distances = ((flat[:, None, :] - codebook[None, :, :].astype(np.float64)) ** 2).sum(-1)
    return distances.argmin(1).reshape(x.shape[:-1])


def _layer(num_embeddings=16, embedding_dim=4, seed=0, **kwargs):
    layer = VectorQuantizer(num_embeddings, embedding_dim, **kwargs)
    layer.build((None, embedding_dim))
    rng = np.random.default_rng(seed)
    layer.codebook.assign(rng.normal(size=(num_embeddings, embedding_dim)).astype("float32"))
    return layer


def test_nearest_code_matches_numpy():
    layer = _layer(num_embeddings=32, embedding_dim=8)
    x = np.random.default_rng(1).normal(size=(3, 5, 7, 8)).astype("float32")
    codebook = to_numpy(layer.codebook)
    expected = _numpy_nearest(x, codebook)
    codes = layer.encode(x)
    assert keras.backend.standardize_dtype(codes.dtype) == "int32" and tuple(codes.shape) == (3, 5, 7)
    np.testing.assert_array_equal(to_numpy(codes), expected)
    np.testing.assert_allclose(to_numpy(layer(x)), codebook[expected], rtol=0, atol=0)
    np.testing.assert_array_equal(to_numpy(layer.lookup(codes)), codebook[expected])


def test_call_can_return_codes():
    layer = _layer()
    x = np.random.default_rng(2).normal(size=(2, 3, 4)).astype("float32")
    quantized, codes = layer(x, return_codes=True)
    np.testing.assert_array_equal(to_numpy(codes), _numpy_nearest(x, to_numpy(layer.codebook)))
    np.testing.assert_array_equal(to_numpy(quantized), to_numpy(layer(x)))


def test_straight_through_gradient_is_identity():
    layer = _layer(num_embeddings=8, embedding_dim=3)
    x = np.random.default_rng(3).normal(size=(2, 3)).astype("float32")
    jacobian = input_jacobian(layer, x).reshape(6, 6)
    np.testing.assert_array_equal(jacobian, np.eye(6))


def test_losses_match_numpy_and_reach_only_their_side():
    beta = 0.3
    layer = _layer(num_embeddings=8, embedding_dim=3, commitment_cost=beta)
    x_np = np.random.default_rng(4).normal(size=(5, 3)).astype("float32")
    codebook = to_numpy(layer.codebook)
    e = codebook[_numpy_nearest(x_np, codebook)]
    assert [v.path for v in layer.trainable_variables] == [layer.codebook.path]
    (codebook_loss, codebook_loss_of_x, (codebook_loss_of_codebook,)), (
        commitment_loss, commitment_loss_of_x, (commitment_loss_of_codebook,)) = losses_and_gradients(layer, x_np)
    np.testing.assert_allclose(codebook_loss, ((x_np - e) ** 2).mean(), rtol=1e-6)
    np.testing.assert_allclose(commitment_loss, beta * ((x_np - e) ** 2).mean(), rtol=1e-6)

    # Codebook loss |sg[z_e] - e|^2: a gradient on the codebook only.
    assert not codebook_loss_of_x.any()
    expected = np.zeros_like(codebook)
    np.add.at(expected, _numpy_nearest(x_np, codebook), 2 * (e - x_np) / x_np.size)
    np.testing.assert_allclose(codebook_loss_of_codebook, expected, atol=1e-6)

    # Commitment loss beta |z_e - sg[e]|^2: a gradient on the encoder side only.
    assert not commitment_loss_of_codebook.any()
    np.testing.assert_allclose(commitment_loss_of_x, beta * 2 * (x_np - e) / x_np.size, atol=1e-6)


def test_perplexity_matches_numpy():
    layer = _layer(num_embeddings=4)
    codes = np.array([0, 0, 1, 2, 2, 2, 3, 3])
    p = np.bincount(codes, minlength=4) / codes.size
    np.testing.assert_allclose(to_numpy(layer.perplexity(codes)), np.exp(-(p * np.log(p)).sum()), rtol=1e-5)
    np.testing.assert_allclose(to_numpy(layer.perplexity(np.arange(4))), 4.0, rtol=1e-5)


def test_distances_stay_float32_under_mixed_precision():
    x = np.random.default_rng(5).normal(size=(4, 6, 6, 8)).astype("float32")
    reference = _layer(num_embeddings=64, embedding_dim=8)
    mixed = _layer(num_embeddings=64, embedding_dim=8, dtype="mixed_float16")
    assert mixed.codebook.dtype == "float32"
    outputs, codes = mixed(x, return_codes=True)
    assert keras.backend.standardize_dtype(outputs.dtype) == "float16"
    np.testing.assert_array_equal(to_numpy(codes), to_numpy(reference.encode(x)))
    np.testing.assert_array_equal(to_numpy(codes), _numpy_nearest(x, to_numpy(mixed.codebook)))


def test_wrong_last_axis_is_a_clear_error():
    layer = VectorQuantizer(num_embeddings=16, embedding_dim=64)
    with pytest.raises(ValueError) as error:
        layer(np.zeros((1, 8, 8, 32), "float32"))
    assert str(error.value) == (
        "VectorQuantizer expects the last input axis to equal embedding_dim=64. "
        "Received: input_shape=(1, 8, 8, 32)"
    )


def test_integer_inputs_are_a_clear_error():
    layer = VectorQuantizer(num_embeddings=16, embedding_dim=4)
    with pytest.raises(TypeError, match=r"VectorQuantizer expects floating-point inputs .* Received: dtype=int32"):
        layer(np.zeros((2, 4), "int32"))
    assert not layer.built


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_embeddings=0, embedding_dim=4), "num_embeddings to be a positive integer. Received: num_embeddings=0"),
        (dict(num_embeddings=8, embedding_dim=2.5), "embedding_dim to be a positive integer. Received: embedding_dim=2.5"),
        (
            dict(num_embeddings=8, embedding_dim=4, commitment_cost=-1),
            r"commitment_cost \(beta\) in \[0, inf\). Received: commitment_cost \(beta\)=-1",
        ),
    ],
)
def test_bad_arguments_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VectorQuantizer(**kwargs)


def test_the_layer_harness(tmp_path):
    run_layer_test(
        VectorQuantizer, dict(num_embeddings=8, embedding_dim=4, commitment_cost=0.5), (2, 3, 3, 4),
        expected_output_shape=(2, 3, 3, 4), expected_num_trainable_weights=1,  # the codebook
        expected_num_non_trainable_weights=0, jit_compile=True, tmp_path=tmp_path,
    )


def test_keras_file_round_trip_inside_a_model(tmp_path):
    inputs = keras.Input((4, 4, 8))
    model = keras.Model(inputs, VectorQuantizer(16, 8)(keras.layers.Conv2D(8, 1)(inputs)))
    x = np.random.default_rng(7).normal(size=(2, 4, 4, 8)).astype("float32")
    model.save(tmp_path / "vq.keras")
    reloaded = keras.saving.load_model(tmp_path / "vq.keras")
    assert isinstance(reloaded.layers[-1], VectorQuantizer)
    np.testing.assert_array_equal(to_numpy(reloaded(x)), to_numpy(model(x)))
