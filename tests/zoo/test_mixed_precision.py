"""Mixed precision (a global Keras dtype policy, as `training.fit --mixed_precision`
sets it) on real images: losses finite and close to float32's; distances, EMA
statistics, codebooks, reconstructions and prior log-probabilities float32."""

import keras
import numpy as np
import pytest

from tests.backend import to_numpy

from tests.zoo.conftest import SMALL
from tests.presets import TINY_PRIORS
from vq_keras.zoo import PRIORS, VQVAE, VQVAE2, PixelCNNPrior

STEPS = 6
# Relative tolerances against float32, from the formats' precision: float16
# keeps 11 significant bits (rounding 2**-11 = 5e-4 per op), bfloat16 8 bits
# (2**-8 = 4e-3); a mean loss averages much of the rounding out (measured on
# the first forward pass: 1e-5 and 1.4e-4). Training on the same batches
# compounds it through Adam and the EMA codebook (measured after 6 steps:
# 3e-4 and 1.7e-3). Each bound is about twice a rounding unit, and below the
# 2.6% the float32 loss falls in these steps (checked), so "close" means
# the mixed run followed float32's trajectory, not merely that it trained.
FORWARD_RTOL = {"mixed_float16": 1e-3, "mixed_bfloat16": 1e-2}
TRAINED_RTOL = {"mixed_float16": 3e-3, "mixed_bfloat16": 1e-2}


def _run(policy, data, train_images, initial_weights):
    keras.config.set_dtype_policy(policy)
    model = VQVAE(data_variance=data.data_variance, **SMALL)
    model.build_if_needed()
    model.set_weights(initial_weights)
    model.compile(optimizer=keras.optimizers.Adam(2e-3), jit_compile=False)
    validation = data.validation.take(2)
    before = model.evaluate(validation, verbose=0, return_dict=True)["loss"]
    history = model.fit(train_images, batch_size=32, shuffle=False, epochs=1, verbose=0).history
    after = model.evaluate(validation, verbose=0, return_dict=True)["loss"]
    return model, before, history, after


@pytest.fixture(scope="module")
def sample_and_float32_run():
    from training.data import load_image_data

    keras.config.set_dtype_policy("float32")
    keras.utils.set_random_seed(0)
    data = load_image_data("cifar10_sample", batch_size=32, seed=0)
    initial = VQVAE.from_preset("cifar10", data_variance=data.data_variance, **SMALL).get_weights()
    # The same batches in the same order for every run (the pipeline reshuffles per pass).
    train_images = np.concatenate([batch for batch in data.train.take(STEPS).as_numpy_iterator()])
    return data, train_images, initial, _run("float32", data, train_images, initial)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.large
def test_mixed_precision_trains_like_float32_on_real_images(policy, sample_and_float32_run):
    data, train_images, initial, (_, before32, history32, after32) = sample_and_float32_run
    model, before, history, after = _run(policy, data, train_images, initial)

    assert model.dtype_policy.name == policy
    assert model.decoder.stages[0].compute_dtype == model.encoders[0].stages[0].compute_dtype == policy.split("_")[1]
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer) == (policy == "mixed_float16")
    quantizer = model.quantizer
    for variable in (quantizer.codebook, quantizer.ema_cluster_size, quantizer.ema_embedding_sum, *model.weights):
        assert variable.dtype == "float32", variable.path
    images = next(iter(data.validation))[:4]
    assert keras.backend.standardize_dtype(model(images).dtype) == "float32"

    for name, values in history.items():
        assert np.all(np.isfinite(values)), (name, values)
    np.testing.assert_allclose(before, before32, rtol=FORWARD_RTOL[policy])
    assert after32 < before32 * (1 - 2 * TRAINED_RTOL[policy])  # the steps matter more than the tolerance
    np.testing.assert_allclose(after, after32, rtol=TRAINED_RTOL[policy])
    np.testing.assert_allclose(history["loss"], history32["loss"], rtol=TRAINED_RTOL[policy])


def sublayers(layer, found=None):
    """Every layer a layer holds, recursively, once each, by public means: a Model's `layers` (a
    Sequential's live only there) and the layers in public attributes, alone or in nested lists."""
    found = {} if found is None else found
    children = list(layer.layers) if isinstance(layer, keras.Model) else []
    children += keras.tree.flatten([value for name, value in vars(layer).items() if not name.startswith("_")])
    for child in children:
        if isinstance(child, keras.layers.Layer) and id(child) not in found:
            found[id(child)] = child
            sublayers(child, found)
    return list(found.values())


