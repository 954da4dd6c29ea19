import numpy as np
import tensorflow as tf
import pytest
import keras

from vq_keras.layers import VectorQuantizer, VectorQuantizerEMA
from tests.zoo.conftest import train_on_real_images
from vq_keras.zoo import VQVAE
from tests.backend import BACKEND, tensorflow_only, to_numpy

pytestmark = pytest.mark.backends

TINY = dict(num_hiddens=16, num_residual_hiddens=8, num_residual_layers=1, embedding_dim=8, num_embeddings=64)


def _images(n=4, size=32, channels=3, seed=0):
    return np.random.default_rng(seed).random((n, size, size, channels)).astype("float32")


def test_cifar10_preset_is_the_papers_architecture():
    assert VQVAE.presets()["cifar10"] == "architecture (random weights)"
    model = VQVAE.from_preset("cifar10")
    config = model.get_config()
    assert {k: config[k] for k in VQVAE.PRESETS["cifar10"]} == dict(
        num_hiddens=128, num_residual_hiddens=32, num_residual_layers=2, embedding_dim=64,
        num_embeddings=512, commitment_cost=0.25, quantizer="ema", decay=0.99, num_channels=3,
    )
    assert isinstance(model.quantizer, VectorQuantizerEMA)
    assert tuple(model.quantizer.codebook.shape) == (512, 64)
    assert model.built
    codes = model.encode(_images(2))
    assert keras.backend.standardize_dtype(codes.dtype) == "int32" and tuple(codes.shape) == (2, 8, 8)


def test_unknown_preset_is_a_clear_error():
    with pytest.raises(ValueError, match=r"Unknown VQVAE preset 'imagenet'. Architecture presets: cifar10; trained: vqvae_cifar10"):
        VQVAE.from_preset("imagenet")


def test_quantizer_choice():
    assert isinstance(VQVAE(quantizer="vq", **TINY).quantizer, VectorQuantizer)
    with pytest.raises(ValueError, match=r"quantizer must be one of \('ema', 'vq', 'fsq', 'rvq'\) or a quantizer layer. Received: quantizer='kmeans'"):
        VQVAE(quantizer="kmeans", **TINY)


def test_encode_decode_reconstruct_agree():
    model = VQVAE(**TINY)
    x = _images()
    codes = model.encode(x)
    assert keras.backend.standardize_dtype(codes.dtype) == "int32" and tuple(codes.shape) == (4, 8, 8)
    assert to_numpy(codes).min() >= 0 and to_numpy(codes).max() < 64
    decoded = to_numpy(model.decode(codes))
    assert decoded.shape == x.shape and decoded.min() >= 0 and decoded.max() <= 1
    np.testing.assert_allclose(decoded, to_numpy(model.reconstruct(x)), atol=1e-6)


def test_other_sizes_and_grayscale():
    model = VQVAE(num_channels=1, **TINY)
    x = _images(2, size=28, channels=1)
    assert tuple(model.encode(x).shape) == (2, 7, 7)
    assert model.reconstruct(x).shape == x.shape


def test_keras_file_round_trip_gives_identical_outputs(tmp_path):
    model = VQVAE(data_variance=0.06, **TINY)
    model.build((None, 32, 32, 3))
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    x = _images()
    model.fit(x, epochs=1, batch_size=4, verbose=0)
    model.save(tmp_path / "vqvae.keras")
    reloaded = keras.saving.load_model(tmp_path / "vqvae.keras")
    assert reloaded.get_config() == model.get_config()
    np.testing.assert_array_equal(to_numpy(reloaded.encode(x)), to_numpy(model.encode(x)))
    np.testing.assert_array_equal(to_numpy(reloaded.reconstruct(x)), to_numpy(model.reconstruct(x)))
    for saved, loaded in zip(model.quantizer.weights, reloaded.quantizer.weights):
        np.testing.assert_array_equal(to_numpy(saved), to_numpy(loaded))
    assert to_numpy(reloaded.optimizer.iterations) == 1


def test_image_size_it_cannot_take_is_a_clear_error():
    model = VQVAE(**TINY)
    with pytest.raises(ValueError) as error:
        model.encode(_images(1, size=30))
    assert str(error.value) == (
        "VQVAE downsamples images by 4, so height and width must be positive multiples of 4 "
        "(e.g. 28, 32, 64). Received: image size 30x30. Crop or resize the images."
    )


