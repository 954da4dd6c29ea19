"""How close a prior's generated images are to real ones, measured offline.

The protocol (`sample_quality`), in the way of FID (Heusel et al. 2017, "GANs Trained by a Two
Time-Scale Update Rule Converge to a Local Nash Equilibrium", arXiv:1706.08500) but on the pooled
features of the project's own `ImageClassifier` (zoo/classifier_cifar10) instead of Inception's, so
it needs no download; its figures are comparable with each other, never with published FIDs:

- the reference: the feature mean and covariance of the training images (what the prior models);
- `frechet_distance`: of `num_samples` generated images to the reference,
  ||mu_s - mu_r||^2 + tr(S_s + S_r - 2 (S_s^1/2 S_r S_s^1/2)^1/2);
- the scale beside it, from the same number of images (the distance's bias depends on it):
  `real_frechet_distance` (held-out real images: the floor a perfect generator reaches) and
  `reconstruction_frechet_distance` (the autoencoder's reconstructions of those images: the
  floor of a perfect prior over these codes);
- class-conditional priors: `class_accuracy`, the fraction of samples the classifier assigns the
  class they were drawn for (labels i mod num_classes, so the classes are balanced), beside
  `real_class_accuracy` and `reconstruction_class_accuracy` on the held-out images.

    >>> from vq_keras.sample_quality import sample_quality
    >>> figures = sample_quality(VQVAE.from_preset("vqvae_cifar10"), prior,
    ...                          ImageClassifier.from_preset("classifier_cifar10"),
    ...                          train_images, test_batches, num_samples=1000)
"""

import numpy as np

from vq_keras.zoo.generation import generate

SAMPLE_BATCH = 100  # images drawn per `generate` call: one compiled shape for the whole run


def feature_statistics(features):
    """(mean, covariance) in float64 of `features` (N, D), N >= 2 (the covariance's N - 1)."""
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(
            f"feature_statistics expects features of shape (N, D) with N >= 2. Received: shape={features.shape}"
        )
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(statistics, reference):
    """The Frechet distance of two Gaussians given as (mean, covariance) pairs.

    The trace of the matrix square root of S_a S_b is taken as that of the symmetric
    S_a^1/2 S_b S_a^1/2, whose eigenvalues are real and non-negative (up to rounding, clipped
    at 0): no complex square root of a non-symmetric product, as scipy's sqrtm needs."""
    (mean_a, cov_a), (mean_b, cov_b) = statistics, reference
    if np.shape(mean_a) != np.shape(mean_b) or np.shape(cov_a) != np.shape(cov_b):
        raise ValueError(
            "frechet_distance expects statistics of one feature size. "
            f"Received: means of shape {np.shape(mean_a)} and {np.shape(mean_b)}"
        )
    root_a = _symmetric_sqrt(cov_a)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0, None)).sum()
    return float(np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)


def _symmetric_sqrt(matrix):
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def classifier_outputs(classifier, batches):
    """(features (N, D) float64, predicted labels (N,)) of the images in `batches`."""
    features, predicted = [], []
    for images in batches:
        features.append(np.asarray(classifier.features(images)))
        predicted.append(np.asarray(classifier.predict_labels(images)))
    if not features:
        raise ValueError("sample_quality expects at least one batch of images; the iterable was empty.")
    return np.concatenate(features).astype(np.float64), np.concatenate(predicted)


def sample_quality(
    autoencoder, prior, classifier, reference_images, held_out, num_samples, seed=0, **sampling
):
    """The figures of the module docstring.

    Args:
        autoencoder: the VQVAE or VQVAE2 the prior's codes decode with.
        prior: the prior to draw from (any kind, or a HierarchicalPrior).
        classifier: an `ImageClassifier` (its features and predicted classes).
        reference_images: an iterable of float32 NHWC batches in [0, 1]: the training images.
        held_out: an iterable of batches of held-out images (of (images, int labels) pairs for a
            class-conditional prior); the first `num_samples` are the scale's real images.
        num_samples: N >= 2, the images drawn (in batches of 100, batch i with seed + i).
        seed: the first batch's seed.
        **sampling: `generate`'s sampling arguments (temperature, top_k, top_p, num_steps, method).

    Returns:
        a dict: num_samples, seed, frechet_distance, real_frechet_distance,
        reconstruction_frechet_distance, feature_dim, num_reference_images and, for a
        class-conditional prior, class_accuracy, real_class_accuracy, reconstruction_class_accuracy.
    """
    if not (isinstance(num_samples, (int, np.integer)) and num_samples >= 2):
        raise ValueError(f"sample_quality expects num_samples, an int >= 2. Received: num_samples={num_samples!r}")
    reference_features, _ = classifier_outputs(classifier, reference_images)
    reference = feature_statistics(reference_features)
    real, labels = _first_images(held_out, num_samples)
    num_classes = getattr(prior, "num_classes", None)
    if num_classes and labels is None:
        raise ValueError(
            "sample_quality expects (images, labels) batches in held_out for a class-conditional prior "
            "(the real images' class accuracy is the scale of the samples'). Received: images alone."
        )
    sample_labels = np.arange(num_samples) % (num_classes or 1)
    samples = [
        generate(autoencoder, prior, len(batch), seed=seed + index, labels=batch if num_classes else None, **sampling)
        for index, batch in enumerate(_chunks(sample_labels))
    ]
    image_sets = {
        "": (sample_labels, samples),
        "real_": (labels, _chunks(real)),
        "reconstruction_": (labels, [autoencoder.reconstruct(batch) for batch in _chunks(real)]),
    }
    figures = {
        "num_samples": int(num_samples), "seed": int(seed), "num_reference_images": len(reference_features),
        "feature_dim": int(reference_features.shape[1]),
    }
    for prefix, (true_labels, batches) in image_sets.items():
        features, predicted = classifier_outputs(classifier, batches)
        figures[f"{prefix}frechet_distance"] = frechet_distance(feature_statistics(features), reference)
        if num_classes:
            figures[f"{prefix}class_accuracy"] = float(np.mean(predicted == true_labels))
    return figures


def _first_images(batches, count):
    """The first `count` images and labels (None without labels) of an iterable of batches."""
    images, labels, total = [], [], 0
    for batch in batches:
        batch_images, batch_labels = batch if isinstance(batch, tuple) else (batch, None)
        images.append(np.asarray(batch_images))
        labels.append(None if batch_labels is None else np.asarray(batch_labels))
        total += len(images[-1])
        if total >= count:
            break
    if total < count:
        raise ValueError(
            f"sample_quality expects at least num_samples={count} held-out images for the real-vs-real scale. "
            f"Received: {total}. Pass a smaller num_samples."
        )
    return np.concatenate(images)[:count], None if labels[0] is None else np.concatenate(labels)[:count]


def _chunks(array):
    return [array[start:start + SAMPLE_BATCH] for start in range(0, len(array), SAMPLE_BATCH)]
