"""Measures an autoencoder, and a prior over its codes, on held-out images.

The figures the zoo's cards and `python -m training.evaluate` report, here in the library so that
an installed package (which carries the trained entries but not the repository's tools) measures
them too:

    >>> from vq_keras.evaluation import evaluate
    >>> results = evaluate(VQVAE.from_preset("vqvae_cifar10"), test_batches, data_variance=0.0633,
    ...                    prior=PixelCNNPrior.from_preset("pixelcnn_vqvae_cifar10"))

- `mse_over_variance`: the mean squared error of the model's output (as trained: the loss Sonnet
  and the papers report) over `data_variance`, the pixel variance of the training images;
- `psnr` and `ssim`: means over the images of `tf.image.psnr` and `tf.image.ssim` (max_val 1) of
  the reconstructions clipped to [0, 1] (as `reconstruct` returns them);
- per level (`levels`, top first; a VQVAE's one level is "codes"): `perplexity` (exp of the
  entropy of the code frequencies over all the images), `codebook_usage` (the fraction of the
  codes used at least once; a residual quantizer's stages pooled) and, with a prior,
  `bits_per_code` (its negative log-likelihood per code, in bits; the prior of a lower level given
  the true codes above) for an autoregressive prior, or `masked_token_loss` (nats per masked code,
  the masks drawn as in training, from a fixed seed (MASK_SEED) so that the figure reproduces;
  no exact likelihood) for a masked one (MaskGITPrior).

A class-conditional prior needs the images' labels: `images` then yields (images, labels) batches.
"""

import contextlib

import numpy as np
import tensorflow as tf
from keras import ops

from vq_keras import metrics
from vq_keras.models.autoregressive_prior import AutoregressivePrior
from vq_keras.zoo import HierarchicalPrior

SSIM_FILTER_SIZE = 11  # tf.image.ssim's default Gaussian window
MASK_SEED = 0  # the seed of a masked prior's evaluation masks


def level_labels(autoencoder):
    """The names results give the autoencoder's code levels, top first: a VQVAE's one level
    (named "" in the model, for unprefixed metrics) is "codes"."""
    return [level or "codes" for level in autoencoder.level_names]


def level_priors(prior):
    """The prior of each level, top first (a HierarchicalPrior's, or a PixelCNNPrior alone)."""
    return None if prior is None else (prior.priors if isinstance(prior, HierarchicalPrior) else [prior])


def evaluate(model, images, data_variance, prior=None):
    """The figures of the module docstring over `images`, an iterable of float32 NHWC batches in
    [0, 1] (or of (images, int labels) pairs, for a class-conditional prior); returns a dict with
    them, `num_images` and `training_pixel_variance`.

    Raises ValueError if `images` holds no batch, if a class-conditional prior gets no labels, or
    `data_variance` is not positive.
    """
    if not data_variance > 0:
        raise ValueError(
            "evaluate expects data_variance, the pixel variance of the training images in [0, 1] scale, "
            f"to be positive. Received: data_variance={data_variance}"
        )
    priors = level_priors(prior)
    with _masks_from_a_fixed_seed(priors):
        sums, counts, positions, nats = _accumulated(model, priors, images)
    if not sums["images"]:
        raise ValueError("evaluate received no images: `images` yielded no batch. Pass the held-out images.")
    levels = {}
    for i, (name, level_counts) in enumerate(zip(level_labels(model), counts)):
        levels[name] = {
            "perplexity": float(metrics.perplexity_of_counts(level_counts)),
            "codebook_usage": float(metrics.codebook_usage_of_counts(level_counts)),
            "num_embeddings": int(level_counts.shape[0]),
            "bits_per_code": None,
        }
        if priors and _exact(priors[i]):
            levels[name]["bits_per_code"] = float(metrics.bits_per_code(nats[i] / positions[i]))
        elif priors:
            levels[name]["masked_token_loss"] = nats[i] / positions[i]
    return {
        "mse_over_variance": sums["squared_error"] / sums["pixels"] / data_variance,
        "psnr": sums["psnr"] / sums["images"],
        "ssim": sums["ssim"] / sums["images"],
        "levels": levels,
        "num_images": sums["images"],
        "training_pixel_variance": data_variance,
    }


