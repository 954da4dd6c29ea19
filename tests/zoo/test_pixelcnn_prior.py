import math
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import keras
from keras import ops

from tests.backend import BACKEND, input_jacobian, to_numpy
from tests.zoo.conftest import spread
from vq_keras import metrics
from vq_keras._backend import categorical, fold_seed
from vq_keras.zoo import VQVAE, VQVAE2, PixelCNNPrior, generate

pytestmark = pytest.mark.backends

SAMPLE = Path(__file__).resolve().parents[2] / "training" / "data" / "cifar10_sample.npz"
TINY = dict(num_layers=2, num_filters=8, kernel_size=3)


def _codes(n, height, width, limit, seed=0):
    return np.random.default_rng(seed).integers(0, limit, size=(n, height, width)).astype("int32")


def logit_dependence(prior, codes, labels=None, condition=None):
    """bool (positions, positions): [p, q] iff the logits at raster position p have a
    non-zero gradient with respect to the embedded code at position q."""
    embedded = to_numpy(prior.code_embedding(codes))
    label_features = prior.label_features(labels)
    condition_features = prior.condition_features(condition)
    weights = np.random.default_rng(7).normal(size=(prior.num_embeddings,)).astype("float32")

    def projected(embedded):  # (H, W)
        return ops.tensordot(prior.logits_from_embedded(embedded, label_features, condition_features)[0], weights, 1)

    jacobian = np.abs(input_jacobian(projected, embedded)).sum(axis=-1)
    positions = codes.shape[1] * codes.shape[2]
    return jacobian.reshape(positions, positions) > 0


def _earlier(positions):
    return np.tril(np.ones((positions, positions), bool), k=-1)


def test_presets():
    architectures = [name for name, kind in PixelCNNPrior.presets().items() if kind.startswith("architecture")]
    assert architectures == ["cifar10", "cifar10_bottom", "cifar10_top"]
    top = PixelCNNPrior.from_preset("cifar10_top")
    assert top.built and top.grid_shape == (4, 4) and len(top.attention_layers) == 2
    bottom = PixelCNNPrior.from_preset("cifar10_bottom", dropout=0.0)
    assert bottom.condition_num_embeddings == 512 and bottom.condition_upsampling == 2 and bottom.dropout == 0.0
    logits = bottom(_codes(1, 8, 8, 512), condition=_codes(1, 4, 4, 512))
    assert keras.backend.standardize_dtype(logits.dtype) == "float32" and tuple(logits.shape) == (1, 8, 8, 512)


def test_unconditional_prior_is_causal_without_blind_spot():
    # 5 gated blocks of kernel 3 cover every earlier position of a 5x5 grid.
    prior = PixelCNNPrior(16, num_layers=5, num_filters=8, kernel_size=3)
    depends = logit_dependence(prior, _codes(1, 5, 5, 16))
    # Zero gradient at p and after it; non-zero at every earlier position,
    # including those right of p and above-right of p in the previous rows.
    np.testing.assert_array_equal(depends, _earlier(25))


def test_conditional_prior_with_attention_is_causal_without_blind_spot():
    prior = PixelCNNPrior(
        12, num_layers=3, num_filters=8, kernel_size=5, num_classes=3, condition_num_embeddings=5,
        condition_upsampling=2, num_attention_layers=1, num_heads=2,
    )
    depends = logit_dependence(
        prior, _codes(1, 6, 6, 12), labels=np.array([2]), condition=_codes(1, 3, 3, 5, seed=1)
    )
    np.testing.assert_array_equal(depends, _earlier(36))


def test_attention_reaches_beyond_the_convolutions():
    # One gated block sees 2 rows up; attention brings every earlier position.
    codes = _codes(1, 5, 5, 8)
    convolutions_only = logit_dependence(PixelCNNPrior(8, num_layers=1, num_filters=8), codes)
    with_attention = logit_dependence(
        PixelCNNPrior(8, num_layers=1, num_filters=8, num_attention_layers=1, num_heads=2), codes
    )
    last = 24
    assert not convolutions_only[last, 0]
    assert with_attention[last, 0]
    assert not np.any(with_attention & ~_earlier(25))


