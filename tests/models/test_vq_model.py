import numpy as np
import pytest
import tensorflow as tf

from vq_keras.models import VQModel
from vq_keras.zoo import VQVAE

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
    features = model.pre_quantizers[0](model.encoders[0](x - 0.5)).numpy()
    codebook = model.quantizer.codebook.numpy()
    codes = _numpy_nearest(features, codebook)
    quantized = codebook[codes].reshape(features.shape)
    reconstruction = model.decoder(quantized).numpy() + 0.5
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
    before = [w.numpy().copy() for w in model.weights]
    model.test_on_batch(x)
    for old, weight in zip(before, model.weights):
        np.testing.assert_array_equal(weight.numpy(), old)
    model.train_on_batch(x)
    moved = [not np.array_equal(old, w.numpy()) for old, w in zip(before, model.weights) if w.trainable]
    assert all(moved), [w.path for w, m in zip(model.trainable_weights, moved) if not m]


def test_ema_model_updates_codebook_in_train_step_only():
    model = VQVAE(quantizer="ema", **TINY)
    model.build((None, 16, 16, 3))
    model.compile()
    codebook = model.quantizer.codebook.numpy().copy()
    model.test_on_batch(_images())
    np.testing.assert_array_equal(model.quantizer.codebook.numpy(), codebook)
    model.train_on_batch(_images())
    assert not np.array_equal(model.quantizer.codebook.numpy(), codebook)
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
    codes = [model.encode(first).numpy(), model.encode(second).numpy()]
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
    codes = model.encode(x).numpy()  # the first step's forward pass, before the update
    history = model.fit(x, batch_size=8, epochs=1, verbose=0).history
    usage, dead = _usage_of([codes])
    np.testing.assert_allclose(history["epoch_codebook_usage"], [usage])
    assert history["epoch_dead_codes"] == [dead]
    np.testing.assert_array_equal(model.code_usage[0].counts().numpy(), np.bincount(codes.ravel(), minlength=32))
