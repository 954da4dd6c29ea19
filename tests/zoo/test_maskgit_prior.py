"""MaskGITPrior: the masking schedules of training and decoding, iterative decoding, training,
saving, conditioning and its place among the priors."""

import math

import keras
from keras import ops
import numpy as np
import pytest
import tensorflow as tf

from tests.backend import to_numpy

from tests.zoo.conftest import prior_inputs, spread
from vq_keras.zoo import PRIORS, VQVAE2, HierarchicalPrior, MaskGITPrior, TransformerPrior

pytestmark = pytest.mark.backends

TINY = dict(num_layers=2, hidden_dim=16, num_heads=4)
GAMMA = {
    "cosine": lambda r: np.cos(np.pi * r / 2),
    "arccos": lambda r: np.arccos(r) * 2 / np.pi,
    "linear": lambda r: 1 - r,
}


def _prior(grid_shape=(4, 6), **config):
    return spread(MaskGITPrior(10, grid_shape=grid_shape, **{**TINY, **config}))


@pytest.mark.parametrize("schedule", sorted(GAMMA))
def test_training_masks_follow_the_schedule(schedule):
    prior = MaskGITPrior(10, grid_shape=(8, 8), schedule=schedule, **TINY)
    counts = to_numpy(prior.training_mask(4000, 64)).sum(axis=1)
    assert counts.min() >= 1
    # P(count <= c) = P(ceil(gamma(r) * 64) <= c) = P(gamma(r) <= c / 64), gamma decreasing in r ~ U(0, 1).
    inverse = {"cosine": lambda g: 2 / np.pi * np.arccos(g), "arccos": lambda g: np.cos(np.pi * g / 2), "linear": lambda g: 1 - g}
    for c in (8, 16, 32, 48, 60):
        expected = 1 - inverse[schedule](c / 64)
        assert abs((counts <= c).mean() - expected) < 0.03, (c, (counts <= c).mean(), expected)


@pytest.mark.parametrize("schedule", sorted(GAMMA))
@pytest.mark.parametrize("num_steps", [1, 3, 8, 30])
def test_decoding_masks_follow_the_schedule_and_never_change_a_committed_code(schedule, num_steps):
    prior = _prior(schedule=schedule, num_classes=3)
    length, codes = 24, np.full((5, 4, 6), 10, "int32")
    labels = np.array([0, 1, 2, 0, 1], "int32")
    unknown = np.full(5, length)
    for step in range(num_steps):
        key, tensor = ops.convert_to_tensor([7, step], "int32"), lambda value: ops.convert_to_tensor(value, "int32")
        new = to_numpy(prior.decode_step(tensor(codes), tensor(step), tensor(num_steps), tensor(labels), None, 1.0, key))
        before = to_numpy(codes)
        committed = before != 10
        np.testing.assert_array_equal(new[committed], before[committed])
        scheduled = math.floor(GAMMA[schedule]((step + 1) / num_steps) * length + 1e-9)
        expected = 0 if step == num_steps - 1 else np.clip(np.maximum(scheduled, 1), None, unknown - 1).clip(0)
        np.testing.assert_array_equal((new == 10).reshape(5, -1).sum(axis=1), expected)
        unknown, codes = (new == 10).reshape(5, -1).sum(axis=1), new
    assert (to_numpy(codes) < 10).all()


def test_one_step_commits_every_code_at_once_from_the_all_masked_logits():
    prior = _prior(num_classes=3)
    labels = np.array([2, 0, 1], "int32")
    greedy = to_numpy(prior.sample(3, labels=labels, seed=0, num_steps=1, top_k=1))
    all_masked = to_numpy(prior(np.full((3, 4, 6), 10, "int32"), labels=labels))
    np.testing.assert_array_equal(greedy, all_masked.argmax(axis=-1))


def test_sampling_is_seeded_and_deterministic():
    prior = _prior(condition_num_embeddings=6, condition_upsampling=2)
    _, _, condition = prior_inputs(prior, 4, 4, 6)
    first = to_numpy(prior.sample(4, condition=condition, temperature=3.0, seed=3))
    np.testing.assert_array_equal(to_numpy(prior.sample(4, condition=condition, temperature=3.0, seed=3)), first)
    assert (to_numpy(prior.sample(4, condition=condition, temperature=3.0, seed=4)) != first).any()
    assert (to_numpy(prior.sample(4, condition=condition, temperature=3.0, seed=3, num_steps=2)) != first).any()
    assert len(np.unique(first)) > 3 and first.max() < 10


@pytest.mark.large
def test_training_learns_grids_and_more_steps_give_more_coherent_samples():
    # Every grid is one code repeated: any unmasked code tells the others.
    codes = np.repeat(np.random.default_rng(0).integers(0, 10, (256, 1)), 16, axis=1).reshape(256, 4, 4)
    prior = MaskGITPrior(10, grid_shape=(4, 4), **{**TINY, "num_heads": 2})
    prior.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = prior.fit(tf.data.Dataset.from_tensor_slices({"codes": codes}).batch(32), epochs=10, verbose=0)
    assert history.history["loss"][0] > 2.0 and min(history.history["loss"]) < 1.2  # ln(10) = 2.30
    assert set(history.history) == {"loss", "accuracy"}
    distinct = {
        steps: np.mean([len(np.unique(grid)) for grid in to_numpy(prior.sample(32, seed=0, num_steps=steps))])
        for steps in (1, 8)
    }
    assert distinct[8] < 2.0 < distinct[1], distinct  # one step draws every code independently


