"""Dead-code restart and k-means++ seeding, shared by both quantizers (BaseQuantizer)."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.backend import BACKEND, compiled, tensorflow_only, to_numpy, training_call
from tests.mirrored import run_on_two_cpus
from vq_keras.layers import VectorQuantizer, VectorQuantizerEMA

pytestmark = pytest.mark.backends

# On JAX, Keras drops a trainable weight's assignment made in a training step, so there only the
# EMA quantizer (whose codebook is state) restarts codes and seeds by k-means++.
QUANTIZERS = [VectorQuantizer, VectorQuantizerEMA] if BACKEND != "jax" else [VectorQuantizerEMA]
# Three codes on the data, code 3 far away: it never gets a vector.
CODEBOOK = np.array([[0, 0], [4, 0], [0, 4], [100, 100]], "float32")


def _batch(seed=0, n=30):
    rng = np.random.default_rng(seed)
    return (CODEBOOK[rng.integers(0, 3, n)] + rng.normal(scale=0.3, size=(n, 2))).astype("float32")


def _layer(cls, **kwargs):
    layer = cls(4, 2, **kwargs)
    layer.build((None, 2))
    layer.codebook.assign(CODEBOOK)
    return layer


@pytest.mark.parametrize("cls", QUANTIZERS)
def test_dead_code_moves_onto_a_batch_vector_and_live_codes_follow_the_usual_update(cls):
    restarting = _layer(cls, dead_code_threshold=0.5, usage_decay=0.0)
    reference = _layer(cls)  # the same layer without restarts
    batch = _batch()
    restarting(batch, training=True)
    reference(batch, training=True)
    codebook = to_numpy(restarting.codebook)
    assert (batch == codebook[3]).all(1).any()  # code 3 now sits on an encoder output
    np.testing.assert_array_equal(codebook[:3], to_numpy(reference.codebook)[:3])
    counts = np.bincount(((batch[:, None] - CODEBOOK[None]) ** 2).sum(-1).argmin(1), minlength=4)
    assert counts[3] == 0
    np.testing.assert_array_equal(to_numpy(restarting.usage_ema), [*counts[:3], counts.mean()])


def test_ema_statistics_of_a_restarted_code_are_reset_so_the_next_update_keeps_it():
    layer = _layer(VectorQuantizerEMA, dead_code_threshold=0.5, usage_decay=0.0, decay=0.9, epsilon=1e-5)
    layer(_batch(0), training=True)
    size = to_numpy(layer.ema_cluster_size)
    restarted = to_numpy(layer.codebook)[3]
    np.testing.assert_allclose(size[3], size[:3].sum() / 4, rtol=1e-6)  # the mean size (code 3 had 0)
    np.testing.assert_allclose(to_numpy(layer.ema_embedding_sum)[3], size[3] * restarted, rtol=1e-6)
    # One more EMA step from these statistics (by a twin without restarts), recomputed in NumPy.
    twin = _layer(VectorQuantizerEMA, decay=0.9, epsilon=1e-5)
    twin.set_weights(layer.get_weights()[:4])  # codebook, cluster size, sum, steps
    batch = _batch(1)
    codes = to_numpy(twin.encode(batch))
    cluster = 0.9 * size + 0.1 * np.bincount(codes, minlength=4)
    total_sum = 0.9 * to_numpy(layer.ema_embedding_sum) + 0.1 * np.eye(4)[codes].T @ batch
    debias = 1 - 0.9**2
    n = cluster / debias
    smoothed = (n + 1e-5) / (n.sum() + 4e-5) * n.sum()
    twin(batch, training=True)
    assert codes.tolist().count(3) > 0
    np.testing.assert_allclose(to_numpy(twin.codebook), total_sum / debias / smoothed[:, None], rtol=1e-4)
    assert np.abs(to_numpy(twin.codebook)[3]).max() < 10  # still on the data, not back at (100, 100) or 0


@pytest.mark.parametrize("cls", QUANTIZERS)
def test_inference_changes_nothing(cls):
    layer = _layer(cls, dead_code_threshold=0.5, codebook_init="kmeans++")
    before = [to_numpy(w).copy() for w in layer.weights]
    layer(_batch(), training=False)
    layer(_batch())
    for old, weight in zip(before, layer.weights):
        np.testing.assert_array_equal(to_numpy(weight), old)


@pytest.mark.parametrize("cls", QUANTIZERS)
def test_no_code_below_a_tiny_threshold_gives_exactly_the_behaviour_without_restarts(cls):
    plain = _layer(cls)
    assert [w.name for w in plain.weights] == [w.name for w in _layer(cls).weights]
    assert not any("usage" in w.name or "calls" in w.name for w in plain.weights)
    hardly = _layer(cls, dead_code_threshold=1e-30)
    used = np.array([[0, 0], [4, 0], [0, 4], [4, 4]], "float32")  # every code in use by every batch
    hardly.codebook.assign(used)
    plain.codebook.assign(used)
    rng = np.random.default_rng(0)
    for _ in range(3):
        batch = (np.repeat(used, 5, axis=0) + rng.normal(scale=0.3, size=(20, 2))).astype("float32")
        np.testing.assert_array_equal(to_numpy(hardly(batch, training=True)), to_numpy(plain(batch, training=True)))
    np.testing.assert_array_equal(to_numpy(hardly.codebook), to_numpy(plain.codebook))


@pytest.mark.parametrize("cls", QUANTIZERS)
def test_restart_and_kmeans_plus_plus_under_xla(cls):
    # XLA draws another random stream than plain TF for the same seed (and JAX its own), so
    # the reference here is the properties, not the eager result.
    restarting = _layer(cls, dead_code_threshold=0.5, usage_decay=0.0)
    reference = _layer(cls)
    batch = _batch()
    for layer in (restarting, reference):
        training_call(layer, jit_compile=True)(batch)
    codebook = to_numpy(restarting.codebook)
    assert (batch == codebook[3]).all(1).any()
    np.testing.assert_allclose(codebook[:3], to_numpy(reference.codebook)[:3], rtol=1e-6)
    seeded = cls(3, 2, codebook_init="kmeans++")
    seeded.build((None, 2))
    training_call(seeded, jit_compile=True)(batch)
    assert to_numpy(seeded.training_calls) == 1 and to_numpy(seeded.codebook_initialized) == 1
    if cls is VectorQuantizer:  # nothing else moved the codebook: three distinct batch vectors
        rows = to_numpy(seeded.codebook)
        assert all((batch == row).all(1).any() for row in rows) and len({tuple(r) for r in rows}) == 3


@pytest.mark.parametrize("cls", QUANTIZERS)
def test_kmeans_plus_plus_seeds_once_from_the_first_batch_and_survives_a_keras_round_trip(cls, tmp_path):
    layer = cls(3, 2, codebook_init="kmeans++")
    model = keras.Sequential([keras.Input((2,)), layer])
    batch = _batch()
    layer(batch, training=True)
    assert to_numpy(layer.codebook_initialized) == 1
    if cls is VectorQuantizer:  # no codebook update besides the seeding: every code is a batch vector
        assert all((batch == row).all(1).any() for row in to_numpy(layer.codebook))
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras").layers[0]
    assert reloaded.get_config() == layer.get_config()
    assert to_numpy(reloaded.codebook_initialized) == 1
    if cls is VectorQuantizer:
        reloaded(_batch(5), training=True)  # no second seeding
        np.testing.assert_array_equal(to_numpy(reloaded.codebook), to_numpy(layer.codebook))


@pytest.mark.parametrize("cls", QUANTIZERS)
def test_config_round_trip(cls):
    layer = cls(8, 4, dead_code_threshold=0.1, usage_decay=0.9, codebook_init="kmeans++", seed=7)
    config = layer.get_config()
    assert {k: config[k] for k in ("dead_code_threshold", "usage_decay", "codebook_init", "seed")} == dict(
        dead_code_threshold=0.1, usage_decay=0.9, codebook_init="kmeans++", seed=7
    )
    assert cls.from_config(config).get_config() == config


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(dead_code_threshold=0), r"dead_code_threshold to be None \(no restarts\) or a number in \(0, 1\), "
         r"the fraction of a uniform share of the assignments below which a code is restarted. "
         r"Received: dead_code_threshold=0"),
        (dict(dead_code_threshold="0.1"), r"dead_code_threshold to be None .* Received: dead_code_threshold='0.1'"),
        (dict(usage_decay=1.0), r"usage_decay in \[0, 1\). Received: usage_decay=1.0"),
        (dict(codebook_init="kmeans"), r"codebook_init to be one of 'uniform', 'kmeans\+\+'. "
         r"Received: codebook_init='kmeans'"),
        (dict(seed=-1), r"seed to be a non-negative integer. Received: seed=-1"),
    ],
)
@pytest.mark.parametrize("cls", QUANTIZERS)
def test_bad_arguments_are_clear_errors(cls, kwargs, message):
    with pytest.raises(ValueError, match=f"{cls.__name__} expects " + message):
        cls(8, 4, **kwargs)


MIRRORED_SCRIPT = """
from vq_keras.layers import VectorQuantizer, VectorQuantizerEMA

