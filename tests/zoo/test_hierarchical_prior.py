import numpy as np
import pytest
import keras

from tests.backend import to_numpy

from vq_keras.zoo import VQVAE, VQVAE2, HierarchicalPrior, PixelCNNPrior, generate

pytestmark = pytest.mark.backends

TINY_AUTOENCODER = dict(num_hiddens=16, num_residual_hiddens=8, num_residual_layers=1, embedding_dim=8)
TINY_PRIOR = dict(num_layers=2, num_filters=8, kernel_size=3, num_heads=2)


def _vqvae2(num_levels=2, num_embeddings=16):
    return VQVAE2(num_levels=num_levels, num_embeddings=num_embeddings, **TINY_AUTOENCODER)


def _codes(n, height, width, limit, seed=0):
    return np.random.default_rng(seed).integers(0, limit, size=(n, height, width)).astype("int32")


def test_from_autoencoder_builds_one_prior_per_level():
    prior = HierarchicalPrior.from_autoencoder(_vqvae2(num_levels=3), num_attention_layers=1, **TINY_PRIOR)
    assert [p.name for p in prior.priors] == ["top_prior", "middle_prior", "bottom_prior"]
    assert [len(p.attention_layers) for p in prior.priors] == [1, 0, 0]
    assert [p.condition_num_embeddings for p in prior.priors] == [None, 16, 16]
    assert [p.condition_upsampling for p in prior.priors] == [1, 2, 2]
    assert prior.downsampling == 16
    assert prior.grid_shapes(image_size=(32, 48)) == [(2, 3), (4, 6), (8, 12)]


def test_sample_all_levels_top_down():
    vqvae2 = _vqvae2()
    prior = HierarchicalPrior.from_autoencoder(vqvae2, num_attention_layers=1, **TINY_PRIOR)
    top, bottom = prior.sample(3, seed=1, image_size=(32, 32))
    assert [tuple(c.shape) for c in (top, bottom)] == [(3, 4, 4), (3, 8, 8)]
    assert [tuple(s) for s in vqvae2.code_shapes((32, 32))] == [(4, 4), (8, 8)]
    for codes in (top, bottom):
        assert keras.backend.standardize_dtype(codes.dtype) == "int32"
        assert to_numpy(codes).min() >= 0 and to_numpy(codes).max() < 16
    again = prior.sample(3, seed=1, image_size=(32, 32))
    for first, second in zip((top, bottom), again):
        np.testing.assert_array_equal(to_numpy(first), to_numpy(second))
    other = prior.sample(3, seed=2, image_size=(32, 32))
    assert any(np.any(to_numpy(a) != to_numpy(b)) for a, b in zip((top, bottom), other))
    # The bottom level is drawn from the bottom prior given the sampled top codes
    # with the key (seed, 1).
    np.testing.assert_array_equal(
        to_numpy(prior.priors[1].sample(3, condition=top, seed=(1, 1))), to_numpy(bottom)
    )
    # The top grid can also be given directly.
    top_only = prior.sample(2, seed=1, grid_shape=(2, 3))
    assert [tuple(c.shape) for c in top_only] == [(2, 2, 3), (2, 4, 6)]


def test_teacher_forced_call_returns_logits_per_level():
    top_prior = PixelCNNPrior(6, num_classes=2, **TINY_PRIOR)
    bottom_prior = PixelCNNPrior(9, num_classes=2, condition_num_embeddings=6, condition_upsampling=2, **TINY_PRIOR)
    prior = HierarchicalPrior([top_prior, bottom_prior])
    top, bottom = _codes(2, 2, 2, 6), _codes(2, 4, 4, 9)
    labels = np.array([0, 1])
    top_logits, bottom_logits = prior([top, bottom], labels=labels)
    assert tuple(top_logits.shape) == (2, 2, 2, 6) and tuple(bottom_logits.shape) == (2, 4, 4, 9)
    np.testing.assert_allclose(
        to_numpy(bottom_logits), to_numpy(prior.priors[1](bottom, labels=labels, condition=top)), rtol=1e-6
    )
    codes = prior.sample(2, labels=1, seed=0, grid_shape=(2, 2))
    assert [tuple(c.shape) for c in codes] == [(2, 2, 2), (2, 4, 4)]


def test_generate_decodes_all_levels_of_a_vqvae2():
    vqvae2 = _vqvae2()
    prior = HierarchicalPrior.from_autoencoder(vqvae2, num_attention_layers=1, **TINY_PRIOR)
    images = generate(vqvae2, prior, num=2, seed=4, image_size=(32, 32))
    assert keras.backend.standardize_dtype(images.dtype) == "float32" and tuple(images.shape) == (2, 32, 32, 3)
    assert to_numpy(images).min() >= 0.0 and to_numpy(images).max() <= 1.0
    codes = prior.sample(2, seed=4, image_size=(32, 32))
    np.testing.assert_allclose(to_numpy(images), to_numpy(vqvae2.decode(codes)), atol=1e-6)
    _, returned = generate(vqvae2, prior, num=2, seed=4, image_size=(32, 32), return_codes=True)
    for level, expected in zip(returned, codes, strict=True):
        np.testing.assert_array_equal(to_numpy(level), to_numpy(expected))
    vqvae = VQVAE(num_embeddings=16, **TINY_AUTOENCODER)
    with pytest.raises(ValueError) as error:
        generate(vqvae, prior, num=1, image_size=(32, 32))
    assert str(error.value) == (
        "generate: VQVAE has 1 code level(s) but the prior models 2. Use a PixelCNNPrior for this autoencoder."
    )


