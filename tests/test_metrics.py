import numpy as np
import tensorflow as tf

from vq_keras import metrics


def test_counts_perplexity_and_usage_match_numpy():
    codes = np.random.default_rng(0).integers(0, 10, size=(4, 5, 5))
    counts = np.bincount(codes.ravel(), minlength=16)
    np.testing.assert_array_equal(metrics.code_counts(codes, 16).numpy(), counts)
    p = counts[counts > 0] / codes.size
    np.testing.assert_allclose(metrics.perplexity(codes, 16).numpy(), np.exp(-(p * np.log(p)).sum()), rtol=1e-5)
    np.testing.assert_allclose(metrics.codebook_usage(codes, 16).numpy(), (counts > 0).mean())


def test_code_counts_compile_under_xla():
    codes = np.random.default_rng(1).integers(0, 7, size=(3, 8, 8)).astype("int32")
    counts = tf.function(lambda c: metrics.code_counts(c, 9), jit_compile=True)(codes)
    np.testing.assert_array_equal(counts.numpy(), np.bincount(codes.ravel(), minlength=9))


def test_extremes():
    np.testing.assert_allclose(metrics.perplexity(np.zeros((8,), int), 4).numpy(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(metrics.perplexity(np.arange(8) % 4, 4).numpy(), 4.0, rtol=1e-6)
    np.testing.assert_allclose(metrics.codebook_usage(np.zeros((8,), int), 4).numpy(), 0.25)


def test_code_usage_accumulates_until_reset():
    usage = metrics.CodeUsage(6, prefix="top_")
    first, second = np.array([[0, 1], [1, 1]]), np.array([3, 3, 0])
    usage.update_state(first)
    usage.update_state(second)
    np.testing.assert_array_equal(usage.counts().numpy(), [2, 3, 0, 2, 0, 0])
    result = usage.result()
    assert sorted(result) == ["top_epoch_codebook_usage", "top_epoch_dead_codes"]
    np.testing.assert_allclose(result["top_epoch_codebook_usage"], 3 / 6)
    assert int(result["top_epoch_dead_codes"]) == 3 == int(usage.unused_codes())
    usage.reset_state()
    assert int(usage.unused_codes()) == 6
    assert metrics.CodeUsage.from_config(usage.get_config()).prefix == "top_"
