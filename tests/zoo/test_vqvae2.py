import numpy as np
import pytest
from keras import ops
import keras

from vq_keras.layers import VectorQuantizer, VectorQuantizerEMA
from tests.zoo.conftest import train_on_real_images
from vq_keras.zoo import VQVAE2
from tests.presets import SMALL_AUTOENCODER as TINY
from tests.backend import gradients, to_numpy

pytestmark = pytest.mark.backends


def _images(n=2, size=32, channels=3, seed=0):
    return np.random.default_rng(seed).random((n, size, size, channels)).astype("float32")


def test_presets():
    architectures = [name for name, kind in VQVAE2.presets().items() if kind.startswith("architecture")]
    assert architectures == ["cifar10", "ffhq1024", "imagenet256"]
    with pytest.raises(ValueError, match="Unknown VQVAE2 preset 'celeba'. Architecture presets: cifar10, ffhq1024, imagenet256; trained: vqvae2_cifar10;"):
        VQVAE2.from_preset("celeba")


@pytest.mark.parametrize(
    "preset, image_size, grids",
    [
        ("cifar10", 32, [(4, 4), (8, 8)]),
        ("imagenet256", 256, [(32, 32), (64, 64)]),  # the paper's ImageNet grids
        ("ffhq1024", 1024, [(32, 32), (64, 64), (128, 128)]),  # the paper's FFHQ grids
    ],
)
def test_preset_code_grids_from_shapes_alone(preset, image_size, grids):
    model = VQVAE2.from_preset(preset)  # builds weights only, touches no data
    assert model.built
    assert model.code_shapes((image_size, image_size)) == grids
    assert [tuple(q.codebook.shape) for q in model.quantizers] == [(512, 64)] * len(grids)
    assert all(isinstance(q, VectorQuantizerEMA) for q in model.quantizers)


def test_imagenet256_preset_is_the_papers():
    config = VQVAE2.from_preset("imagenet256").get_config()
    assert (config["num_hiddens"], config["num_residual_hiddens"], config["num_embeddings"], config["embedding_dim"]) == (
        128, 64, 512, 64,
    )


def test_cifar10_encode_shapes_and_decode_round_trip():
    model = VQVAE2.from_preset("cifar10")
    x = _images()
    top, bottom = model.encode(x)
    assert [keras.backend.standardize_dtype(level.dtype) for level in (top, bottom)] == ["int32", "int32"]
    assert tuple(top.shape) == (2, 4, 4) and tuple(bottom.shape) == (2, 8, 8)
    np.testing.assert_allclose(to_numpy(model.decode([top, bottom])), to_numpy(model.reconstruct(x)), atol=1e-6)


