
import numpy as np
import pytest

from tests.backend import BACKEND, losses_and_gradients, to_numpy, training_call
from tests.layer_harness import run_layer_test
from tests.mirrored import run_on_two_cpus
from vq_keras.layers import VectorQuantizerEMA

pytestmark = pytest.mark.backends  # the same checks on every backend (tests/backend.py)


def _numpy_ema_steps(codebook, batches, decay, epsilon):
    """The paper's EMA updates with Laplace smoothing and zero-debiasing, in float64."""
    num_embeddings = codebook.shape[0]
    cluster_size = np.zeros(num_embeddings)
    embedding_sum = np.zeros_like(codebook, dtype=np.float64)
    codebook = codebook.astype(np.float64)
    for step, batch in enumerate(batches, start=1):
        flat = batch.reshape(-1, codebook.shape[1]).astype(np.float64)
        codes = ((flat[:, None] - codebook[None]) ** 2).sum(-1).argmin(1)
        one_hot = np.eye(num_embeddings)[codes]
        cluster_size = decay * cluster_size + (1 - decay) * one_hot.sum(0)
        embedding_sum = decay * embedding_sum + (1 - decay) * one_hot.T @ flat
        debias = 1 - decay**step
        n_i = cluster_size / debias
        total = n_i.sum()
        smoothed = (n_i + epsilon) / (total + num_embeddings * epsilon) * total
        codebook = embedding_sum / debias / smoothed[:, None]
    return codebook, cluster_size, embedding_sum


def _layer(num_embeddings=6, embedding_dim=3, decay=0.9, epsilon=1e-3):
    layer = VectorQuantizerEMA(num_embeddings, embedding_dim, decay=decay, epsilon=epsilon)
    layer.build((None, embedding_dim))
    return layer


@pytest.mark.parametrize("compiled", ["eager", "graph", "xla"])
def test_three_ema_steps_match_numpy(compiled):
    layer = _layer()
    rng = np.random.default_rng(0)
    initial = to_numpy(layer.codebook)
    batches = [rng.normal(size=(4, 5, 3)).astype("float32") for _ in range(3)]
    step = lambda batch: layer(batch, training=True)  # noqa: E731
    if compiled != "eager":
        step = training_call(layer, jit_compile=compiled == "xla")
    for batch in batches:
        step(batch)
    codebook, cluster_size, embedding_sum = _numpy_ema_steps(initial, batches, 0.9, 1e-3)
    np.testing.assert_allclose(to_numpy(layer.ema_cluster_size), cluster_size, rtol=1e-5)
    np.testing.assert_allclose(to_numpy(layer.ema_embedding_sum), embedding_sum, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(to_numpy(layer.codebook), codebook, rtol=1e-4, atol=1e-6)
    assert to_numpy(layer.ema_steps) == 3


def test_inference_changes_no_weight():
    layer = _layer()
    layer(np.ones((2, 3), "float32"), training=True)
    before = [to_numpy(w).copy() for w in layer.weights]
    layer(np.random.default_rng(1).normal(size=(8, 3)).astype("float32"), training=False)
    layer(np.random.default_rng(2).normal(size=(8, 3)).astype("float32"))
    for old, weight in zip(before, layer.weights):
        np.testing.assert_array_equal(to_numpy(weight), old)


def test_codebook_is_not_trained_by_gradients_and_only_commitment_loss_is_added():
    layer = _layer()
    assert layer.trainable_weights == []
    assert all(w.dtype == "float32" for w in layer.weights)
    x_np = np.random.default_rng(3).normal(size=(5, 3)).astype("float32")
    codebook = to_numpy(layer.codebook)
    ((loss, loss_of_x, _),) = losses_and_gradients(layer, x_np)
    codes = ((x_np[:, None] - codebook[None]) ** 2).sum(-1).argmin(1)
    e = codebook[codes]
    np.testing.assert_allclose(loss, 0.25 * ((x_np - e) ** 2).mean(), rtol=1e-6)
    np.testing.assert_allclose(loss_of_x, 0.25 * 2 * (x_np - e) / x_np.size, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(decay=1.0), r"decay \(gamma\) in \[0, 1\). Received: decay \(gamma\)=1.0"),
        (dict(decay=-0.1), r"decay \(gamma\) in \[0, 1\). Received: decay \(gamma\)=-0.1"),
        (dict(epsilon=0), r"epsilon in \(0, inf\). Received: epsilon=0"),
    ],
)
def test_bad_arguments_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match="VectorQuantizerEMA expects " + message):
        VectorQuantizerEMA(8, 4, **kwargs)


def test_the_layer_harness(tmp_path):
    run_layer_test(
        VectorQuantizerEMA, dict(num_embeddings=8, embedding_dim=3, decay=0.95, epsilon=1e-4), (2, 3, 3, 3),
        expected_output_shape=(2, 3, 3, 3), expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=4,  # codebook, EMA cluster size, sum and steps
        jit_compile=True, tmp_path=tmp_path,
    )


def test_config_round_trip_gives_identical_outputs_and_updates():
    layer = _layer(decay=0.95, epsilon=1e-4)
    clone = VectorQuantizerEMA.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    clone.build((None, 3))
    clone.set_weights(layer.get_weights())
    x = np.random.default_rng(4).normal(size=(7, 3)).astype("float32")
    np.testing.assert_array_equal(to_numpy(clone(x, training=True)), to_numpy(layer(x, training=True)))
    np.testing.assert_array_equal(to_numpy(clone.codebook), to_numpy(layer.codebook))


MIRRORED_SCRIPT = """
from vq_keras.layers import VectorQuantizerEMA


batch = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
initial = np.random.default_rng(1).normal(size=(5, 4)).astype("float32")

single = VectorQuantizerEMA(5, 4, decay=0.5)
single.build((None, 4)); single.codebook.assign(initial)
single(batch, training=True)

with strategy.scope():
    mirrored = VectorQuantizerEMA(5, 4, decay=0.5)
    mirrored.build((None, 4)); mirrored.codebook.assign(initial)
dataset = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(batch).unbatch().batch(8))
step = tf.function(lambda x: mirrored(x, training=True))
for x in dataset:
    strategy.run(step, args=(x,))
assert_replicas_equal(strategy, mirrored.codebook, single.codebook.numpy(), atol=1e-6)
np.testing.assert_allclose(mirrored.ema_cluster_size.numpy(), single.ema_cluster_size.numpy(), rtol=1e-6)
print("replicas agree")
"""


@pytest.mark.large
@pytest.mark.skipif(BACKEND != "tensorflow", reason="tf.distribute's replicas: TensorFlow only")
def test_statistics_are_summed_across_replicas():
    assert "replicas agree" in run_on_two_cpus(MIRRORED_SCRIPT)
