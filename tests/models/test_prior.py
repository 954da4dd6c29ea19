"""The prior base class: a network that is not a PixelCNN gets training, log_prob,
both sampling methods, HierarchicalPrior and generate from it alone."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from tests.backend import to_numpy

from vq_keras.models import AutoregressivePrior
from vq_keras.models.prior import filter_logits
from tests.presets import TINY_PRIORS
from vq_keras.zoo import PRIORS, VQVAE, HierarchicalPrior, PixelCNNPrior, generate

pytestmark = pytest.mark.backends

K = 6  # codes


class PreviousCodePrior(AutoregressivePrior):
    """p(code at p | code at p - 1) in raster order: a table of logits per previous
    code (row K: the first position). A network of one lookup, on the base alone."""

    def __init__(self, num_embeddings, cached=True, **kwargs):
        super().__init__(num_embeddings=num_embeddings, **kwargs)
        self.table = keras.layers.Embedding(num_embeddings + 1, num_embeddings, name="table")
        self.cached = cached

    def build(self, *shapes):
        self.table.build((None,))

    def call(self, codes, labels=None, condition=None, training=None):
        shape = ops.shape(codes)
        flat = ops.reshape(codes, (shape[0], -1))
        previous = ops.concatenate([ops.full((shape[0], 1), self.num_embeddings, "int32"), flat[:, :-1]], axis=1)
        return ops.reshape(self.table(previous), (shape[0], shape[1], shape[2], self.num_embeddings))

    def cached_sampler(self, num, height, width, labels, condition):
        if not self.cached:
            return super().cached_sampler(num, height, width, labels, condition)

        def step(state, codes, position):
            flat = ops.reshape(codes, (ops.shape(codes)[0], -1))
            previous = ops.where(position > 0, flat[:, ops.maximum(position - 1, 0)], self.num_embeddings)
            return self.table(previous), state

        return (), step


def _chains(num, height, width, seed=0):
    """Code grids where each code is the one before it (raster order) plus 1, mod K."""
    start = np.random.default_rng(seed).integers(0, K, (num, 1))
    return ((start + np.arange(height * width)) % K).reshape(num, height, width).astype("int32")


def _log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def test_log_prob_against_a_numpy_recomputation():
    prior = PreviousCodePrior(K)
    prior.build_if_needed()
    codes = _chains(3, 2, 3)
    table = _log_softmax(to_numpy(prior.table.embeddings))
    flat = codes.reshape(3, -1)
    previous = np.concatenate([np.full((3, 1), K), flat[:, :-1]], axis=1)
    expected = table[previous, flat].sum(axis=1)
    np.testing.assert_allclose(to_numpy(prior.log_prob(codes)), expected, rtol=1e-5)


def test_one_train_step_against_a_numpy_recomputation_of_the_loss_and_the_sgd_update():
    # Keras' own train step (either backend): the loss logged is the mean cross-entropy of the
    # codes, and SGD moves the table by -lr times its gradient, (softmax - one_hot) per lookup.
    prior, learning_rate = PreviousCodePrior(K), 0.5
    prior.compile(optimizer=keras.optimizers.SGD(learning_rate))
    prior.build_if_needed()
    table = to_numpy(prior.table.embeddings).copy()
    codes = _chains(4, 2, 3, seed=3)
    flat = codes.reshape(4, -1)
    previous = np.concatenate([np.full((4, 1), K), flat[:, :-1]], axis=1)
    log_p = _log_softmax(table[previous])  # (4, 6, K)
    nll = -np.take_along_axis(log_p, flat[..., None], axis=-1)[..., 0]
    gradient = np.zeros_like(table)
    np.add.at(gradient, previous, (np.exp(log_p) - np.eye(K)[flat]) / flat.size)
    logs = prior.fit({"codes": codes}, batch_size=4, epochs=1, verbose=0).history
    np.testing.assert_allclose(logs["loss"][0], nll.mean(), rtol=1e-5)
    np.testing.assert_allclose(logs["bits_per_code"][0], nll.mean() / np.log(2), rtol=1e-5)
    np.testing.assert_allclose(to_numpy(prior.table.embeddings), table - learning_rate * gradient, atol=1e-6)


def test_fit_learns_and_both_sampling_methods_draw_the_learned_chains():
    prior = PreviousCodePrior(K, grid_shape=(3, 4))
    prior.compile(optimizer=keras.optimizers.Adam(0.1))
    data = tf.data.Dataset.from_tensor_slices({"codes": _chains(64, 3, 4)}).batch(16)
    before = prior.evaluate(data, verbose=0, return_dict=True)
    prior.fit(data, epochs=30, verbose=0)
    after = prior.evaluate(data, verbose=0, return_dict=True)
    assert before["bits_per_code"] > 2.4 and after["bits_per_code"] < 0.5 and after["accuracy"] > 0.9
    for method in ("cached", "full"):
        codes = to_numpy(prior.sample(8, seed=1, temperature=0.1, method=method)).reshape(8, -1)
        np.testing.assert_array_equal((codes[:, 1:] - codes[:, :-1]) % K, 1)
    for seed in range(3):
        cached = to_numpy(prior.sample(8, seed=seed, temperature=2.0))
        np.testing.assert_array_equal(cached, to_numpy(prior.sample(8, seed=seed, temperature=2.0, method="full")))


def test_a_prior_without_a_cached_sampler_samples_with_the_full_one():
    prior = PreviousCodePrior(K, cached=False, grid_shape=(2, 2))
    assert tuple(prior.sample(3, seed=0, method="full").shape) == (3, 2, 2)
    with pytest.raises(NotImplementedError, match='PreviousCodePrior has no cached sampler; sample with method="full".'):
        prior.sample(3, seed=0)


def test_hierarchical_prior_and_generate_take_any_prior():
    autoencoder = VQVAE(num_embeddings=K, num_hiddens=16, num_residual_hiddens=8, num_residual_layers=1, embedding_dim=8)
    autoencoder.build_if_needed()
    top = PreviousCodePrior(K, grid_shape=(8, 8))
    images = generate(autoencoder, top, 3, seed=0)
    assert tuple(images.shape) == (3, 32, 32, 3)
    np.testing.assert_allclose(to_numpy(images), to_numpy(generate(autoencoder, top, 3, seed=0, method="full")))
    bottom = PixelCNNPrior(K, num_layers=1, num_filters=4, condition_num_embeddings=K, condition_upsampling=2)
    hierarchical = HierarchicalPrior([PreviousCodePrior(K, grid_shape=(2, 3)), bottom])
    top_codes, bottom_codes = hierarchical.sample(2, seed=4)
    assert tuple(top_codes.shape) == (2, 2, 3) and tuple(bottom_codes.shape) == (2, 4, 6)


def _filtered_by_numpy(logits, top_k, top_p):
    """Which codes the filters keep, row by row: the top_k largest, then the most probable
    whose probabilities (renormalised over those) first reach top_p."""
    kept = np.zeros(logits.shape, bool)
    for row, values in enumerate(logits):
        order = np.argsort(-values, kind="stable")[: top_k or len(values)]
        probabilities = np.exp(values[order] - values[order].max())
        probabilities /= probabilities.sum()
        count = len(order) if top_p is None else int(np.searchsorted(np.cumsum(probabilities), top_p) + 1)
        kept[row, order[: min(count, len(order))]] = True
    return kept


@pytest.mark.parametrize("top_k, top_p", [(1, None), (3, None), (None, 0.5), (None, 0.9), (4, 0.7), (6, None)])
def test_filter_logits_against_a_numpy_recomputation(top_k, top_p):
    logits = np.random.default_rng(0).normal(scale=2.0, size=(16, K)).astype("float32")
    filtered = to_numpy(filter_logits(
        ops.convert_to_tensor(logits), None if top_k is None else ops.convert_to_tensor(top_k, "int32"),
        None if top_p is None else ops.convert_to_tensor(top_p, "float32"),
    ))
    kept = _filtered_by_numpy(logits, top_k, top_p)
    np.testing.assert_array_equal(np.isfinite(filtered), kept)
    np.testing.assert_array_equal(filtered[kept], logits[kept])


def test_filters_given_their_off_values_leave_the_logits_unchanged_bit_for_bit():
    logits = ops.convert_to_tensor(np.random.default_rng(1).normal(size=(8, K)).astype("float32"))
    off = to_numpy(filter_logits(logits, ops.convert_to_tensor(0, "int32"), ops.convert_to_tensor(1.0, "float32")))
    np.testing.assert_array_equal(off, to_numpy(logits))
    assert filter_logits(logits) is logits


def test_sampling_draws_only_codes_the_filters_keep():
    prior = PreviousCodePrior(K, grid_shape=(2, 3))
    prior.build_if_needed()
    prior.table.embeddings.assign(np.random.default_rng(2).normal(scale=2.0, size=(K + 1, K)).astype("float32"))
    greedy = to_numpy(prior.sample(50, seed=0, grid_shape=(2, 3), top_k=1)).reshape(50, 6)
    np.testing.assert_array_equal(greedy, np.tile(greedy[:1], (50, 1)))  # one most probable chain
    logits = to_numpy(prior.table.embeddings)
    nucleus = to_numpy(prior.sample(200, seed=1, grid_shape=(2, 3), top_p=0.6, temperature=2.0)).reshape(200, 6)
    previous = np.concatenate([np.full((200, 1), K), nucleus[:, :-1]], axis=1)
    allowed = _filtered_by_numpy(logits / 2.0, None, 0.6)
    assert allowed[previous, nucleus].all()
    assert len(np.unique(nucleus)) > 1


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(top_k=0), "top_k to be None (no filter) or an integer in [1, num_embeddings=6]"),
        (dict(top_k=7), "Received: top_k=7"),
        (dict(top_k=2.0), "Received: top_k=2.0"),
        (dict(top_p=0.0), "top_p to be None (no filter) or a number in (0, 1]: draw each code among the most "
         "probable codes whose probabilities sum to top_p (nucleus sampling). Received: top_p=0.0"),
        (dict(top_p=1.5), "Received: top_p=1.5"),
        (dict(top_p=float("nan")), "Received: top_p=nan"),
    ],
)
def test_bad_filters_are_refused(arguments, message):
    prior = PreviousCodePrior(K, grid_shape=(2, 2))
    with pytest.raises(ValueError) as error:
        prior.sample(2, **arguments)
    assert message in str(error.value) and str(error.value).startswith("PreviousCodePrior.sample expects top_")


# ------------------------------------------------------------ classifier-free guidance

CLASSES = 3


class LabelTablePrior(AutoregressivePrior):
    """Every position's logits are one row of a table per label (row CLASSES: no class): a
    class-conditional network whose guided logits NumPy recomputes exactly."""

    def __init__(self, num_embeddings, **kwargs):
        super().__init__(num_embeddings=num_embeddings, **kwargs)
        self.table = keras.layers.Embedding(self.num_label_embeddings, num_embeddings, name="table")

    def build(self, *shapes):
        self.table.build((None,))

    def call(self, codes, labels=None, condition=None, training=None):
        shape = ops.shape(codes)
        return ops.broadcast_to(self.table(labels)[:, None, None], (shape[0], shape[1], shape[2], self.num_embeddings))

    def cached_sampler(self, num, height, width, labels, condition):
        return (), lambda state, codes, position: (self.table(labels), state)


def _label_table_prior(seed=0):
    prior = LabelTablePrior(K, num_classes=CLASSES, label_dropout=0.1, grid_shape=(2, 3))
    prior.build_if_needed()
    prior.table.embeddings.assign(np.random.default_rng(seed).normal(scale=2.0, size=(CLASSES + 1, K)).astype("float32"))
    return prior


@pytest.mark.parametrize("guidance", [0.0, 0.5, 2.0, 5.0])
def test_guided_codes_follow_the_mixed_logits_of_a_numpy_recomputation(guidance):
    prior = _label_table_prior()
    table = to_numpy(prior.table.embeddings)
    mixed = table[CLASSES] + guidance * (table[:CLASSES] - table[CLASSES])  # u + s (c - u), per class
    labels = np.arange(CLASSES, dtype="int32")
    for method in ("cached", "full"):
        greedy = to_numpy(prior.sample(CLASSES, labels=labels, guidance=guidance, top_k=1, method=method))
        np.testing.assert_array_equal(greedy.reshape(CLASSES, -1), np.argmax(mixed, axis=1)[:, None].repeat(6, 1))
    # Drawn, not greedy: the frequencies of 3000 grids' codes match softmax(u + s (c - u)).
    drawn = to_numpy(prior.sample(500, labels=np.full(500, 1, "int32"), guidance=guidance, seed=3))
    expected = np.exp(_log_softmax(mixed[1]))
    np.testing.assert_allclose(np.bincount(drawn.ravel(), minlength=K) / drawn.size, expected, atol=0.03)


def test_guidance_one_draws_the_unguided_codes_and_zero_the_unconditional_ones():
    prior = _label_table_prior(seed=1)
    labels = np.array([0, 1, 2, 0], "int32")
    unguided = to_numpy(prior.sample(4, labels=labels, seed=5))
    np.testing.assert_array_equal(to_numpy(prior.sample(4, labels=labels, seed=5, guidance=1.0)), unguided)
    no_class = to_numpy(prior.sample(4, labels=np.full(4, CLASSES, "int32"), seed=5))
    np.testing.assert_array_equal(to_numpy(prior.sample(4, labels=labels, seed=5, guidance=0.0)), no_class)


def test_label_dropout_replaces_that_fraction_of_the_training_labels_by_no_class():
    prior = _label_table_prior()
    labels = ops.convert_to_tensor(np.arange(20000) % CLASSES, "int32")
    dropped = to_numpy(prior.dropped_labels(labels))
    is_dropped = dropped == CLASSES
    assert 0.09 < is_dropped.mean() < 0.11
    np.testing.assert_array_equal(dropped[~is_dropped], to_numpy(labels)[~is_dropped])  # the others untouched
    without = LabelTablePrior(K, num_classes=CLASSES)
    assert without.dropped_labels(labels) is labels and without.label_seeds is None


def test_training_with_label_dropout_learns_the_no_class_distribution_too():
    prior = LabelTablePrior(K, num_classes=CLASSES, label_dropout=0.3, grid_shape=(1, 1))
    prior.compile(optimizer=keras.optimizers.Adam(0.05))
    labels = np.arange(300) % CLASSES
    codes = labels.reshape(-1, 1, 1).astype("int32")  # class c always has code c
    data = tf.data.Dataset.from_tensor_slices({"codes": codes, "labels": labels.astype("int32")}).batch(30)
    prior.fit(data, epochs=20, verbose=0)
    probabilities = np.exp(_log_softmax(to_numpy(prior.table.embeddings)))
    np.testing.assert_allclose(probabilities[np.arange(CLASSES), np.arange(CLASSES)], 1.0, atol=0.05)
    np.testing.assert_allclose(probabilities[CLASSES, :CLASSES], 1 / CLASSES, atol=0.08)  # the mixture of the classes


@pytest.mark.parametrize(
    "build, sample, message",
    [
        (dict(), dict(guidance=2.0, labels=[0, 1]), "LabelTablePrior.sample: guidance (classifier-free) needs a "
         "class-conditional prior trained with label_dropout > 0, which also models codes without a class; this "
         "LabelTablePrior has num_classes=3, label_dropout=0.0. Received: guidance=2.0. Leave guidance out, or "
         "train with label_dropout (e.g. 0.1)."),
        (dict(label_dropout=0.1), dict(guidance=2.0), "LabelTablePrior.sample: guidance steers each sample towards "
         "its label; pass labels. Received: labels=None, guidance=2.0"),
        (dict(label_dropout=0.1), dict(guidance=-1.0, labels=[0, 1]), "LabelTablePrior.sample expects guidance in "
         "[0, inf). Received: guidance=-1.0"),
        (dict(label_dropout=0.1), dict(guidance=float("inf"), labels=[0, 1]), "LabelTablePrior.sample expects "
         "guidance to be a finite number (in [0, inf)). Received: guidance=inf"),
        (dict(), dict(labels=[0, 3]), "LabelTablePrior expects labels in [0, num_classes=3)."),
    ],
)
def test_guidance_the_prior_cannot_use_is_refused(build, sample, message):
    prior = LabelTablePrior(K, num_classes=CLASSES, grid_shape=(2, 2), **build)
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError)) as error:
        prior.sample(2, **sample)
    assert message in str(error.value)


def test_label_dropout_needs_classes_and_a_rate_below_one():
    with pytest.raises(ValueError, match=r"expects label_dropout=0 without num_classes: it drops class labels, and "
                       r"an unconditional prior has none. Received: label_dropout=0.1, num_classes=None"):
        LabelTablePrior(K, label_dropout=0.1)
    with pytest.raises(ValueError, match=r"expects label_dropout in \[0, 1\). Received: label_dropout=1.0"):
        LabelTablePrior(K, num_classes=CLASSES, label_dropout=1.0)


@pytest.mark.parametrize("kind", sorted(PRIORS))
def test_every_prior_kind_trains_with_label_dropout_and_samples_guided(kind, tmp_path):
    prior = PRIORS[kind](K, grid_shape=(3, 3), num_classes=CLASSES, label_dropout=0.2, **TINY_PRIORS[kind])
    prior.compile(optimizer=keras.optimizers.Adam(1e-2))
    codes = np.random.default_rng(0).integers(0, K, (32, 3, 3)).astype("int32")
    data = {"codes": codes, "labels": (np.arange(32) % CLASSES).astype("int32")}
    prior.fit(tf.data.Dataset.from_tensor_slices(data).batch(16), epochs=2, verbose=0)
    labels = np.array([0, 1, 2, 1], "int32")
    guided = to_numpy(prior.sample(4, labels=labels, seed=2, guidance=3.0))
    if kind != "maskgit":
        np.testing.assert_array_equal(to_numpy(prior.sample(4, labels=labels, seed=2, guidance=3.0, method="full")), guided)
    np.testing.assert_array_equal(prior.sample(4, labels=labels, seed=2, guidance=1.0), prior.sample(4, labels=labels, seed=2))
    no_class = prior.sample(4, labels=np.full(4, CLASSES, "int32"), seed=2)
    np.testing.assert_array_equal(prior.sample(4, labels=labels, seed=2, guidance=0.0), no_class)
    prior.save(tmp_path / "prior.keras")
    loaded = keras.saving.load_model(tmp_path / "prior.keras")
    assert loaded.label_dropout == 0.2
    np.testing.assert_array_equal(to_numpy(loaded.sample(4, labels=labels, seed=2, guidance=3.0)), guided)


def test_a_hierarchical_prior_guides_the_levels_trained_with_label_dropout():
    top = PRIORS["transformer"](K, grid_shape=(2, 2), num_classes=CLASSES, label_dropout=0.1, **TINY_PRIORS["transformer"])
    bottom = PixelCNNPrior(
        K, num_classes=CLASSES, condition_num_embeddings=K, condition_upsampling=2, **TINY_PRIORS["pixelcnn"]
    )
    hierarchical = HierarchicalPrior([top, bottom])
    labels = np.array([0, 2], "int32")
    top_codes, bottom_codes = hierarchical.sample(2, labels=labels, seed=1, guidance=2.0)
    np.testing.assert_array_equal(top_codes, top.sample(2, labels=labels, seed=(1, 0), guidance=2.0))
    np.testing.assert_array_equal(bottom_codes, bottom.sample(2, labels=labels, condition=top_codes, seed=(1, 1)))
    unguided = HierarchicalPrior([type(top).from_config({**top.get_config(), "label_dropout": 0.0}), bottom])
    with pytest.raises(ValueError, match="HierarchicalPrior.sample: guidance .classifier-free. needs a class-conditional"):
        unguided.sample(2, labels=labels, guidance=2.0)