def test_logits_depend_on_labels_and_condition():
    prior = PixelCNNPrior(10, num_classes=4, condition_num_embeddings=6, condition_upsampling=2, **TINY)
    codes, condition = _codes(2, 4, 4, 10), _codes(2, 2, 2, 6, seed=1)
    base = to_numpy(prior(codes, labels=np.array([0, 1]), condition=condition))
    other_labels = to_numpy(prior(codes, labels=np.array([3, 1]), condition=condition))
    assert np.abs(other_labels[0] - base[0]).max() > 1e-4
    np.testing.assert_allclose(other_labels[1], base[1], rtol=1e-6, atol=1e-6)
    changed = condition.copy()
    changed[0, 0, 0] = (changed[0, 0, 0] + 1) % 6
    other_condition = to_numpy(prior(codes, labels=np.array([0, 1]), condition=changed))
    assert np.abs(other_condition[0] - base[0]).max() > 1e-4
    np.testing.assert_allclose(other_condition[1], base[1], rtol=1e-6, atol=1e-6)


def test_same_seed_same_codes_and_one_compiled_function():
    prior = spread(PixelCNNPrior(16, grid_shape=(4, 5), **TINY))
    first = prior.sample(6, seed=3)
    assert keras.backend.standardize_dtype(first.dtype) == "int32" and tuple(first.shape) == (6, 4, 5)
    assert 0 <= to_numpy(first).min() and to_numpy(first).max() < 16
    np.testing.assert_array_equal(to_numpy(prior.sample(6, seed=3)), to_numpy(first))
    assert np.any(to_numpy(prior.sample(6, seed=4)) != to_numpy(first))
    assert np.any(to_numpy(prior.sample(6, seed=3, temperature=3.0)) != to_numpy(first))
    # One cached compiled function for every seed and temperature of this shape (on TensorFlow,
    # where it is a tf.function, traced once).
    (function,) = prior._samplers.functions.values()
    assert BACKEND != "tensorflow" or function.experimental_get_tracing_count() == 1
    assert tuple(prior.sample(2, seed=3, grid_shape=(3, 3)).shape) == (2, 3, 3)
    assert len(prior._samplers.functions) == 2


@pytest.mark.parametrize("num_layers, kernel_size", [(3, 3), (2, 5)])
def test_vertical_reach_is_the_receptive_field_in_rows(num_layers, kernel_size):
    prior = PixelCNNPrior(8, num_layers=num_layers, num_filters=8, kernel_size=kernel_size)
    prior.build_if_needed()
    reach = prior.vertical_reach()
    assert reach == kernel_size // 2 + 1 + (num_layers - 1) * (kernel_size // 2)
    height, width = reach + 4, 3
    depends = logit_dependence(prior, _codes(1, height, width, 8))
    rows = np.arange(height * width) // width
    last = height - 1  # the last row's logits reach exactly `reach` rows up
    reached = {rows[q] for p in range(height * width) if rows[p] == last for q in np.flatnonzero(depends[p])}
    assert min(reached) == last - reach
    assert prior.sampling_window(height) == reach + 1 and prior.sampling_window(2) == 2
    assert PixelCNNPrior(8, num_layers=2, num_attention_layers=1).sampling_window(height) == height


