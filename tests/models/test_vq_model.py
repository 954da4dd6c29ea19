import numpy as np
import pytest
import tensorflow as tf

from vq_keras.models import VQModel
from vq_keras.zoo import VQVAE, VQVAE2
from tests.backend import BACKEND, compiled, tensorflow_only, to_numpy

pytestmark = pytest.mark.backends

TINY = dict(num_hiddens=16, num_residual_hiddens=8, num_residual_layers=1, embedding_dim=4, num_embeddings=32)


def _images(n=8, size=16, seed=0):
    return np.random.default_rng(seed).random((n, size, size, 3)).astype("float32")


def _numpy_nearest(features, codebook):
    flat = features.reshape(-1, codebook.shape[1]).astype(np.float64)
    return ((flat[:, None] - codebook[None]) ** 2).sum(-1).argmin(1)


def test_train_step_loss_and_metrics_match_a_recomputation():
    model = VQVAE(quantizer="vq", commitment_cost=0.3, data_variance=0.05, **TINY)
    model.build((None, 16, 16, 3))
    model.compile()
    x = _images()
    features = to_numpy(model.pre_quantizers[0](model.encoders[0](x - 0.5)))
    codebook = to_numpy(model.quantizer.codebook)
    codes = _numpy_nearest(features, codebook)
    quantized = codebook[codes].reshape(features.shape)
    reconstruction = to_numpy(model.decoder(quantized)) + 0.5
    distortion = ((features - quantized) ** 2).mean()
    counts = np.bincount(codes, minlength=32) / codes.size
    nonzero = counts[counts > 0]

    logs = model.train_on_batch(x, return_dict=True)

    expected_reconstruction = ((reconstruction - x) ** 2).mean() / 0.05
    np.testing.assert_allclose(logs["reconstruction_loss"], expected_reconstruction, rtol=1e-4)
    np.testing.assert_allclose(logs["vq_loss"], 1.3 * distortion, rtol=1e-4)
    np.testing.assert_allclose(logs["loss"], expected_reconstruction + 1.3 * distortion, rtol=1e-4)
    np.testing.assert_allclose(logs["perplexity"], np.exp(-(nonzero * np.log(nonzero)).sum()), rtol=1e-4)
    np.testing.assert_allclose(logs["codebook_usage"], (counts > 0).mean(), rtol=1e-6)


def test_train_step_moves_every_trainable_weight_and_test_step_none():
    model = VQVAE(quantizer="vq", **TINY)
    model.build((None, 16, 16, 3))
    model.compile()
    x = _images()
    before = [to_numpy(w).copy() for w in model.weights]
    model.test_on_batch(x)
    for old, weight in zip(before, model.weights):
        np.testing.assert_array_equal(to_numpy(weight), old)
    model.train_on_batch(x)
    moved = [not np.array_equal(old, to_numpy(w)) for old, w in zip(before, model.weights) if w.trainable]
    assert all(moved), [w.path for w, m in zip(model.trainable_weights, moved) if not m]


def test_ema_model_updates_codebook_in_train_step_only():
    model = VQVAE(quantizer="ema", **TINY)
    model.build((None, 16, 16, 3))
    model.compile()
    codebook = to_numpy(model.quantizer.codebook).copy()
    model.test_on_batch(_images())
    np.testing.assert_array_equal(to_numpy(model.quantizer.codebook), codebook)
    model.train_on_batch(_images())
    assert not np.array_equal(to_numpy(model.quantizer.codebook), codebook)
    assert all(w is not model.quantizer.codebook for w in model.trainable_weights)


def test_metric_names():
    model = VQVAE(**TINY)
    assert [m.name for m in model.metrics] == [
        "loss", "reconstruction_loss", "vq_loss", "perplexity", "codebook_usage", "code_usage"
    ]
    assert sorted(model.code_usage[0].result()) == ["epoch_codebook_usage", "epoch_dead_codes"]


def test_accepts_image_label_pairs_and_dicts():
    model = VQVAE(**TINY)
    model.build((None, 16, 16, 3))
    model.compile()
    x = _images()
    labels = np.zeros((8,), "int64")
    dataset = tf.data.Dataset.from_tensor_slices((x, labels)).batch(4)
    assert np.isfinite(model.evaluate(dataset, verbose=0, return_dict=True)["loss"])
    dataset = tf.data.Dataset.from_tensor_slices({"image": x}).batch(4)
    assert np.isfinite(model.evaluate(dataset, verbose=0, return_dict=True)["loss"])


def test_bad_data_variance_is_a_clear_error():
    with pytest.raises(ValueError, match=r"VQVAE expects data_variance in \(0, inf\). Received: data_variance=0"):
        VQVAE(data_variance=0)


