"""VQVAE and VQVAE2 pick their quantizer by name (the registry) or take a layer: each new
quantizer trains inside them, decode(encode(x)) equals reconstruct(x), a .keras reload
and a SavedModel export give the same outputs; priors refuse residual codes."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from vq_keras.export import export_saved_model
from vq_keras.layers import FiniteScalarQuantizer, ResidualVectorQuantizer, VectorQuantizer, VectorQuantizerEMA
from vq_keras.zoo import VQVAE, VQVAE2, HierarchicalPrior, PixelCNNPrior, generate
from tests.backend import BACKEND, to_numpy
from tests.presets import TINY_AUTOENCODER as TINY


def _images(n=8, size=8):
    return np.random.default_rng(0).uniform(size=(n, size, size, 3)).astype("float32")


QUANTIZERS = {
    "fsq": lambda: FiniteScalarQuantizer((4, 3, 3)),
    "rvq": lambda: ResidualVectorQuantizer(2, 16, 4, dead_code_threshold=0.1),
    "ema_options": lambda: VectorQuantizerEMA(
        16, 4, codebook_dim=2, use_cosine_similarity=True, gradient="rotation", dead_code_threshold=0.1
    ),
}


@pytest.mark.parametrize("kind", sorted(QUANTIZERS))
@pytest.mark.large
@pytest.mark.backends
def test_a_quantizer_layer_trains_in_vqvae_round_trips_and_exports(kind, tmp_path):
    layer = QUANTIZERS[kind]()
    sizes = {name: value for name, value in TINY.items() if name not in ("embedding_dim", "num_embeddings")}
    model = VQVAE.from_preset("cifar10", quantizer=layer, data_variance=0.06, **sizes)  # the layer sets those two
    assert model.quantizer is layer
    assert (model.embedding_dim, model.num_embeddings) == (layer.embedding_dim, layer.num_embeddings)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False)
    images = _images()
    start = [w.copy() for w in model.get_weights()]
    logs = model.fit(images, batch_size=4, epochs=1, verbose=0).history
    assert np.isfinite(logs["loss"]).all()
    assert max(np.abs(a - b).max() for a, b in zip(start, model.get_weights())) > 0
    codes = model.encode(images)
    assert codes.shape == (8, 2, 2, *([layer.code_depth] if layer.code_depth else []))
    reconstruction = to_numpy(model.reconstruct(images))
    np.testing.assert_allclose(to_numpy(model.decode(codes)), reconstruction, atol=1e-6)

    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    assert type(reloaded.quantizer) is type(layer) and reloaded.quantizer.get_config() == layer.get_config()
    np.testing.assert_array_equal(to_numpy(reloaded.encode(images)), to_numpy(codes))
    np.testing.assert_allclose(to_numpy(reloaded.reconstruct(images)), reconstruction, atol=1e-6)

    if BACKEND != "tensorflow":
        return  # SavedModel export is TensorFlow's
    served = tf.saved_model.load(export_saved_model(model, tmp_path / "export", image_size=8))
    outputs = served.signatures["encode"](images=tf.constant(images))
    np.testing.assert_array_equal(to_numpy(outputs["codes"]), to_numpy(codes))
    decoded = to_numpy(served.signatures["decode"](codes=tf.constant(codes))["images"])
    np.testing.assert_allclose(decoded, reconstruction, atol=1e-5)


def test_fsq_by_name_fixes_embedding_dim_and_num_embeddings_from_its_levels():
    model = VQVAE(quantizer="fsq", **TINY)
    assert isinstance(model.quantizer, FiniteScalarQuantizer) and model.quantizer.levels == (8, 5, 5, 5)
    assert (model.embedding_dim, model.num_embeddings) == (4, 1000)
    assert model.pre_quantizers[0].filters == 4
    assert VQVAE.from_config(model.get_config()).get_config() == model.get_config()
    with pytest.raises(ValueError, match=r"quantizer='rvq' \(ResidualVectorQuantizer\) needs num_quantizers"):
        VQVAE(quantizer="rvq", **TINY)
    with pytest.raises(TypeError, match=r"quantizer must be a name \(one of 'ema', 'vq', 'fsq', 'rvq'\) or a "
                                        r"vq_keras quantizer layer .* Received: quantizer=3"):
        VQVAE(quantizer=3, **TINY)


def test_vqvae2_clones_a_quantizer_layer_per_level(tmp_path):
    layer = VectorQuantizer(16, 4, codebook_dim=2, gradient="rotation")
    model = VQVAE2(quantizer=layer, **TINY)
    top, bottom = model.quantizers
    assert top is not layer and bottom is not layer and top is not bottom
    assert (top.name, bottom.name) == ("quantizer_top", "quantizer_bottom")
    for clone in (top, bottom):
        assert {**clone.get_config(), "name": "x"} == {**layer.get_config(), "name": "x"}
    images = _images(4, 8)
    model(images, training=True)  # the codebooks' state moves
    np.testing.assert_allclose(model.decode(model.encode(images)).numpy(), model.reconstruct(images).numpy(), atol=1e-6)
    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(reloaded.reconstruct(images).numpy(), model.reconstruct(images).numpy(), atol=1e-6)


def test_fsq_codes_have_a_prior_and_generate_images():
    model = VQVAE(quantizer=FiniteScalarQuantizer((3, 3, 2)), **TINY)
    model.build_if_needed()
    prior = PixelCNNPrior(num_embeddings=model.num_embeddings, grid_shape=(2, 2), num_layers=1, num_filters=8)
    images = generate(model, prior, num=2, seed=1).numpy()
    assert images.shape == (2, 8, 8, 3)


def test_priors_refuse_residual_codes_with_the_reason():
    vqvae = VQVAE(quantizer=ResidualVectorQuantizer(2, 16, 4), **TINY)
    vqvae.build_if_needed()
    prior = PixelCNNPrior(num_embeddings=16, grid_shape=(2, 2), num_layers=1, num_filters=8)
    message = (r"does not support ResidualVectorQuantizer codes yet: they have 2 codes per position \(one per "
               r"stage\) and the priors model one")
    with pytest.raises(ValueError, match="generate " + message):
        generate(vqvae, prior, num=1)
    vqvae2 = VQVAE2(quantizer=ResidualVectorQuantizer(2, 16, 4), **TINY)
    with pytest.raises(ValueError, match="HierarchicalPrior.from_autoencoder " + message):
        HierarchicalPrior.from_autoencoder(vqvae2, num_layers=1, num_filters=8)


@pytest.mark.parametrize("cls", [VQVAE, VQVAE2])
def test_from_preset_refuses_quantizer_settings_the_chosen_quantizer_would_ignore(cls):
    with pytest.raises(ValueError) as error:
        cls.from_preset("cifar10", quantizer="fsq", num_embeddings=64)
    assert str(error.value) == (
        f"{cls.__name__}.from_preset('cifar10') would ignore num_embeddings=64: quantizer='fsq' "
        "(FiniteScalarQuantizer) does not take it. Drop it, or choose a quantizer that takes it ('ema', 'rvq', 'vq')."
    )
    with pytest.raises(ValueError, match=r"would ignore decay=0.9: quantizer='vq' \(VectorQuantizer\) does not take it"):
        cls.from_preset("cifar10", quantizer="vq", decay=0.9)
    with pytest.raises(ValueError, match=r"would ignore embedding_dim=8: quantizer='fsq' \(FiniteScalarQuantizer\) does "
                                         r"not take it"):  # its levels fix the code dimension
        cls.from_preset("cifar10", quantizer="fsq", embedding_dim=8)
    layer = VectorQuantizer(num_embeddings=32, embedding_dim=64)
    with pytest.raises(ValueError, match=r"would ignore num_embeddings=64: the quantizer layer passed \(VectorQuantizer\) "
                                         r"has its own. Set it on the layer instead.$"):
        cls.from_preset("cifar10", quantizer=layer, num_embeddings=64)
    # what the chosen quantizer takes, and the sizes the networks share, still apply
    assert cls.from_preset("cifar10", quantizer="vq", num_embeddings=64).quantizers[0].num_embeddings == 64
    assert cls.from_preset("cifar10", num_embeddings=64, decay=0.9).quantizers[0].decay == 0.9