@pytest.mark.large
def test_keras_file_round_trip_gives_identical_logits_and_samples(tmp_path):
    prior = HierarchicalPrior.from_autoencoder(_vqvae2(), num_attention_layers=1, **TINY_PRIOR)
    prior.build_if_needed()
    top, bottom = _codes(2, 2, 2, 16), _codes(2, 4, 4, 16, seed=1)
    clone = HierarchicalPrior.from_config(prior.get_config())
    assert clone.get_config() == prior.get_config()
    prior.save(tmp_path / "hierarchical.keras")
    reloaded = keras.saving.load_model(tmp_path / "hierarchical.keras")
    assert isinstance(reloaded, HierarchicalPrior) and reloaded.get_config() == prior.get_config()
    for saved, loaded in zip(prior([top, bottom]), reloaded([top, bottom])):
        np.testing.assert_array_equal(to_numpy(saved), to_numpy(loaded))
    samples = prior.sample(2, seed=3, grid_shape=(2, 2))
    for saved, loaded in zip(samples, reloaded.sample(2, seed=3, grid_shape=(2, 2))):
        np.testing.assert_array_equal(to_numpy(saved), to_numpy(loaded))


def test_a_prior_assembled_from_trained_levels_saves_their_weights(tmp_path):
    levels = HierarchicalPrior.from_autoencoder(_vqvae2(), num_attention_layers=1, **TINY_PRIOR).priors
    for level in levels:  # as stage 2 does: each level built (and trained) on its own
        level.build_if_needed()
    HierarchicalPrior(levels, downsampling=4).save(tmp_path / "assembled.keras")
    reloaded = keras.saving.load_model(tmp_path / "assembled.keras")
    expected = [to_numpy(w) for level in levels for w in level.weights]
    assert len(reloaded.weights) == len(expected) > 0
    for weight, value in zip(reloaded.weights, expected):
        np.testing.assert_array_equal(to_numpy(weight), value)


def test_bad_arguments_are_clear_errors():
    top = PixelCNNPrior(16, **TINY_PRIOR)
    with pytest.raises(ValueError) as error:
        HierarchicalPrior([top])
    assert str(error.value).startswith("HierarchicalPrior expects a list of at least two priors, top first.")
    with pytest.raises(ValueError) as error:
        HierarchicalPrior([top, PixelCNNPrior(16, condition_num_embeddings=8, condition_upsampling=2, **TINY_PRIOR)])
    assert str(error.value) == (
        "HierarchicalPrior expects each lower prior to be conditioned on the codes of the level above: "
        "priors[1].condition_num_embeddings must equal priors[0].num_embeddings=16. "
        "Received: condition_num_embeddings=8"
    )
    conditioned = PixelCNNPrior(16, condition_num_embeddings=16, **TINY_PRIOR)
    with pytest.raises(ValueError, match=r"expects the top prior \(priors\[0\]\) to be unconditioned on codes"):
        HierarchicalPrior([conditioned, conditioned])
    expected = (
        r"HierarchicalPrior expects priors \(vq_keras.models.Prior instances, e.g. PixelCNNPrior\). "
        r"Received: priors\[1\] of type Dense"
    )
    with pytest.raises(TypeError, match=expected):
        HierarchicalPrior([top, keras.layers.Dense(3)])
    with pytest.raises(ValueError) as error:
        HierarchicalPrior.from_autoencoder(VQVAE(num_embeddings=16, **TINY_AUTOENCODER))
    assert str(error.value) == (
        "HierarchicalPrior.from_autoencoder expects an autoencoder with several code levels (a VQVAE2). "
        "Received: VQVAE with 1 level(s). For a VQVAE use one prior (e.g. PixelCNNPrior)."
    )
    prior = HierarchicalPrior([top, conditioned])
    with pytest.raises(ValueError) as error:
        prior.sample(1, image_size=(32, 32))
    assert str(error.value) == (
        "HierarchicalPrior needs downsampling (image size / top grid size) to find the grids for an "
        "image_size. Received: downsampling=None. Pass grid_shape=(h, w) for the top grid, or build it "
        "with downsampling=... (from_autoencoder sets it)."
    )
    with pytest.raises(ValueError) as error:
        prior(_codes(1, 2, 2, 16))
    assert str(error.value) == "HierarchicalPrior expects a list of 2 code grids, top first. Received: ndarray"