def test_wrong_channels_and_dtype_are_clear_errors():
    model = VQVAE(**TINY)
    with pytest.raises(ValueError, match=r"VQVAE was built for 3-channel images but received 1-channel images"):
        model.reconstruct(_images(1, channels=1))
    with pytest.raises(TypeError, match=r"VQVAE expects float32 images scaled to \[0, 1\]. Received: dtype=uint8"):
        model.encode(np.zeros((1, 32, 32, 3), "uint8"))


@pytest.mark.large
def test_a_few_hundred_steps_on_real_images_lower_the_loss():
    before, after = train_on_real_images(VQVAE, steps=300)
    assert after["reconstruction_loss"] < 0.5 * before["reconstruction_loss"], (before, after)
    assert after["perplexity"] > 4, after


def test_codes_out_of_range_are_clear_errors_not_wrapped_lookups():
    model = VQVAE(**TINY)
    codes = np.zeros((1, 8, 8), "int32")
    codes[0, 3, 3] = -1
    with pytest.raises(ValueError, match=r"VQVAE expects codes in \[0, 64\) \(num_embeddings\). Received: codes from -1 to 0"):
        model.decode(codes)
    codes[0, 3, 3] = 64
    with pytest.raises(ValueError, match="Received: codes from 0 to 64"):
        model.decode(codes)
    with pytest.raises(TypeError, match="VQVAE expects integer codes. Received: dtype=float32"):
        model.decode(codes.astype("float32"))


@tensorflow_only("in-graph assertions (a JAX trace has none; XLA drops them)")
def test_codes_out_of_range_in_a_graph_fail_in_the_range_check_before_the_lookup():
    model = VQVAE(**TINY)
    decode = tf.function(model.decode)
    codes = np.zeros((1, 8, 8), "int32")
    codes[0, 3, 3] = 64
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"VQVAE expects codes in \[0, 64\)"):
        decode(codes)
    # Not a race the range check happens to win: the codebook gather waits for both assertions.
    graph = decode.get_concrete_function(tf.TensorSpec((None, 8, 8), tf.int32)).graph
    gathers = [op for op in graph.get_operations() if op.type in ("GatherV2", "ResourceGather")]
    assert gathers
    for gather in gathers:
        ancestors, frontier = set(), [gather]
        while frontier:
            op = frontier.pop()
            for parent in [tensor.op for tensor in op.inputs] + list(op.control_inputs):
                if parent.name not in ancestors:
                    ancestors.add(parent.name)
                    frontier.append(parent)
        assert any(name.startswith("assert_non_negative") for name in ancestors), sorted(ancestors)
        assert any(name.startswith("assert_less") for name in ancestors), sorted(ancestors)


@pytest.mark.skipif(
    BACKEND == "torch",
    reason="Keras' PyTorch truncated_normal keeps an untruncated draw where 4 draws in a row fall beyond 2 "
    "stddevs (p = 4e-6 a weight, a few weights of the model)",
)
def test_conv_weights_start_as_sonnet_starts_them():
    # Sonnet 2: truncated normal (cut at 2 stddevs) with stddev 1/sqrt(kernel h * w * input channels)
    # before truncation, whose actual std is 0.8796 / sqrt(fan_in). Transposed kernels are (h, w, out, in).
    keras.utils.set_random_seed(0)
    model = VQVAE.from_preset("cifar10")
    model.reconstruct(np.zeros((1, 32, 32, 3), "float32"))
    kernels = [(w.path, to_numpy(w)) for w in model.weights if len(w.shape) == 4]
    assert len(kernels) == 15
    for path, kernel in kernels:
        height, width, _, _ = kernel.shape
        input_channels = kernel.shape[3] if path.split("/")[-2].startswith("up") else kernel.shape[2]
        stddev = 1.0 / np.sqrt(height * width * input_channels)
        assert np.abs(kernel).max() <= 2 * stddev, path
        assert abs(kernel.std() / (0.8796 * stddev) - 1) < 0.08, (path, kernel.std(), stddev)


def test_the_layer_harness(tmp_path):
    from tests.layer_harness import run_layer_test

    run_layer_test(
        VQVAE, dict(TINY), (2, 16, 16, 3), expected_output_shape=(2, 16, 16, 3), input_range=(0, 1),
        expected_num_trainable_weights=22, expected_num_non_trainable_weights=4,  # the EMA codebook's state
        jit_compile=True, tmp_path=tmp_path,
    )