def test_sampling_on_a_window_of_rows_equals_full_recomputation():
    prior = spread(PixelCNNPrior(10, num_classes=3, condition_num_embeddings=6, condition_upsampling=2, **TINY))
    height, width, temperature, seed = 10, 4, 0.7, 5
    assert prior.sampling_window(height) < height
    labels, condition = np.array([0, 2, 1]), _codes(3, height // 2, width // 2, 6)
    sampled = to_numpy(prior.sample(3, labels=labels, condition=condition, temperature=temperature, seed=seed))
    codes = np.zeros((3, height, width), "int32")
    for p in range(height * width):  # the slow reference: the whole grid at every position
        row, col = divmod(p, width)
        logits = to_numpy(prior(codes, labels=labels, condition=condition))[:, row, col] / temperature
        key = fold_seed(ops.convert_to_tensor([0, seed], "int32"), p)  # the stream of sample(seed=seed)
        codes[:, row, col] = to_numpy(categorical(ops.convert_to_tensor(logits), key))
    np.testing.assert_array_equal(sampled, codes)


def test_low_temperature_sampling_is_greedy_decoding():
    prior = spread(PixelCNNPrior(8, num_layers=2, num_filters=8))
    sampled = to_numpy(prior.sample(3, temperature=1e-4, seed=0, grid_shape=(3, 3)))
    greedy = np.zeros((3, 3, 3), "int32")
    for p in range(9):  # the slow reference: one full forward pass per position
        row, col = divmod(p, 3)
        greedy[:, row, col] = np.argmax(to_numpy(prior(greedy))[:, row, col], axis=-1)
    np.testing.assert_array_equal(sampled, greedy)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_sampling_follows_the_model_distribution(temperature):
    prior = PixelCNNPrior(4, num_layers=1, num_filters=4)
    prior.build_if_needed()
    prior.head[-1].bias.assign([2.0, 0.0, -1.0, 1.0])
    logits = to_numpy(prior(np.zeros((1, 1, 2), "int32")))[0, 0, 0] / temperature
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    codes = to_numpy(prior.sample(4000, temperature=temperature, seed=11, grid_shape=(1, 2)))
    frequencies = np.bincount(codes[:, 0, 0], minlength=4) / 4000
    # 4000 draws: the standard error of each frequency is below 0.008.
    np.testing.assert_allclose(frequencies, expected, atol=0.035)


def test_conditional_sampling():
    prior = spread(PixelCNNPrior(10, num_classes=3, condition_num_embeddings=6, condition_upsampling=2, **TINY))
    condition = _codes(4, 2, 3, 6)
    codes = prior.sample(4, labels=1, condition=condition, seed=0)
    assert tuple(codes.shape) == (4, 4, 6)  # the condition grid times 2
    np.testing.assert_array_equal(
        to_numpy(prior.sample(4, labels=[1, 1, 1, 1], condition=condition, seed=0)), to_numpy(codes)
    )
    # At temperature 10: the initial weights (seeded per backend) may leave one code so far ahead
    # that every label draws it at temperature 1.
    hot = to_numpy(prior.sample(4, labels=1, condition=condition, seed=0, temperature=10.0))
    assert np.any(to_numpy(prior.sample(4, labels=2, condition=condition, seed=0, temperature=10.0)) != hot)


@pytest.mark.large
def test_fit_on_dict_dataset_reports_nats_bits_and_accuracy():
    prior = PixelCNNPrior(10, num_classes=3, condition_num_embeddings=6, condition_upsampling=2, **TINY)
    prior.compile(optimizer=keras.optimizers.Adam(1e-3))
    data = {"codes": _codes(8, 4, 4, 10), "labels": np.arange(8) % 3, "condition": _codes(8, 2, 2, 6)}
    dataset = tf.data.Dataset.from_tensor_slices(data).batch(4)
    history = prior.fit(dataset, epochs=2, validation_data=dataset, verbose=0).history
    assert set(history) == {"loss", "bits_per_code", "accuracy", "val_loss", "val_bits_per_code", "val_accuracy"}
    np.testing.assert_allclose(np.array(history["bits_per_code"]), np.array(history["loss"]) / math.log(2), rtol=1e-5)
    result = prior.evaluate(dataset, verbose=0, return_dict=True)
    logits = to_numpy(prior(data["codes"], labels=data["labels"], condition=data["condition"]))
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    nll = -np.take_along_axis(log_probs, data["codes"][..., None], axis=-1).mean()
    np.testing.assert_allclose(result["loss"], nll, rtol=1e-4)
    np.testing.assert_allclose(result["accuracy"], (logits.argmax(-1) == data["codes"]).mean(), rtol=1e-6)
    per_grid = np.take_along_axis(log_probs, data["codes"][..., None], axis=-1).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(to_numpy(prior.log_prob(**data)), per_grid, rtol=1e-4)


def test_unconditional_prior_accepts_plain_code_batches():
    prior = PixelCNNPrior(10, **TINY)
    prior.compile(optimizer="adam")
    codes = _codes(8, 3, 3, 10)
    result = prior.evaluate(tf.data.Dataset.from_tensor_slices(codes).batch(4), verbose=0, return_dict=True)
    as_dicts = prior.evaluate(
        tf.data.Dataset.from_tensor_slices({"codes": codes}).batch(4), verbose=0, return_dict=True
    )
    assert result == as_dicts and np.isfinite(result["loss"])


def test_bits_per_code_helper():
    np.testing.assert_allclose(metrics.bits_per_code(math.log(512.0)), 9.0, rtol=1e-12)


@pytest.fixture(scope="module")
def real_codes():
    """8x8 code grids (64 codes) of the bundled real CIFAR-10 sample, from a tiny VQVAE
    trained for 150 steps: 1200 training and 300 held-out test images."""
    keras.utils.set_random_seed(0)
    data = np.load(SAMPLE)
    train = data["train_images"].astype("float32") / 255.0
    test = data["test_images"].astype("float32") / 255.0
    vqvae = VQVAE(
        num_hiddens=32, num_residual_hiddens=16, num_residual_layers=1, embedding_dim=16, num_embeddings=64,
        data_variance=float(train.var()),
    )
    vqvae.compile(optimizer=keras.optimizers.Adam(2e-3))
    images = tf.data.Dataset.from_tensor_slices(train).shuffle(1200, seed=0).repeat().batch(32)
    vqvae.fit(images, steps_per_epoch=150, epochs=1, verbose=0)
    def encode(images):
        return np.concatenate([to_numpy(vqvae.encode(images[i : i + 300])) for i in range(0, len(images), 300)])

    return encode(train), encode(test)


@pytest.mark.large
def test_prior_learns_real_codes(real_codes):
    train, test = real_codes
    # The best context-free model: the training code frequencies, scored on the test codes.
    frequencies = (np.bincount(train.ravel(), minlength=64) + 0.5) / (train.size + 32)
    unigram_bits = -np.log2(frequencies[test.ravel()]).mean()
    keras.utils.set_random_seed(0)
    prior = PixelCNNPrior(64, num_layers=4, num_filters=32, kernel_size=3)
    prior.compile(optimizer=keras.optimizers.Adam(3e-3))
    dataset = tf.data.Dataset.from_tensor_slices({"codes": train}).shuffle(1200, seed=0).repeat().batch(32)
    history = prior.fit(
        dataset, steps_per_epoch=100, epochs=2, verbose=0,
        validation_data=tf.data.Dataset.from_tensor_slices({"codes": test}).batch(100),
    ).history
    bits = history["val_bits_per_code"][-1]
    # Measured: about 3.0 bits on held-out codes after 200 steps, against log2(64) = 6
    # bits for a uniform guess and about 4.8 for the code frequencies alone. Both
    # bounds keep about 0.8 bit of slack: bits < log2(64) - 2 says the prior learned
    # a great deal, and bits < unigram - 1 says at least a bit per code comes from
    # the context (the earlier codes), which a marginal-only model cannot exploit.
    assert bits < math.log2(64) - 2, history
    assert bits < unigram_bits - 1.0, (bits, unigram_bits)


@pytest.mark.large
def test_keras_file_round_trip_gives_identical_logits_and_samples(tmp_path):
    prior = PixelCNNPrior(
        10, num_classes=3, condition_num_embeddings=6, condition_upsampling=2, num_attention_layers=1,
        num_heads=2, dropout=0.1, grid_shape=(4, 4), **TINY,
    )
    prior.compile(optimizer=keras.optimizers.Adam(1e-3))
    data = {"codes": _codes(4, 4, 4, 10), "labels": np.arange(4) % 3, "condition": _codes(4, 2, 2, 6)}
    prior.fit(tf.data.Dataset.from_tensor_slices(data).batch(4), verbose=0)
    clone = PixelCNNPrior.from_config(prior.get_config())
    assert clone.get_config() == prior.get_config()
    prior.save(tmp_path / "prior.keras")
    reloaded = keras.saving.load_model(tmp_path / "prior.keras")
    assert isinstance(reloaded, PixelCNNPrior) and reloaded.get_config() == prior.get_config()
    np.testing.assert_array_equal(to_numpy(reloaded(**data)), to_numpy(prior(**data)))
    np.testing.assert_array_equal(
        to_numpy(reloaded.sample(4, labels=data["labels"], condition=data["condition"], seed=5)),
        to_numpy(prior.sample(4, labels=data["labels"], condition=data["condition"], seed=5)),
    )
    assert to_numpy(reloaded.optimizer.iterations) == 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(num_embeddings=0),
            "PixelCNNPrior expects num_embeddings to be a positive integer. Received: num_embeddings=0",
        ),
        (
            dict(num_embeddings=8, kernel_size=4),
            "PixelCNNPrior expects an odd kernel_size (the gated blocks' vertical stack is centred on the "
            "current column). Received: kernel_size=4. Use e.g. 3, 5 or 7.",
        ),
        (
            dict(num_embeddings=8, condition_num_embeddings=8, condition_upsampling=3),
            "PixelCNNPrior expects condition_upsampling to be a power of 2 (1, 2, 4, ...): the condition "
            "grid is upsampled by stride-2 steps. Received: condition_upsampling=3",
        ),
        (
            dict(num_embeddings=8, num_layers=2, num_attention_layers=3),
            "PixelCNNPrior places each attention layer after a gated block, so it expects "
            "num_attention_layers <= num_layers=2. Received: num_attention_layers=3",
        ),
        (
            dict(num_embeddings=8, num_filters=10, num_attention_layers=1, num_heads=4),
            "PixelCNNPrior expects num_heads to divide num_filters (each head has num_filters / num_heads "
            "channels). Received: num_filters=10, num_heads=4",
        ),
        (
            dict(num_embeddings=8, grid_shape=(8,)),
            "PixelCNNPrior expects grid_shape to be None or (height, width), two positive integers. "
            "Received: grid_shape=(8,)",
        ),
    ],
)
def test_bad_arguments_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError) as error:
        PixelCNNPrior(**kwargs)
    assert str(error.value) == message


