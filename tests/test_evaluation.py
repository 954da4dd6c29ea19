import math

import numpy as np
import pytest
import tensorflow as tf

from training.data.pipeline import SAMPLE_PATH
from vq_keras import evaluation
from vq_keras.evaluation import evaluate
from vq_keras.zoo import VQVAE, VQVAE2, HierarchicalPrior, MaskGITPrior, PixelCNNPrior, TransformerPrior


@pytest.fixture(scope="module")
def sample():
    """The bundled real CIFAR-10 sample: the training pixel variance and the test images in [0, 1]."""
    with np.load(SAMPLE_PATH) as arrays:
        train, test = arrays["train_images"], arrays["test_images"]
    return (train.astype(np.float64) / 255.0).var(), (test / 255.0).astype(np.float32)


def batches(images, size):
    return [images[start:start + size] for start in range(0, len(images), size)]


def test_figures_match_a_numpy_recomputation(sample):
    variance, images = sample
    model = VQVAE(num_hiddens=8, num_residual_hiddens=4, num_residual_layers=1, embedding_dim=4, num_embeddings=16)
    prior = PixelCNNPrior(16, num_layers=1, num_filters=8, grid_shape=(8, 8))
    results = evaluate(model, batches(images, 64), variance, prior=prior)  # 300 images: a short last batch

    exact = images.astype(np.float64)
    output = np.asarray(model(images), np.float64)
    clipped = np.clip(output, 0.0, 1.0)
    psnr = 10 * np.log10(1.0 / ((clipped - exact) ** 2).mean(axis=(1, 2, 3)))
    ssim = tf.image.ssim(tf.constant(images), tf.constant(clipped, tf.float32), max_val=1.0)
    codes = np.asarray(model.encode(images))
    counts = np.bincount(codes.ravel(), minlength=model.num_embeddings)
    frequencies = counts[counts > 0] / counts.sum()
    nats = -np.asarray(prior.log_prob(codes)).sum() / codes.size

    assert results["mse_over_variance"] == pytest.approx(((output - exact) ** 2).mean() / variance, rel=1e-4)
    assert results["psnr"] == pytest.approx(psnr.mean(), rel=1e-4)
    assert results["ssim"] == pytest.approx(float(tf.reduce_mean(ssim)), rel=1e-4)
    assert results["num_images"] == len(images) and results["training_pixel_variance"] == variance
    assert list(results["levels"]) == ["codes"]
    level = results["levels"]["codes"]
    assert level["perplexity"] == pytest.approx(np.exp(-(frequencies * np.log(frequencies)).sum()), rel=1e-4)
    assert level["codebook_usage"] == pytest.approx((counts > 0).mean())
    assert level["num_embeddings"] == 16
    assert level["bits_per_code"] == pytest.approx(nats / math.log(2), rel=1e-4)


def test_a_vqvae2_and_its_hierarchical_prior_give_bits_per_level(sample):
    variance, images = sample
    model = VQVAE2(num_hiddens=8, num_residual_hiddens=4, num_residual_layers=1, embedding_dim=4, num_embeddings=16)
    prior = HierarchicalPrior.from_autoencoder(model, num_layers=1, num_filters=8, num_attention_layers=0)
    results = evaluate(model, batches(images, 100), variance, prior=prior)
    top, bottom = model.encode(images)
    expected = [
        -np.asarray(prior.priors[0].log_prob(top)).sum() / np.size(top),
        -np.asarray(prior.priors[1].log_prob(bottom, condition=top)).sum() / np.size(bottom),
    ]
    assert list(results["levels"]) == ["top", "bottom"]
    for level, nats in zip(results["levels"].values(), expected):
        assert level["bits_per_code"] == pytest.approx(nats / math.log(2), rel=1e-4)


def test_a_class_conditional_prior_is_scored_with_the_labels_and_needs_them(sample):
    variance, images = sample
    labels = np.arange(len(images), dtype=np.int32) % 10
    model = VQVAE(num_hiddens=8, num_residual_hiddens=4, num_residual_layers=1, embedding_dim=4, num_embeddings=16)
    prior = TransformerPrior(16, grid_shape=(8, 8), num_layers=1, hidden_dim=8, num_heads=2, num_classes=10)
    results = evaluate(model, list(zip(batches(images, 100), batches(labels, 100))), variance, prior=prior)
    codes = np.asarray(model.encode(images))
    nats = -np.asarray(prior.log_prob(codes, labels=labels)).sum() / codes.size
    assert results["levels"]["codes"]["bits_per_code"] == pytest.approx(nats / math.log(2), rel=1e-4)
    with pytest.raises(ValueError, match="the prior is class-conditional, so `images` must yield"):
        evaluate(model, batches(images, 100), variance, prior=prior)


def test_a_masked_prior_reports_its_masked_token_loss_not_bits(sample):
    variance, images = sample
    model = VQVAE(num_hiddens=8, num_residual_hiddens=4, num_residual_layers=1, embedding_dim=4, num_embeddings=16)
    prior = MaskGITPrior(16, grid_shape=(8, 8), num_layers=1, hidden_dim=8, num_heads=2)
    prior.build_if_needed()
    state = prior.mask_seeds.state.numpy().copy()
    level = evaluate(model, batches(images, 100), variance, prior=prior)["levels"]["codes"]
    np.testing.assert_array_equal(prior.mask_seeds.state.numpy(), state)  # the prior's own state given back
    prior.mask_seeds.state.assign(state + 5)  # another state: the same masks, the same figure
    assert evaluate(model, batches(images, 100), variance, prior=prior)["levels"]["codes"] == level
    # The same masks again, from the fixed seed: the mean cross-entropy of the masked codes.
    prior.mask_seeds.state.assign(np.array([evaluation.MASK_SEED, 0], dtype=state.dtype))
    nats, count = 0.0, 0.0
    for batch in batches(images, 100):
        _, nll, weights = prior.per_code_loss(model.encode(batch), None, None, training=False)
        nats, count = nats + float(np.sum(nll * weights)), count + float(np.sum(weights))
    assert level["bits_per_code"] is None
    assert level["masked_token_loss"] == pytest.approx(nats / count, rel=1e-4)
    assert 2.0 < level["masked_token_loss"] < 4.0  # about ln(16) = 2.77 untrained


def test_without_a_prior_there_are_no_bits(sample):
    variance, images = sample
    model = VQVAE(num_hiddens=8, num_residual_hiddens=4, num_residual_layers=1, embedding_dim=4, num_embeddings=16)
    results = evaluate(model, batches(images[:10], 10), variance)
    assert results["levels"]["codes"]["bits_per_code"] is None


@pytest.mark.parametrize(
    "images, variance, message",
    [
        ([], 0.06, "received no images"),
        ([np.zeros((2, 32, 32, 3), np.float32)], 0.0, "data_variance.*positive. Received: data_variance=0.0"),
    ],
)
def test_bad_input_is_named(images, variance, message):
    model = VQVAE(num_hiddens=8, num_residual_hiddens=4, num_residual_layers=1, embedding_dim=4, num_embeddings=16)
    with pytest.raises(ValueError, match=message):
        evaluate(model, images, variance)