def _accumulated(model, priors, images):
    """`_measure` over every batch of `images`, summed: (sums, code counts, positions, nats)."""
    counts = [ops.zeros((quantizer.num_embeddings,), "float32") for quantizer in model.quantizers]
    sums = {"squared_error": 0.0, "psnr": 0.0, "ssim": 0.0, "images": 0, "pixels": 0}
    nats = [0.0] * len(counts)
    positions = [0] * len(counts)
    measure = tf.function(lambda batch, labels: _measure(model, priors, batch, labels))
    for batch in images:
        batch, labels = batch if isinstance(batch, (tuple, list)) else (batch, None)
        if priors and priors[0].num_classes is not None and labels is None:
            raise ValueError(
                "evaluate: the prior is class-conditional, so `images` must yield (images, labels) batches. "
                "Received: image batches alone."
            )
        squared_error, psnr, ssim, batch_counts, sizes, level_nats = measure(batch, labels)
        sums["squared_error"] += float(squared_error)
        sums["psnr"] += float(psnr)
        sums["ssim"] += float(ssim)
        sums["images"] += int(batch.shape[0])
        sums["pixels"] += int(tf.size(batch))
        counts = [total + level for total, level in zip(counts, batch_counts)]
        positions = [total + float(size) for total, size in zip(positions, sizes)]
        nats = [total + float(value) for total, value in zip(nats, level_nats)] if priors else nats
    return sums, counts, positions, nats


@contextlib.contextmanager
def _masks_from_a_fixed_seed(priors):
    """A masked prior's figure depends on the masks drawn: draw them from one fixed seed, so that
    the figure reproduces, and give the prior its own seed state back afterwards."""
    generators = [prior.mask_seeds for prior in priors or [] if not _exact(prior)]
    saved = [generator.state.numpy() for generator in generators]
    for generator in generators:
        generator.state.assign(np.array([MASK_SEED, 0], dtype=saved[0].dtype))
    try:
        yield
    finally:
        for generator, state in zip(generators, saved):
            generator.state.assign(state)


def _exact(prior):
    """Whether the prior has an exact likelihood (autoregressive), else a masked-token loss."""
    return isinstance(prior, AutoregressivePrior)


def _measure(model, priors, batch, labels):
    """One batch's sums: squared error, PSNR, SSIM, code counts and the number of codes each
    prior scores, and nats per level (of every code, or of the masked codes of a masked prior)."""
    output, codes = model(batch, training=False, return_codes=True)
    output = tf.cast(output, tf.float32)
    clipped = tf.clip_by_value(output, 0.0, 1.0)
    filter_size = min(SSIM_FILTER_SIZE, batch.shape[1], batch.shape[2])
    level_nats, scored = [], [tf.cast(tf.size(level), tf.float32) for level in codes]
    for i, level_prior in enumerate(priors or []):
        condition = codes[i - 1] if i else None
        if _exact(level_prior):
            level_nats.append(-tf.reduce_sum(level_prior.log_prob(codes[i], labels=labels, condition=condition)))
        else:
            _, nll, weights = level_prior.per_code_loss(codes[i], labels, condition, training=False)
            level_nats.append(tf.reduce_sum(nll * weights))
            scored[i] = tf.reduce_sum(weights)
    return (
        tf.reduce_sum(tf.square(tf.cast(output, tf.float64) - tf.cast(batch, tf.float64))),
        tf.reduce_sum(tf.image.psnr(batch, clipped, max_val=1.0)),
        tf.reduce_sum(tf.image.ssim(batch, clipped, max_val=1.0, filter_size=filter_size)),
        [metrics.code_counts(level, quantizer.num_embeddings) for level, quantizer in zip(codes, model.quantizers)],
        scored,
        level_nats,
    )