def test_bad_inputs_are_clear_errors():
    prior = PixelCNNPrior(8, **TINY)
    with pytest.raises(TypeError) as error:
        prior(np.zeros((1, 4, 4), "float32"))
    assert str(error.value) == (
        "PixelCNNPrior expects integer codes (indices, e.g. int32). Received: dtype=float32. "
        "Cast them with tf.cast(..., 'int32')."
    )
    with pytest.raises(ValueError) as error:
        prior(np.zeros((4, 4), "int32"))
    assert str(error.value) == "PixelCNNPrior expects codes of shape (batch, height, width). Received: shape=(4, 4)"
    with pytest.raises(ValueError) as error:
        prior(np.full((1, 4, 4), 8, "int32"))
    assert str(error.value) == "PixelCNNPrior expects codes in [0, num_embeddings=8). Received: codes from 8 to 8"
    with pytest.raises(ValueError) as error:
        prior(np.zeros((1, 4, 4), "int32"), labels=np.zeros((1,), "int32"))
    assert str(error.value) == (
        "PixelCNNPrior was built with num_classes=None, so labels (dataset key 'labels') are not expected. "
        "Received: labels=a tensor."
    )
    conditional = PixelCNNPrior(8, condition_num_embeddings=4, condition_upsampling=2, **TINY)
    with pytest.raises(ValueError) as error:
        conditional(np.zeros((1, 4, 4), "int32"))
    assert str(error.value) == (
        "PixelCNNPrior was built with condition_num_embeddings=4, so a condition (the codes of the level "
        "above, dataset key 'condition') is required. Received: condition=None."
    )
    with pytest.raises(ValueError) as error:
        conditional(np.zeros((1, 4, 4), "int32"), condition=np.zeros((1, 4, 4), "int32"))
    assert str(error.value) == (
        "PixelCNNPrior expects the condition grid times condition_upsampling=2 to equal the code grid. "
        "Received: codes shape=(1, 4, 4), condition shape=(1, 4, 4)"
    )


