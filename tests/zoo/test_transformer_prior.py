"""TransformerPrior: causal logits, key/value-cached sampling against the full pass, training,
saving, conditioning and its place in the registry and HierarchicalPrior."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.backend import to_numpy

from tests.zoo.conftest import assert_cached_and_full_draw_the_same, cached_logits, prior_inputs, spread
from vq_keras.zoo import PRIORS, VQVAE2, HierarchicalPrior, TransformerPrior

pytestmark = pytest.mark.backends

TINY = dict(num_layers=2, hidden_dim=16, num_heads=4)
CONFIGS = {
    "plain": dict(),
    "labels": dict(num_classes=3),
    "condition": dict(condition_num_embeddings=6, condition_upsampling=2),
    "all": dict(num_classes=3, condition_num_embeddings=6, condition_upsampling=1),
}


def _prior(grid_shape=(4, 6), **config):
    return spread(TransformerPrior(10, grid_shape=grid_shape, **TINY, **config))


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_logits_at_a_position_depend_only_on_the_codes_before_it(config):
    prior = _prior(**config)
    codes, labels, condition = prior_inputs(prior, 2, 4, 6)
    logits = to_numpy(prior(codes, labels=labels, condition=condition)).reshape(2, 24, -1)
    for position in (0, 7, 23):
        changed = np.array(codes).reshape(2, 24)  # a copy: NumPy views of JAX arrays are read-only
        changed[:, position:] = (changed[:, position:] + 1) % 10
        after = to_numpy(prior(changed.reshape(2, 4, 6), labels=labels, condition=condition)).reshape(2, 24, -1)
        np.testing.assert_allclose(after[:, : position + 1], logits[:, : position + 1], atol=1e-5)
        if position < 23:
            assert np.abs(after[:, position + 1] - logits[:, position + 1]).max() > 1e-3


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_cached_logits_equal_the_full_pass_at_every_position(config):
    prior = _prior(**config)
    codes, labels, condition = prior_inputs(prior, 3, 4, 6)
    expected = to_numpy(prior(codes, labels=labels, condition=condition))
    np.testing.assert_allclose(cached_logits(prior, codes, labels, condition), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_cached_and_full_sampling_draw_the_same_codes(config):
    prior = _prior(**config)
    _, labels, condition = prior_inputs(prior, 3, 4, 6)
    cached = assert_cached_and_full_draw_the_same(prior, 3, (4, 6), labels, condition)
    again = prior.sample(3, labels=labels, condition=condition, temperature=3.0, seed=2, grid_shape=(4, 6))
    np.testing.assert_array_equal(to_numpy(again), cached)


def test_the_condition_and_the_labels_change_every_position():
    prior = _prior(**CONFIGS["all"])
    codes, labels, condition = prior_inputs(prior, 2, 4, 6)
    logits = to_numpy(prior(codes, labels=labels, condition=condition))
    other_labels = (labels + 1) % 3
    other_condition = to_numpy(condition).copy()
    other_condition[:, -1, -1] = (other_condition[:, -1, -1] + 1) % 6  # the last condition code: a prefix token
    for changed in (
        to_numpy(prior(codes, labels=other_labels, condition=condition)),
        to_numpy(prior(codes, labels=labels, condition=other_condition)),
    ):
        assert np.abs(changed - logits).max(axis=(0, 3)).min() > 1e-4  # the first position too


def test_smaller_grids_work_and_larger_ones_are_refused():
    prior = _prior()
    _, labels, condition = prior_inputs(prior, 2, 3, 5)
    assert prior.sample(2, seed=0, grid_shape=(3, 5)).shape == (2, 3, 5)
    with pytest.raises(ValueError) as error:
        prior(np.zeros((1, 5, 6), "int32"))
    assert str(error.value) == (
        "TransformerPrior has position embeddings for grids up to grid_shape=(4, 6). Received: a 5x6 code grid. "
        "Build the prior with a larger grid_shape."
    )


@pytest.mark.large
def test_training_lowers_the_loss_on_a_learnable_grid():
    # Each code is the one before it plus one (mod 10), from a random start per grid: predictable but for the first.
    start = np.random.default_rng(0).integers(0, 10, (256, 1))
    codes = ((start + np.arange(16)) % 10).reshape(256, 4, 4).astype("int32")
    prior = TransformerPrior(10, grid_shape=(4, 4), **TINY)
    prior.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = prior.fit(tf.data.Dataset.from_tensor_slices({"codes": codes}).batch(32), epochs=12, verbose=0)
    bits = history.history["bits_per_code"]
    # 12 epochs: the initial weights differ by backend (Keras seeds each its own way), and so the pace.
    assert bits[0] > 2.5 and bits[-1] < 0.6, bits  # log2(10) = 3.3 at the start; log2(10) / 16 = 0.21 at best
    greedy = to_numpy(prior.sample(4, seed=0, top_k=1)).reshape(4, 16)
    np.testing.assert_array_equal(np.diff(greedy, axis=1) % 10, 1)


def test_keras_file_round_trip_keeps_the_logits_and_the_samples(tmp_path):
    prior = _prior(**CONFIGS["all"])
    codes, labels, condition = prior_inputs(prior, 2, 4, 6)
    prior.save(tmp_path / "prior.keras")
    loaded = keras.saving.load_model(tmp_path / "prior.keras")
    assert isinstance(loaded, TransformerPrior) and loaded.get_config() == prior.get_config()
    np.testing.assert_allclose(
        to_numpy(loaded(codes, labels=labels, condition=condition)),
        to_numpy(prior(codes, labels=labels, condition=condition)), atol=1e-6,
    )
    arguments = dict(labels=labels, condition=condition, seed=4)
    np.testing.assert_array_equal(to_numpy(loaded.sample(2, **arguments)), to_numpy(prior.sample(2, **arguments)))


def test_registry_presets_and_hierarchical_prior():
    assert PRIORS["transformer"] is TransformerPrior
    prior = TransformerPrior.from_preset("cifar10", num_classes=10)
    assert prior.grid_shape == (8, 8) and prior.num_classes == 10 and prior.built
    vqvae2 = VQVAE2(num_hiddens=8, num_residual_hiddens=4, num_residual_layers=1, embedding_dim=4, num_embeddings=12)
    levels = HierarchicalPrior.from_autoencoder(vqvae2, "transformer", grid_shape=(2, 3), num_classes=2, **TINY)
    top, bottom = levels.priors
    assert isinstance(top, TransformerPrior) and top.grid_shape == (2, 3) and top.condition_num_embeddings is None
    assert bottom.grid_shape == (4, 6) and bottom.condition_num_embeddings == 12 and bottom.condition_upsampling == 2
    codes = levels.sample(2, labels=[0, 1], seed=0)
    assert [c.shape for c in codes] == [(2, 2, 3), (2, 4, 6)]
    with pytest.raises(ValueError, match=r"prior must be one of \('pixelcnn', 'transformer', 'maskgit'\). Received: prior='gan'"):
        HierarchicalPrior.from_autoencoder(vqvae2, "gan")


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(grid_shape=None), "TransformerPrior expects grid_shape=(height, width): its position embeddings are "
         "learned for each row and column of the grid. Received: grid_shape=None"),
        (dict(hidden_dim=10, num_heads=4), "TransformerPrior expects num_heads to divide hidden_dim (each head has "
         "hidden_dim / num_heads channels). Received: hidden_dim=10, num_heads=4"),
        (dict(grid_shape=(3, 4), condition_num_embeddings=5, condition_upsampling=2), "TransformerPrior expects "
         "condition_upsampling=2 to divide the grid (3, 4): the condition grid is the code grid / condition_upsampling."),
        (dict(num_layers=0), "TransformerPrior expects num_layers to be a positive integer. Received: num_layers=0"),
    ],
)
def test_bad_arguments_are_refused(arguments, message):
    with pytest.raises(ValueError) as error:
        TransformerPrior(10, **{"grid_shape": (4, 4), **TINY, **arguments})
    assert str(error.value) == message