@pytest.mark.parametrize("model_class", [VQVAE, VQVAE2])
@pytest.mark.backends
def test_a_model_dtype_reaches_every_sublayer(model_class):
    # Keras gives sublayers the global policy, not their owner's: a model built
    # with dtype="mixed_float16" under a float32 global policy must pass it on.
    model = model_class(dtype="mixed_float16", **SMALL)
    model.build_if_needed()
    layers = [layer for layer in sublayers(model) if not isinstance(layer, keras.layers.InputLayer)]
    assert len(layers) > 10
    for layer in layers:
        assert layer.dtype_policy.name == "mixed_float16", layer.name
    for variable in model.weights:
        assert variable.dtype == "float32", variable.path
    restored = model_class.from_config(model.get_config())
    assert restored.dtype_policy.name == "mixed_float16"


@pytest.mark.large
def test_prior_logits_and_log_probs_stay_float32_under_float16():
    keras.config.set_dtype_policy("mixed_float16")
    prior = PixelCNNPrior(num_embeddings=16, num_layers=2, num_filters=8, num_attention_layers=1, num_heads=2)
    prior.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False)
    codes = np.random.default_rng(0).integers(0, 16, size=(8, 4, 4)).astype("int32")
    history = prior.fit(codes, batch_size=4, epochs=1, verbose=0).history
    assert isinstance(prior.optimizer, keras.optimizers.LossScaleOptimizer)
    assert prior.blocks[0].compute_dtype == prior.attention_layers[0].query.compute_dtype == "float16"
    assert np.isfinite(history["loss"][0])
    logits = prior(codes)
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
    log_prob = to_numpy(prior.log_prob(codes))
    assert log_prob.dtype == np.float32 and np.all(np.isfinite(log_prob)) and np.all(log_prob < 0)
    # The float32 log-softmax of the float32 logits, recomputed in NumPy.
    logits = to_numpy(logits).astype(np.float64)
    log_softmax = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) - logits.max(-1, keepdims=True)
    expected = np.take_along_axis(log_softmax, codes[..., None], -1)[..., 0].sum((1, 2))
    np.testing.assert_allclose(log_prob, expected, rtol=1e-5)


@pytest.mark.parametrize("kind", sorted(PRIORS))
def test_a_prior_trains_in_bfloat16_like_float32_and_saves_a_float32_prior(kind, tmp_path):
    # What `training.fit --stage=prior --mixed_precision=mixed_bfloat16` does: the priors are
    # built with that dtype (no global policy), and the saved file computes in float32.
    keras.config.set_dtype_policy("float32")
    offsets = np.random.default_rng(0).integers(0, 16, size=(64, 1, 1))
    codes = ((np.arange(4)[:, None] + np.arange(4)[None, :] + offsets) % 16).astype("int32")  # learnable diagonals

    def train(dtype):
        keras.utils.set_random_seed(0)
        prior = PRIORS[kind](num_embeddings=16, grid_shape=(4, 4), **TINY_PRIORS[kind], dtype=dtype)
        prior.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
        return prior, prior.fit(codes, batch_size=16, shuffle=False, epochs=3, verbose=0).history["loss"]

    float32, losses32 = train(None)
    mixed, losses = train("mixed_bfloat16")
    assert {layer.dtype_policy.name for layer in sublayers(mixed)} == {"mixed_bfloat16"}
    assert losses32[-1] < losses32[0] * (1 - 2 * TRAINED_RTOL["mixed_bfloat16"])
    np.testing.assert_allclose(losses, losses32, rtol=TRAINED_RTOL["mixed_bfloat16"])

    mixed.save(tmp_path / "prior.keras")
    loaded = keras.saving.load_model(tmp_path / "prior.keras")
    assert {layer.dtype_policy.name for layer in [loaded, *sublayers(loaded)]} == {"float32"}
    for saved, trained in zip(loaded.weights, mixed.weights, strict=True):
        np.testing.assert_array_equal(to_numpy(saved), to_numpy(trained), err_msg=trained.path)
    float32.set_weights(mixed.get_weights())
    np.testing.assert_array_equal(to_numpy(loaded(codes)), to_numpy(float32(codes)))