def test_bad_sampling_arguments_are_clear_errors():
    prior = PixelCNNPrior(8, **TINY)
    with pytest.raises(ValueError) as error:
        prior.sample(2)
    assert str(error.value) == (
        "PixelCNNPrior.sample needs the code grid size. Received: grid_shape=None, and the prior has no "
        "default grid_shape. Pass grid_shape=(height, width)."
    )
    expected = r"PixelCNNPrior.sample expects temperature in \(0, inf\). Received: temperature=0"
    with pytest.raises(ValueError, match=expected):
        prior.sample(2, temperature=0, grid_shape=(2, 2))
    expected = r"sample expects seed to be an integer in \[0, 2\*\*31\) or a pair of them. Received: seed=-1"
    with pytest.raises(ValueError, match=expected):
        prior.sample(2, seed=-1, grid_shape=(2, 2))
    labelled = PixelCNNPrior(8, num_classes=2, **TINY)
    with pytest.raises(ValueError, match=r"built with num_classes=2, so labels \(dataset key 'labels'\) are required"):
        labelled.sample(2, grid_shape=(2, 2))
    with pytest.raises(ValueError) as error:
        labelled.sample(2, labels=[0, 1, 1], grid_shape=(2, 2))
    assert str(error.value) == (
        "PixelCNNPrior.sample expects one labels entry per sample: num=2. Received: labels shape=(3,)"
    )