@pytest.mark.skipif(BACKEND != "torch", reason="torch.compile is PyTorch's")
def test_a_compiled_step_is_refused_on_pytorch_with_the_reason():
    with pytest.raises(ValueError, match=r"VQVAE trains eagerly on the PyTorch backend: .* Received: jit_compile=True"):
        VQVAE(**TINY).compile(jit_compile=True)
    VQVAE(**TINY).compile(jit_compile=False)


def test_base_class_is_abstract_about_levels():
    with pytest.raises(NotImplementedError):
        VQModel().quantizers


def _usage_of(codes, num_embeddings=32):
    counts = np.bincount(np.concatenate([c.ravel() for c in codes]), minlength=num_embeddings)
    return (counts > 0).mean(), (counts == 0).sum()


def test_epoch_code_usage_covers_the_whole_evaluation_and_restarts_with_each():
    model = VQVAE(quantizer="vq", **TINY)
    model.compile()
    first, second = _images(seed=0), _images(seed=1)
    codes = [to_numpy(model.encode(first)), to_numpy(model.encode(second))]
    logs = model.evaluate(tf.data.Dataset.from_tensor_slices(np.concatenate([first, second])).batch(8),
                          verbose=0, return_dict=True)
    usage, dead = _usage_of(codes)
    assert 0 < usage < 1
    np.testing.assert_allclose(logs["epoch_codebook_usage"], usage)
    assert logs["epoch_dead_codes"] == dead
    logs = model.evaluate(first, batch_size=8, verbose=0, return_dict=True)
    np.testing.assert_allclose(logs["epoch_codebook_usage"], _usage_of(codes[:1])[0])


def test_epoch_code_usage_of_training_counts_the_forward_pass_codes():
    model = VQVAE(quantizer="vq", **TINY)
    model.compile()
    x = _images()
    codes = to_numpy(model.encode(x))  # the first step's forward pass, before the update
    history = model.fit(x, batch_size=8, epochs=1, verbose=0).history
    usage, dead = _usage_of([codes])
    np.testing.assert_allclose(history["epoch_codebook_usage"], [usage])
    assert history["epoch_dead_codes"] == [dead]
    np.testing.assert_array_equal(to_numpy(model.code_usage[0].counts()), np.bincount(codes.ravel(), minlength=32))


# Images at the API boundary: float in [0, 1], finite; never converted or clipped.

MODELS = [VQVAE, VQVAE2]
OUT_OF_RANGE = (
    r"{name} expects float images scaled to \[0, 1\] \(values are never clipped\). Received: values from "
    r"{low} to {high}. Divide images in 0..255 by 255 first \(e.g. `images / 255.0`\)."
)
IN_GRAPH = r"{name} expects finite float images scaled to \[0, 1\] \(values are never clipped\). Divide images"


def _compiled(cls, **compile_kwargs):
    model = cls(**TINY)
    model.build((None, 16, 16, 3))
    model.compile(**compile_kwargs)
    return model


def _eager_entry_points(model):
    """Every public way images reach the model, eagerly (fit/evaluate/predict check arrays in full)."""
    return {
        "encode": model.encode,
        "reconstruct": model.reconstruct,
        "__call__": model,
        "predict": lambda x: model.predict(x, verbose=0),
        "fit": lambda x: model.fit(x, batch_size=4, epochs=1, verbose=0),
        "evaluate": lambda x: model.evaluate(x, batch_size=4, verbose=0),
        "fit validation_data": lambda x: model.fit(_images(), validation_data=(x,), epochs=1, verbose=0),
    }


@pytest.mark.parametrize("cls", MODELS)
def test_float_images_in_0_255_are_refused_by_every_entry_point_and_nothing_is_trained(cls):
    model = _compiled(cls)
    x = _images(4)
    x[1, 2, 3, 0], x[2, 0, 0, 1] = 0.0, 1.0
    weights = [to_numpy(w).copy() for w in model.weights]
    message = OUT_OF_RANGE.format(name=cls.__name__, low="0", high="255")
    for entry, function in _eager_entry_points(model).items():
        with pytest.raises(ValueError, match=message):
            function(x * 255.0)
        for old, weight in zip(weights, model.weights):
            np.testing.assert_array_equal(to_numpy(weight), old, err_msg=entry)


@pytest.mark.parametrize("cls", MODELS)
def test_nan_and_infinite_images_are_refused_naming_the_images(cls):
    model = _compiled(cls)
    x = _images(4)
    x[1, 0, 0, 0], x[3, 5, 5, 2], x[3, 6, 6, 2] = np.nan, np.nan, np.inf
    message = (
        f"{cls.__name__} expects finite float images in [0, 1]. Received: 2 NaN and 1 infinite value(s) in "
        "2 image(s) (batch index 1, 3). Drop or repair those images (a NaN often comes from a division by "
        "zero in preprocessing)."
    )
    for entry, function in _eager_entry_points(model).items():
        with pytest.raises(ValueError) as error:
            function(x)
        assert str(error.value) == message, entry