rng = np.random.default_rng(0)
batches = [rng.normal(size=(16, 3)).astype("float32") for _ in range(3)]
far = np.full((8, 3), 50.0, "float32")  # every code far away: first k-means++, then restarts
options = dict(dead_code_threshold=0.9, usage_decay=0.5, codebook_init="kmeans++", seed=5)
for cls in (VectorQuantizer, VectorQuantizerEMA):
    single = cls(8, 3, **options)
    single.build((None, 3)); single.codebook.assign(far)
    for batch in batches:
        single(batch, training=True)
    with strategy.scope():
        mirrored = cls(8, 3, **options)
        mirrored.build((None, 3)); mirrored.codebook.assign(far)
    step = tf.function(lambda x: mirrored(x, training=True))
    for batch in batches:
        dataset = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(batch))
        for x in dataset:
            strategy.run(step, args=(x,))
    for weight in ("codebook", "usage_ema"):
        assert_replicas_equal(strategy, getattr(mirrored, weight), getattr(single, weight).numpy())
    assert single.usage_ema.numpy().min() > 0 and (single.codebook.numpy() != far).all()
    print(cls.__name__, "replicas agree")
"""


@pytest.mark.large
@tensorflow_only("tf.distribute")
def test_mirrored_replicas_restart_identically_and_equal_one_device_on_the_whole_batch():
    output = run_on_two_cpus(MIRRORED_SCRIPT)
    assert "VectorQuantizer replicas agree" in output and "VectorQuantizerEMA replicas agree" in output


@pytest.mark.parametrize("cls", QUANTIZERS)
def test_lookup_refuses_codes_outside_the_codebook_eagerly_and_in_graphs(cls):
    layer = _layer(cls)
    np.testing.assert_array_equal(to_numpy(layer.lookup(np.array([[3, 0]]))), CODEBOOK[[[3, 0]]])
    message = f"{cls.__name__} expects codes in [0, num_embeddings=4) in lookup()."
    for codes, received in (([0, -1], "codes from -1 to 0"), ([[4, 2]], "codes from 2 to 4")):
        with pytest.raises(ValueError) as error:
            layer.lookup(np.array(codes))
        assert str(error.value) == f"{message} Received: {received}"
        if BACKEND == "tensorflow":  # a JAX trace has no assertions
            with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(message)):
                compiled(layer.lookup)(tf.constant(codes))
    with pytest.raises(TypeError, match=rf"{cls.__name__} expects integer codes in lookup\(\). Received: dtype=float32"):
        layer.lookup(np.array([1.0], "float32"))


@pytest.mark.skipif(BACKEND != "jax", reason="TensorFlow and PyTorch keep what a training step assigns to a trained weight")
@pytest.mark.parametrize("kwargs", [dict(dead_code_threshold=0.1), dict(codebook_init="kmeans++")])
def test_a_codebook_trained_by_gradients_refuses_restarts_and_kmeans_plus_plus_where_keras_would_drop_them(kwargs):
    with pytest.raises(ValueError, match=r"VectorQuantizer trains its codebook by gradients, and on the jax backend "
                                         r"Keras keeps no assignment .* Use VectorQuantizerEMA"):
        VectorQuantizer(8, 4, **kwargs)
    VectorQuantizer(8, 4)  # without them it trains on JAX like on TensorFlow
