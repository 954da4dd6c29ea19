import keras
import numpy as np
import pytest

from tests.backend import input_jacobian, tensorflow_only, to_numpy, training_call
from tests.layer_harness import run_layer_test
from vq_keras.layers import ResidualVectorQuantizer, VectorQuantizerEMA

pytestmark = pytest.mark.backends  # the same checks on every backend (tests/backend.py)
RESTARTS_ON_TF = tensorflow_only("dead-code restarts draw from TensorFlow's stateless RNG (the JAX port: issue #25)")


def _layer(num_quantizers=3, num_embeddings=8, embedding_dim=4, **kwargs):
    layer = ResidualVectorQuantizer(num_quantizers, num_embeddings, embedding_dim, **kwargs)
    layer.build((None, embedding_dim))
    rng = np.random.default_rng(0)
    for i, stage in enumerate(layer.stages):  # each stage finer than the one before
        stage.codebook.assign(rng.normal(size=(num_embeddings, embedding_dim)).astype("float32") / 2**i)
    return layer


def _numpy_rvq(x, codebooks):
    residual = x.reshape(-1, x.shape[-1]).astype(np.float64)
    total, codes = np.zeros_like(residual), []
    for codebook in codebooks:
        k = ((residual[:, None] - codebook[None]) ** 2).sum(-1).argmin(1)
        residual = residual - codebook[k]
        total += codebook[k]
        codes.append(k)
    return total.reshape(x.shape), np.stack(codes, -1).reshape((*x.shape[:-1], len(codebooks)))


def test_each_stage_quantizes_the_residual_of_the_one_before_as_numpy():
    layer = _layer(commitment_cost=0.5)
    assert all(isinstance(stage, VectorQuantizerEMA) for stage in layer.stages)
    x = np.random.default_rng(1).normal(size=(2, 5, 5, 4)).astype("float32")
    codebooks = [to_numpy(stage.codebook) for stage in layer.stages]
    expected, codes = _numpy_rvq(x, codebooks)
    outputs, got = layer(x, return_codes=True)
    assert keras.backend.standardize_dtype(got.dtype) == "int32" and got.shape == (2, 5, 5, 3) and layer.code_depth == 3
    np.testing.assert_array_equal(to_numpy(got), codes)
    np.testing.assert_allclose(to_numpy(outputs), expected, atol=1e-5)
    np.testing.assert_array_equal(to_numpy(layer.encode(x)), codes)
    np.testing.assert_allclose(to_numpy(layer.lookup(got)), expected, atol=1e-5)
    # One commitment loss per stage, on that stage's residual.
    residual, losses = x.reshape(-1, 4).astype(np.float64), []
    for codebook, k in zip(codebooks, codes.reshape(-1, 3).T):
        losses.append(0.5 * ((residual - codebook[k]) ** 2).mean())
        residual = residual - codebook[k]
    np.testing.assert_allclose([float(v) for v in layer.losses], losses, rtol=1e-5)
    # More stages, smaller error: the point of the cascade.
    errors = [np.abs(x - _numpy_rvq(x, codebooks[:n])[0]).mean() for n in (1, 2, 3)]
    assert errors[0] > errors[1] > errors[2]


@RESTARTS_ON_TF
def test_gradient_is_straight_through_and_every_stage_updates_its_own_ema_codebook():
    layer = _layer(num_quantizers=2, dead_code_threshold=0.5, usage_decay=0.0)
    x = np.random.default_rng(2).normal(size=(16, 4)).astype("float32")
    before = [to_numpy(stage.codebook) for stage in layer.stages]
    np.testing.assert_array_equal(input_jacobian(lambda x: keras.ops.sum(layer(x)), x), np.ones((16, 4)))
    training_call(layer)(x)
    for stage, old in zip(layer.stages, before):
        assert to_numpy(stage.ema_steps) == 1 and not np.allclose(to_numpy(stage.codebook), old)
        assert to_numpy(stage.training_calls) == 1  # restarts per stage
    assert layer.stages[0].seed == 0 and layer.stages[1].seed == 1


def test_lookup_needs_the_stage_axis_and_codes_in_range():
    layer = _layer()
    with pytest.raises(ValueError, match=r"ResidualVectorQuantizer expects codes with a last axis of "
                                         r"num_quantizers=3 \(one code per stage\) in lookup\(\). "
                                         r"Received: shape=\(2, 2\)"):
        layer.lookup(np.zeros((2, 2), "int32"))
    with pytest.raises(ValueError, match=r"expects codes in \[0, num_embeddings=8\)"):
        layer.lookup(np.full((1, 3), 8, "int32"))


@pytest.mark.parametrize(
    "args, message",
    [
        ((0, 8, 4), r"ResidualVectorQuantizer expects num_quantizers to be a positive integer. "
                    r"Received: num_quantizers=0"),
        ((2, 0, 4), r"VectorQuantizerEMA expects num_embeddings to be a positive integer. Received: num_embeddings=0"),
        ((2, 8, 4, 0.25, 1.5), r"decay \(gamma\) in \[0, 1\). Received: decay \(gamma\)=1.5"),
    ],
)
def test_bad_arguments_are_clear_errors(args, message):
    with pytest.raises(ValueError, match=message):
        ResidualVectorQuantizer(*args)


def test_the_layer_harness(tmp_path):
    run_layer_test(
        ResidualVectorQuantizer, dict(num_quantizers=2, num_embeddings=8, embedding_dim=4, decay=0.9), (2, 3, 3, 4),
        expected_output_shape=(2, 3, 3, 4), expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=8,  # per stage: codebook, EMA cluster size, sum and steps
        jit_compile=True, tmp_path=tmp_path,
    )


@RESTARTS_ON_TF
def test_the_trained_state_survives_a_keras_file(tmp_path):
    layer = ResidualVectorQuantizer(2, 8, 4, decay=0.9, dead_code_threshold=0.1, codebook_init="kmeans++", seed=3)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, layer(inputs))
    x = np.random.default_rng(3).normal(size=(32, 4)).astype("float32")
    layer(x, training=True)
    model.save(tmp_path / "rvq.keras")
    reloaded = keras.saving.load_model(tmp_path / "rvq.keras").layers[-1]
    np.testing.assert_array_equal(to_numpy(reloaded.encode(x)), to_numpy(layer.encode(x)))
    for one, other in zip(layer.weights, reloaded.weights):
        np.testing.assert_array_equal(to_numpy(one), to_numpy(other))
