import numpy as np
import pytest
import tensorflow as tf

from vq_keras.sample_quality import feature_statistics, frechet_distance, sample_quality
from vq_keras.zoo import VQVAE, ImageClassifier, PixelCNNPrior, generate
from tests.presets import TINY_AUTOENCODER


def reference_distance(features_a, features_b):
    """FID's formula with a general matrix square root (tf.linalg.sqrtm of the non-symmetric product)."""
    mean_a, mean_b = features_a.mean(0), features_b.mean(0)
    cov_a, cov_b = np.cov(features_a, rowvar=False), np.cov(features_b, rowvar=False)
    root = tf.linalg.sqrtm(tf.constant(cov_a @ cov_b, tf.float64)).numpy()
    return np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a + cov_b - 2 * root)


def random_features(seed, count=400, dim=6):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(count, dim)) @ rng.normal(size=(dim, dim)) + rng.normal(size=dim)


def test_the_frechet_distance_equals_the_formula_with_a_general_matrix_square_root():
    a, b = random_features(0), random_features(1)
    expected = reference_distance(a, b)
    assert frechet_distance(feature_statistics(a), feature_statistics(b)) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(feature_statistics(b), feature_statistics(a)) == pytest.approx(expected, rel=1e-8)


def test_the_frechet_distance_of_diagonal_gaussians_is_the_closed_form():
    mean_a, mean_b = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    var_a, var_b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 4.0, 1.0])
    distance = frechet_distance((mean_a, np.diag(var_a)), (mean_b, np.diag(var_b)))
    assert distance == pytest.approx(np.sum((mean_a - mean_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2))


def test_a_set_is_at_distance_zero_of_itself_even_with_a_singular_covariance():
    features = random_features(2, count=5, dim=8)  # 5 points in 8 dimensions: rank 4
    statistics = feature_statistics(features)
    assert abs(frechet_distance(statistics, statistics)) < 1e-7 * np.trace(statistics[1])  # rounding only


def test_bad_features_are_refused_with_the_shapes():
    with pytest.raises(ValueError, match=r"\(N, D\) with N >= 2. Received: shape=\(1, 3\)"):
        feature_statistics(np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"one feature size. Received: means of shape \(3,\) and \(4,\)"):
        frechet_distance(feature_statistics(np.eye(3)), feature_statistics(np.eye(4)))


@pytest.fixture(scope="module")
def tiny_models():
    autoencoder = VQVAE(**TINY_AUTOENCODER)
    prior = PixelCNNPrior(16, num_layers=1, num_filters=8, grid_shape=(8, 8), num_classes=3)
    classifier = ImageClassifier(widths=(4, 8), blocks_per_stage=1, num_classes=3)
    for model in (autoencoder, prior, classifier):
        model.build_if_needed()
    images = np.random.default_rng(0).uniform(size=(60, 32, 32, 3)).astype("float32")
    labels = np.arange(60) % 3
    return autoencoder, prior, classifier, images, labels


def features_of(classifier, images):
    return np.concatenate([np.asarray(classifier.features(images[i:i + 25]), np.float64) for i in range(0, len(images), 25)])


def test_sample_quality_measures_samples_real_images_and_reconstructions_against_the_reference(tiny_models):
    autoencoder, prior, classifier, images, labels = tiny_models
    reference, held_out = images[:40], images[40:]
    figures = sample_quality(
        autoencoder, prior, classifier, [reference[:20], reference[20:]], [(held_out, labels[40:])], num_samples=12,
        seed=3,
    )
    reference_features = features_of(classifier, reference)
    samples = generate(autoencoder, prior, 12, seed=3, labels=np.arange(12) % 3)
    expected = {
        "": (samples, np.arange(12) % 3),
        "real_": (held_out[:12], labels[40:52]),
        "reconstruction_": (autoencoder.reconstruct(held_out[:12]), labels[40:52]),
    }
    for prefix, (batch, true_labels) in expected.items():
        distance = reference_distance(features_of(classifier, np.asarray(batch)), reference_features)
        assert figures[f"{prefix}frechet_distance"] == pytest.approx(distance, rel=1e-4, abs=1e-9), prefix
        predicted = np.argmax(np.asarray(classifier(batch)), axis=-1)
        assert figures[f"{prefix}class_accuracy"] == pytest.approx(np.mean(predicted == true_labels)), prefix
    assert (figures["num_samples"], figures["seed"], figures["num_reference_images"], figures["feature_dim"]) == (12, 3, 40, 8)


def test_real_images_that_are_the_reference_are_at_distance_zero(tiny_models):
    autoencoder, prior, classifier, images, labels = tiny_models
    figures = sample_quality(autoencoder, prior, classifier, [images], [(images, labels)], num_samples=60)
    assert abs(figures["real_frechet_distance"]) < 1e-6 and figures["frechet_distance"] > 1e-6


def test_the_samples_follow_the_seed(tiny_models):
    autoencoder, prior, classifier, images, labels = tiny_models
    measure = lambda seed: sample_quality(  # noqa: E731
        autoencoder, prior, classifier, [images], [(images, labels)], num_samples=10, seed=seed
    )
    first, again, other = measure(0), measure(0), measure(1)
    assert first == again and first["frechet_distance"] != other["frechet_distance"]
    assert first["real_frechet_distance"] == other["real_frechet_distance"]


def test_bad_arguments_are_refused_with_what_was_received(tiny_models):
    autoencoder, prior, classifier, images, labels = tiny_models
    run = lambda held_out, num: sample_quality(autoencoder, prior, classifier, [images], held_out, num)  # noqa: E731
    with pytest.raises(ValueError, match="num_samples, an int >= 2. Received: num_samples=1"):
        run([(images, labels)], 1)
    with pytest.raises(ValueError, match="at least num_samples=100 held-out images.*Received: 60"):
        run([(images, labels)], 100)
    with pytest.raises(ValueError, match=r"\(images, labels\) batches in held_out for a class-conditional prior"):
        run([images], 10)