def test_the_condition_and_the_labels_change_every_position():
    prior = _prior(num_classes=3, condition_num_embeddings=6, condition_upsampling=2)
    codes, labels, condition = prior_inputs(prior, 2, 4, 6)
    logits = to_numpy(prior(codes, labels=labels, condition=condition))
    other_condition = to_numpy(condition).copy()
    other_condition[:, -1, -1] = (other_condition[:, -1, -1] + 1) % 6
    for changed in (
        to_numpy(prior(codes, labels=(labels + 1) % 3, condition=condition)),
        to_numpy(prior(codes, labels=labels, condition=other_condition)),
    ):
        assert np.abs(changed - logits).max(axis=(0, 3)).min() > 1e-4


def test_keras_file_round_trip_keeps_the_logits_and_the_samples(tmp_path):
    prior = _prior(num_classes=3, schedule="arccos", num_steps=5, choice_temperature=2.0)
    codes, labels, _ = prior_inputs(prior, 2, 4, 6)
    prior.save(tmp_path / "prior.keras")
    loaded = keras.saving.load_model(tmp_path / "prior.keras")
    assert isinstance(loaded, MaskGITPrior) and loaded.get_config() == prior.get_config()
    np.testing.assert_allclose(to_numpy(loaded(codes, labels=labels)), to_numpy(prior(codes, labels=labels)), atol=1e-6)
    np.testing.assert_array_equal(to_numpy(loaded.sample(2, labels=labels, seed=1)), to_numpy(prior.sample(2, labels=labels, seed=1)))


def test_what_a_masked_prior_cannot_do_is_refused():
    prior = _prior()
    with pytest.raises(NotImplementedError, match="MaskGITPrior has no exact likelihood"):
        prior.log_prob(np.zeros((1, 4, 6), "int32"))
    with pytest.raises(ValueError, match=r'method \("cached" or "full"\) is for autoregressive priors. Received: method=\'cached\''):
        prior.sample(2, method="cached")
    with pytest.raises(ValueError, match="MaskGITPrior.sample expects num_steps to be a positive integer. Received: num_steps=0"):
        prior.sample(2, num_steps=0)
    with pytest.raises(ValueError, match=r"MaskGITPrior expects codes in \[0, num_embeddings \+ 1=11\). Received: codes from 11 to 11"):
        prior(np.full((1, 4, 6), 11, "int32"))
    transformer = TransformerPrior(10, grid_shape=(4, 6), **TINY)
    with pytest.raises(ValueError, match="draws one code per step in raster order .* Received: num_steps=4"):
        transformer.sample(2, num_steps=4)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(num_steps=0), "MaskGITPrior expects num_steps to be a positive integer. Received: num_steps=0"),
        (dict(schedule="square"), "MaskGITPrior expects schedule to be one of 'cosine', 'arccos', 'linear'. Received: schedule='square'"),
        (dict(choice_temperature=-1.0), "MaskGITPrior expects choice_temperature in [0, inf). Received: choice_temperature=-1.0"),
    ],
)
def test_bad_arguments_are_refused(arguments, message):
    with pytest.raises(ValueError) as error:
        MaskGITPrior(10, grid_shape=(4, 4), **TINY, **arguments)
    assert str(error.value) == message


def test_a_hierarchy_may_mix_kinds_and_each_level_takes_its_own_option():
    assert PRIORS["maskgit"] is MaskGITPrior
    vqvae2 = VQVAE2(num_hiddens=8, num_residual_hiddens=4, num_residual_layers=1, embedding_dim=4, num_embeddings=12)
    masked = HierarchicalPrior.from_autoencoder(vqvae2, "maskgit", grid_shape=(2, 3), **TINY)
    top = TransformerPrior(12, grid_shape=(2, 3), **TINY)
    mixed = HierarchicalPrior([top, masked.priors[1]])
    first = mixed.sample(2, seed=0, method="full", num_steps=2)
    np.testing.assert_array_equal(to_numpy(first[0]), to_numpy(mixed.sample(2, seed=0, method="cached", num_steps=2)[0]))
    assert [c.shape for c in first] == [(2, 2, 3), (2, 4, 6)]
    with pytest.raises(ValueError, match="method applies to autoregressive levels, and this prior has none"):
        masked.sample(2, seed=0, method="cached")
    every_level_autoregressive = HierarchicalPrior.from_autoencoder(vqvae2, "transformer", grid_shape=(2, 3), **TINY)
    with pytest.raises(ValueError, match="every level of this prior is autoregressive. Received: num_steps=3"):
        every_level_autoregressive.sample(2, seed=0, num_steps=3)