@pytest.mark.parametrize("cls", MODELS)
def test_images_exactly_0_and_1_are_accepted(cls):
    model = _compiled(cls)
    x = np.concatenate([np.zeros((2, 16, 16, 3), "float32"), np.ones((2, 16, 16, 3), "float32")])
    np.testing.assert_array_equal(to_numpy(model.encode(x)[-1]), to_numpy(compiled(model.encode)(x)[-1]))
    assert np.isfinite(model.fit(x, batch_size=4, epochs=1, verbose=0).history["loss"][0])


@pytest.mark.parametrize("cls", MODELS)
def test_integer_images_are_refused_by_fit_evaluate_and_predict_as_by_encode(cls):
    model = _compiled(cls)
    uint8 = (_images(4) * 255).astype("uint8")
    message = rf"{cls.__name__} expects float32 images scaled to \[0, 1\]. Received: dtype=uint8. Divide uint8"
    datasets = {
        "dataset": tf.data.Dataset.from_tensor_slices(uint8).batch(4),
        "dataset of pairs": tf.data.Dataset.from_tensor_slices((uint8, np.zeros(4, "int64"))).batch(4),
        "dataset of dicts": tf.data.Dataset.from_tensor_slices({"image": uint8}).batch(4),
    }
    for entry, function in _eager_entry_points(model).items():
        with pytest.raises(TypeError, match=message):
            function(uint8)
    for data in datasets.values():
        for function in (model.fit, model.evaluate, model.predict):
            with pytest.raises(TypeError, match=message):
                function(data, verbose=0)


@pytest.mark.parametrize("cls", [VQVAE, pytest.param(VQVAE2, marks=pytest.mark.large)])  # VQVAE2: the slowest
@tensorflow_only("in-graph assertions (a JAX trace has none; XLA drops them)")
def test_out_of_range_images_fail_traced_calls_and_every_compiled_step_not_only_the_first(cls):
    model = _compiled(cls, jit_compile=False)
    bad = _images(4) * 255.0
    with pytest.raises(tf.errors.InvalidArgumentError, match=IN_GRAPH.format(name=cls.__name__)):
        tf.function(model.encode)(bad)
    with pytest.raises(tf.errors.InvalidArgumentError, match=IN_GRAPH.format(name=cls.__name__)):
        tf.function(model.reconstruct)(bad)
    later_batch = tf.data.Dataset.from_tensor_slices(np.concatenate([_images(8), bad])).batch(4)  # the 3rd is bad
    for function in (model.fit, model.evaluate, model.predict):
        with pytest.raises(tf.errors.InvalidArgumentError, match=IN_GRAPH.format(name=cls.__name__)):
            function(later_batch, verbose=0)


@pytest.mark.parametrize("cls", MODELS)
@pytest.mark.large
@pytest.mark.skipif(BACKEND == "torch", reason="no compiled step on PyTorch (refused: see the test above)")
def test_under_xla_which_drops_assertions_the_dataset_is_checked_in_its_input_pipeline(cls):
    model = _compiled(cls, jit_compile=True)
    assert model.jit_compile
    bad = _images(4)
    bad[3, 0, 0, 0] = np.nan
    later_batch = tf.data.Dataset.from_tensor_slices((np.concatenate([_images(8), bad]), np.zeros(12))).batch(4)
    for function in (model.fit, model.evaluate, model.predict):
        with pytest.raises(tf.errors.InvalidArgumentError, match=IN_GRAPH.format(name=cls.__name__)):
            function(later_batch, verbose=0)
    with pytest.raises(tf.errors.InvalidArgumentError, match=IN_GRAPH.format(name=cls.__name__)):
        model.fit(_images(4), validation_data=later_batch, epochs=1, verbose=0)
    good = tf.data.Dataset.from_tensor_slices(_images(8)).batch(4)
    assert np.isfinite(model.fit(good, epochs=1, verbose=0).history["loss"][0])


@pytest.mark.parametrize("cls", MODELS)
def test_a_refused_first_batch_leaves_the_weights_as_they_were(cls):
    # Keras' JAX trainer detaches the weights during evaluate and predict (see _weights_kept_on_error).
    model = _compiled(cls, jit_compile=BACKEND != "torch")
    x = _images(4)
    before = [to_numpy(w).copy() for w in model.weights]
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    first_bad = tf.data.Dataset.from_tensor_slices(np.concatenate([bad, x])).batch(4)
    if BACKEND == "torch":  # the eager step checks the values themselves, in the eager check's words
        error, words = ValueError, rf"{cls.__name__} expects finite float images in \[0, 1\]"
    else:
        error, words = tf.errors.InvalidArgumentError, IN_GRAPH.format(name=cls.__name__)
    for function in (model.evaluate, model.predict):
        with pytest.raises(error, match=words):
            function(first_bad, verbose=0)
        for weight, old in zip(model.weights, before):
            np.testing.assert_array_equal(to_numpy(weight), old, err_msg=weight.path)
    assert np.isfinite(to_numpy(model.reconstruct(x))).all()