def test_bad_dataset_elements_are_clear_errors():
    prior = PixelCNNPrior(8, **TINY)
    prior.compile(optimizer="adam")
    codes = _codes(4, 3, 3, 8)
    with pytest.raises(TypeError, match=r"expects dataset elements that are dicts .* Received: a tuple of 2 elements"):
        prior.evaluate(tf.data.Dataset.from_tensor_slices((codes, np.zeros(4, "int32"))).batch(2), verbose=0)
    with pytest.raises(ValueError) as error:
        prior.evaluate(
            tf.data.Dataset.from_tensor_slices({"codes": codes, "label": np.zeros(4, "int32")}).batch(2), verbose=0
        )
    assert str(error.value) == (
        "PixelCNNPrior expects dataset dicts with the key 'codes' and optionally 'labels' and 'condition'. "
        "Received keys: ['codes', 'label']"
    )
    # Out-of-range codes of a dataset: a graph assertion with the same words inside the compiled step
    # (or in the input pipeline, where XLA would drop it); on eager PyTorch a ValueError in the step.
    fresh = PixelCNNPrior(8, **TINY)
    fresh.compile(optimizer="adam")
    refused = (tf.errors.InvalidArgumentError, ValueError)
    with pytest.raises(refused, match=r"PixelCNNPrior expects codes in \[0, num_embeddings=8\)"):
        fresh.fit(tf.data.Dataset.from_tensor_slices({"codes": codes + 8}).batch(2), verbose=0)


def test_generate_decodes_sampled_codes_of_a_vqvae():
    vqvae = VQVAE(num_hiddens=16, num_residual_hiddens=8, num_residual_layers=1, embedding_dim=8, num_embeddings=16)
    prior = PixelCNNPrior(16, grid_shape=(4, 4), **TINY)
    images = generate(vqvae, prior, num=3, seed=2, image_size=(16, 16))
    assert keras.backend.standardize_dtype(images.dtype) == "float32" and tuple(images.shape) == (3, 16, 16, 3)
    assert to_numpy(images).min() >= 0.0 and to_numpy(images).max() <= 1.0
    codes = prior.sample(3, seed=2, grid_shape=(4, 4))
    np.testing.assert_array_equal(to_numpy(images), to_numpy(vqvae.decode(codes)))
    # Without image_size, the prior's grid_shape sets it: 4x4 codes -> 16x16 images.
    np.testing.assert_array_equal(to_numpy(generate(vqvae, prior, num=3, seed=2)), to_numpy(images))
    same_images, same_codes = generate(vqvae, prior, num=3, seed=2, return_codes=True)
    np.testing.assert_array_equal(to_numpy(same_images), to_numpy(images))
    np.testing.assert_array_equal(to_numpy(same_codes), to_numpy(codes))
    with pytest.raises(ValueError) as error:
        generate(vqvae, PixelCNNPrior(32, grid_shape=(4, 4), **TINY), num=1)
    assert str(error.value) == (
        "generate: the prior of level 0 models num_embeddings=32 codes but VQVAE has num_embeddings=16."
    )
    vqvae2 = VQVAE2(num_hiddens=16, num_residual_hiddens=8, num_residual_layers=1, embedding_dim=8, num_embeddings=16)
    with pytest.raises(ValueError) as error:
        generate(vqvae2, prior, num=1)
    assert str(error.value) == (
        "generate: VQVAE2 has 2 code level(s) but the prior models 1. Use a HierarchicalPrior for this autoencoder."
    )
