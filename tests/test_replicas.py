"""Training under MirroredStrategy over two logical CPUs equals training on one
device with the same global batches: weights, codebooks, EMA statistics, code
usage and logged metrics. Each run is a subprocess, since logical devices must
be configured before TensorFlow starts."""

import pytest

from tests.mirrored import run_on_two_cpus

pytestmark = pytest.mark.large  # a TensorFlow subprocess per run

# SGD, not Adam: Adam divides by the gradient's scale, so it would hide
# gradients that are N times too large; SGD steps are proportional to them.
MIRRORED_SCRIPT = """
import keras
from vq_keras.zoo import VQVAE, PixelCNNPrior

rng = np.random.default_rng(0)
images = rng.uniform(size=(20 * 16, 8, 8, 3)).astype("float32")
codes = rng.integers(0, 16, size=(5 * 16, 4, 4)).astype("int32")

def vqvae():
    return VQVAE(num_hiddens=8, num_residual_hiddens=4, num_residual_layers=1, embedding_dim=4,
                 num_embeddings=16, decay=0.9, data_variance=0.08)

def prior():
    return PixelCNNPrior(num_embeddings=16, num_layers=2, num_filters=8, kernel_size=3)

def train(make, strategy, data, steps, initial):
    with strategy.scope():
        model = make()
        model.build_if_needed()
        if initial is not None:
            model.set_weights(initial)
        model.compile(optimizer=keras.optimizers.SGD(0.2), jit_compile=False)
    start = model.get_weights()
    dataset = tf.data.Dataset.from_tensor_slices(data).batch(16)  # the global batch, same order
    logs = model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0).history
    return model, start, logs

for make, data, steps in ((vqvae, images, 20), (prior, codes, 5)):
    single, start, single_logs = train(make, tf.distribute.get_strategy(), data, steps, None)
    mirrored, _, mirrored_logs = train(make, strategy, data, steps, start)
    moved = max(np.abs(a - b).max() for a, b in zip(start, single.get_weights()))
    assert moved > 1e-2, f"training barely moved the weights ({moved})"
    worst = 0.0
    for one, many in zip(single.weights, mirrored.weights):
        assert one.path.split("/", 1)[1] == many.path.split("/", 1)[1]  # vqvae/... and vqvae_1/...
        worst = max(worst, assert_replicas_equal(strategy, many, np.asarray(one), name=one.path))
    for name, values in single_logs.items():
        np.testing.assert_allclose(mirrored_logs[name], values, rtol=1e-5, err_msg=name)
    if make is vqvae:
        np.testing.assert_array_equal(mirrored.code_usage[0].result(), single.code_usage[0].result())
    print(f"{make.__name__}: {len(single.weights)} weights agree (max difference {worst:.1e})")
"""


def test_mirrored_over_two_cpus_equals_one_device():
    output = run_on_two_cpus(MIRRORED_SCRIPT)
    assert "vqvae: " in output and "prior: " in output, output
