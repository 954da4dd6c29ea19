"""Cached (incremental) sampling of PixelCNNPrior against the full network."""

from pathlib import Path

import keras
import numpy as np
import pytest

from tests.backend import tensorflow_only, to_numpy
from tests.zoo.conftest import assert_cached_and_full_draw_the_same, cached_logits, prior_inputs, spread
from vq_keras.zoo import HierarchicalPrior, PixelCNNPrior

pytestmark = pytest.mark.backends

ZOO = Path(__file__).resolve().parents[2] / "zoo"
TINY = dict(num_layers=3, num_filters=8, kernel_size=3)
CONFIGS = {
    "plain": dict(),
    "attention": dict(num_attention_layers=2, num_heads=2),
    "labels": dict(num_classes=3),
    "condition": dict(condition_num_embeddings=6, condition_upsampling=2),
    "all": dict(num_classes=3, condition_num_embeddings=6, condition_upsampling=1, num_attention_layers=1, num_heads=4),
    "kernel 5": dict(kernel_size=5, num_layers=2),
    "kernel 7, one block": dict(kernel_size=7, num_layers=1),
}


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
@pytest.mark.parametrize("num, height, width", [(2, 4, 6), (1, 6, 2), (3, 1, 1)], ids=["wide", "tall", "one code"])
def test_cached_logits_equal_the_networks_at_every_position(config, num, height, width):
    prior = spread(PixelCNNPrior(10, **{**TINY, **config}))
    if config.get("condition_upsampling", 1) > 1 and (height % 2 or width % 2):
        height, width = 2 * height, 2 * width
    codes, labels, condition = prior_inputs(prior, num, height, width)
    expected = to_numpy(prior(codes, labels=labels, condition=condition))
    np.testing.assert_allclose(cached_logits(prior, codes, labels, condition), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_cached_and_full_sampling_draw_the_same_codes(config):
    prior = spread(PixelCNNPrior(10, **{**TINY, **config}))
    _, labels, condition = prior_inputs(prior, 3, 6, 4)
    assert_cached_and_full_draw_the_same(prior, 3, (6, 4), labels, condition)


def test_cached_sampling_is_the_default_and_a_bad_method_is_a_clear_error():
    prior = spread(PixelCNNPrior(10, **TINY))
    prior.sample(2, seed=0, grid_shape=(2, 2))
    assert {key[-1] for key in prior._samplers.functions} == {"cached"}
    with pytest.raises(ValueError) as error:
        prior.sample(2, seed=0, grid_shape=(2, 2), method="fast")
    assert str(error.value) == (
        'PixelCNNPrior.sample expects method to be "cached" (only the new position\'s features per step, the '
        'default) or "full" (the whole network per step, the reference). Received: method=\'fast\''
    )


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_cached_sampling_under_mixed_precision(policy):
    keras.mixed_precision.set_dtype_policy(policy)
    try:
        prior = spread(PixelCNNPrior(10, **{**TINY, **CONFIGS["all"]}))
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    codes, labels, condition = prior_inputs(prior, 2, 3, 4)
    expected = to_numpy(prior(codes, labels=labels, condition=condition))
    # Half-precision features: the orders of the sums differ, so tolerances are wider.
    np.testing.assert_allclose(cached_logits(prior, codes, labels, condition), expected, rtol=0.05, atol=0.1)


def _zoo_prior(entry):
    path = ZOO / entry / "prior.keras"
    if not path.exists():
        pytest.skip(f"{path} is not in this checkout")
    return keras.saving.load_model(path, compile=False)


@pytest.mark.large
def test_the_zoo_vqvae_prior_draws_the_same_codes_either_way():
    prior = _zoo_prior("pixelcnn_vqvae_cifar10")
    assert isinstance(prior, PixelCNNPrior)
    for seed in range(5):
        np.testing.assert_array_equal(
            to_numpy(prior.sample(4, seed=seed, method="cached")), to_numpy(prior.sample(4, seed=seed, method="full"))
        )


@pytest.mark.large
def test_the_zoo_vqvae2_priors_draw_the_same_codes_either_way():
    prior = _zoo_prior("pixelcnn_vqvae2_cifar10")
    assert isinstance(prior, HierarchicalPrior) and prior.priors[0].num_attention_layers > 0
    for seed in range(5):
        cached = prior.sample(4, seed=seed, method="cached")
        full = prior.sample(4, seed=seed, method="full")
        for cached_level, full_level in zip(cached, full):
            np.testing.assert_array_equal(to_numpy(cached_level), to_numpy(full_level))


def _recorded_before_the_transformer_priors():
    # Recorded at bad1c43, the commit before the prior contract took transformers and sampling filters
    # (tests/zoo/data/pixelcnn_before_transformers.npz): same weights, same seeds -> same codes.
    with np.load(Path(__file__).parent / "data" / "pixelcnn_before_transformers.npz") as recorded:
        return dict(recorded)


@tensorflow_only("the codes were recorded from TensorFlow's random stream; JAX draws from its own")
def test_the_zoo_priors_draw_the_codes_they_did_before_the_transformer_priors():
    recorded = _recorded_before_the_transformer_priors()
    prior, levels = _zoo_prior("pixelcnn_vqvae_cifar10"), _zoo_prior("pixelcnn_vqvae2_cifar10")
    np.testing.assert_array_equal(to_numpy(prior.sample(4, seed=0)), recorded["vqvae_seed0"])
    np.testing.assert_array_equal(to_numpy(prior.sample(4, seed=1, temperature=0.8)), recorded["vqvae_seed1_t08"])
    top, bottom = levels.sample(4, seed=0)
    np.testing.assert_array_equal(to_numpy(top), recorded["vqvae2_top_seed0"])
    np.testing.assert_array_equal(to_numpy(bottom), recorded["vqvae2_bottom_seed0"])


def test_the_zoo_prior_scores_the_log_prob_it_did_before_the_transformer_priors():
    recorded = _recorded_before_the_transformer_priors()
    prior = _zoo_prior("pixelcnn_vqvae_cifar10")
    np.testing.assert_allclose(to_numpy(prior.log_prob(recorded["random_codes"])), recorded["log_prob"], rtol=1e-5)
