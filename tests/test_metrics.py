import numpy as np

from vq_keras import metrics


def test_counts_perplexity_and_usage_match_numpy():
    codes = np.random.default_rng(0).integers(0, 10, size=(4, 5, 5))
    counts = np.bincount(codes.ravel(), minlength=16)
    np.testing.assert_array_equal(metrics.code_counts(codes, 16).numpy(), counts)
    p = counts[counts > 0] / codes.size
    np.testing.assert_allclose(metrics.perplexity(codes, 16).numpy(), np.exp(-(p * np.log(p)).sum()), rtol=1e-5)
    np.testing.assert_allclose(metrics.codebook_usage(codes, 16).numpy(), (counts > 0).mean())


def test_extremes():
    np.testing.assert_allclose(metrics.perplexity(np.zeros((8,), int), 4).numpy(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(metrics.perplexity(np.arange(8) % 4, 4).numpy(), 4.0, rtol=1e-6)
    np.testing.assert_allclose(metrics.codebook_usage(np.zeros((8,), int), 4).numpy(), 0.25)