@pytest.mark.parametrize("num_levels", [2, 3])
def test_encode_runs_on_tiny_inputs(num_levels):
    model = VQVAE2(num_levels=num_levels, **TINY)
    codes = model.encode(_images(size=32))
    expected = [(2, 32 // 2 ** (num_levels + 1 - i), 32 // 2 ** (num_levels + 1 - i)) for i in range(num_levels)]
    assert [tuple(c.shape) for c in codes] == expected
    assert [tuple(c.shape[1:]) for c in codes] == model.code_shapes((32, 32))
    np.testing.assert_allclose(to_numpy(model.decode(codes)), to_numpy(model.reconstruct(_images())), atol=1e-6)


def test_lower_level_depends_on_the_level_above():
    model = VQVAE2(quantizer="vq", **TINY)
    x = ops.convert_to_tensor(_images())
    model._quantize(x)  # built
    variables = model.conditioners[0].trainable_weights
    top_in_bottom = gradients(lambda: ops.sum(model._quantize(x)[0][1]), variables)
    assert all(np.abs(g).sum() > 0 for g in top_in_bottom)


def test_gradients_reach_every_level_and_the_decoder():
    model = VQVAE2(quantizer="vq", data_variance=0.06, **TINY)
    model.build((None, 32, 32, 3))
    x = ops.convert_to_tensor(_images())

    def reconstruction_loss():
        return ops.mean(ops.square(model(x, training=True) - x))

    grads = gradients(reconstruction_loss, model.trainable_weights, with_losses_of=model)
    missing = [w.path for w, g in zip(model.trainable_weights, grads) if not np.any(g)]
    assert missing == []
    paths = " ".join(w.path for w in model.trainable_weights)
    for part in ("encoder_top", "encoder_bottom", "quantizer_top", "quantizer_bottom", "conditioner_bottom", "decoder"):
        assert f"/{part}/" in paths, part
    assert all(isinstance(q, VectorQuantizer) for q in model.quantizers)


@pytest.mark.large
def test_per_level_metrics():
    model = VQVAE2(num_levels=3, **TINY)
    model.compile()
    logs = model.train_on_batch(_images(size=32), return_dict=True)
    assert set(logs) == {
        "loss", "reconstruction_loss", "vq_loss",
        "top_perplexity", "top_codebook_usage", "middle_perplexity", "middle_codebook_usage",
        "bottom_perplexity", "bottom_codebook_usage",
        *(f"{level}_epoch_{name}" for level in ("top", "middle", "bottom")
          for name in ("codebook_usage", "dead_codes")),
    }
    assert all(np.isfinite(v) for v in logs.values())


@pytest.mark.large
def test_keras_file_round_trip(tmp_path):
    model = VQVAE2(data_variance=0.06, **TINY)
    model.build((None, 32, 32, 3))
    model.compile()
    x = _images(4)
    model.fit(x, epochs=1, batch_size=4, verbose=0)
    model.save(tmp_path / "vqvae2.keras")
    reloaded = keras.saving.load_model(tmp_path / "vqvae2.keras")
    assert reloaded.get_config() == model.get_config()
    for ours, theirs in zip(model.encode(x), reloaded.encode(x)):
        np.testing.assert_array_equal(to_numpy(ours), to_numpy(theirs))
    np.testing.assert_array_equal(to_numpy(reloaded.reconstruct(x)), to_numpy(model.reconstruct(x)))


def test_sizes_it_cannot_take_are_clear_errors():
    model = VQVAE2(**TINY)
    with pytest.raises(ValueError) as error:
        model.encode(_images(1, size=36))
    assert str(error.value) == (
        "VQVAE2 downsamples images by 8, so height and width must be positive multiples of 8 "
        "(e.g. 56, 64, 128). Received: image size 36x36. Crop or resize the images."
    )
    with pytest.raises(ValueError, match="multiples of 32"):
        VQVAE2.from_preset("ffhq1024").code_shapes((1000, 1000))


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="VQVAE2 expects num_levels >= 2. Received: num_levels=1. For a single code grid use VQVAE."):
        VQVAE2(num_levels=1)
    with pytest.raises(ValueError, match=r"VQVAE2 expects 2 code grid\(s\), top first. Received: 1"):
        VQVAE2(**TINY).decode([np.zeros((1, 4, 4), "int32")])


@pytest.mark.large
def test_a_few_hundred_steps_on_real_images_lower_the_loss():
    before, after = train_on_real_images(VQVAE2, steps=200)
    assert after["reconstruction_loss"] < 0.5 * before["reconstruction_loss"], (before, after)


def test_codes_out_of_range_name_the_level():
    model = VQVAE2(**TINY)
    top, bottom = np.zeros((1, 4, 4), "int32"), np.full((1, 8, 8), 32, "int32")
    with pytest.raises(ValueError, match=r"VQVAE2 expects codes for level 'bottom' in \[0, 32\)"):
        model.decode([top, bottom])


def test_the_layer_harness(tmp_path):
    from tests.layer_harness import run_layer_test

    run_layer_test(
        VQVAE2, dict(TINY), (2, 32, 32, 3), expected_output_shape=(2, 32, 32, 3), input_range=(0, 1),
        expected_num_non_trainable_weights=8,  # each level's EMA codebook state
        jit_compile=True, tmp_path=tmp_path,
    )
