import keras
import numpy as np
from keras import ops

from tests.backend import to_numpy

SMALL = dict(num_hiddens=32, num_residual_hiddens=16, num_residual_layers=1, embedding_dim=16, num_embeddings=128)


def train_on_real_images(model_class, steps):
    """Fits a small `model_class` on the bundled real CIFAR-10 sample: (validation logs before, after)."""
    from training.data import load_image_data

    data = load_image_data("cifar10_sample", batch_size=32, seed=0)
    model = model_class(data_variance=data.data_variance, **SMALL)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    before = model.evaluate(data.validation, verbose=0, return_dict=True)
    model.fit(data.train, steps_per_epoch=steps, epochs=1, verbose=0)
    return before, model.evaluate(data.validation, verbose=0, return_dict=True)


def prior_inputs(prior, num, height, width, seed=0):
    """Random codes, labels and condition for `prior`, as tensors."""
    rng = np.random.default_rng(seed)
    tensor = lambda values: ops.convert_to_tensor(values, "int32")  # noqa: E731
    codes = tensor(rng.integers(0, prior.num_embeddings, (num, height, width)))
    labels = None if prior.num_classes is None else tensor(rng.integers(0, prior.num_classes, num))
    condition = None
    if prior.condition_num_embeddings is not None:
        u = prior.condition_upsampling
        condition = tensor(rng.integers(0, prior.condition_num_embeddings, (num, height // u, width // u)))
    return codes, labels, condition


def cached_logits(prior, codes, labels, condition):
    """The cached sampler's logits at every position, fed the codes before it (teacher forcing)."""
    num, height, width = codes.shape
    state, step = prior.cached_sampler(num, height, width, labels, condition)
    logits = []
    for position in range(height * width):
        position_logits, state = step(state, codes, ops.convert_to_tensor(position, "int32"))
        logits.append(ops.convert_to_numpy(position_logits))
    return np.stack(logits, axis=1).reshape(num, height, width, -1)


def spread(prior, seed=0):
    """The prior with random biases and 5x larger logits: at initialisation the logits are all
    close to 0, so draws would hardly depend on the layers or the temperature."""
    prior.build_if_needed()
    rng = np.random.default_rng(seed)
    for weight in prior.weights:
        if weight.path.endswith("bias"):
            weight.assign(rng.normal(scale=0.5, size=weight.shape).astype("float32"))
    output = prior.head[-1] if isinstance(prior.head, list) else prior.head
    output.kernel.assign(output.kernel * 5.0)
    return prior


def assert_cached_and_full_draw_the_same(prior, num, grid_shape, labels, condition):
    """Cached and full sampling draw the same codes for three seeds, and the draws are not degenerate."""
    for seed in range(3):
        arguments = dict(labels=labels, condition=condition, temperature=3.0, seed=seed, grid_shape=grid_shape)
        cached = to_numpy(prior.sample(num, method="cached", **arguments))
        np.testing.assert_array_equal(cached, to_numpy(prior.sample(num, method="full", **arguments)))
    assert len(np.unique(cached)) > 3
    return cached
