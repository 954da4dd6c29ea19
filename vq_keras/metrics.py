"""Code-assignment statistics (perplexity, codebook usage) and bits per code."""

import math

import keras
from keras import ops


def code_counts(codes, num_embeddings):
    """float32 (num_embeddings,) number of times each code occurs in `codes`."""
    # A segment sum rather than bincount (which XLA does not compile) or a one-hot
    # sum (N x K memory and work).
    flat = ops.reshape(ops.cast(codes, "int32"), (-1,))
    return ops.segment_sum(ops.ones_like(flat, dtype="float32"), flat, num_segments=num_embeddings)


def perplexity(codes, num_embeddings):
    """exp(entropy) of the code frequencies: 1 (one code) to num_embeddings (uniform)."""
    return perplexity_of_counts(code_counts(codes, num_embeddings))


def codebook_usage(codes, num_embeddings):
    """Fraction of the num_embeddings codes that occur at least once in `codes`."""
    return codebook_usage_of_counts(code_counts(codes, num_embeddings))


def bits_per_code(nats):
    """A negative log-likelihood per code in nats, converted to bits (nats / ln 2).

    A prior that assigns every one of K codes probability 1/K scores log2(K) bits.
    """
    return nats / math.log(2.0)


def perplexity_of_counts(counts):
    probs = counts / ops.maximum(ops.sum(counts), 1.0)
    return ops.exp(-ops.sum(probs * ops.log(probs + 1e-10)))


def codebook_usage_of_counts(counts):
    return ops.mean(ops.cast(counts > 0, "float32"))


class CodeUsage(keras.metrics.Metric):
    """Counts how often each code is assigned, accumulated until `reset_state()`.

    Keras resets it with the model's other metrics at every epoch start and
    before evaluating, so it covers an epoch (or a whole validation split).
    `result()` is a dict of two scalars, `<prefix>epoch_codebook_usage` (the
    fraction of codes assigned at least once) and `<prefix>epoch_dead_codes`
    (the number never assigned); `counts()` is the float32 (num_embeddings,)
    count vector. Counts are summed across replicas.

    Args:
        num_embeddings: K, the number of codes.
        prefix: prefix of the two result names, e.g. "top_" ("" by default).
        **kwargs: standard `keras.metrics.Metric` arguments (name, dtype).
    """

    def __init__(self, num_embeddings, prefix="", **kwargs):
        super().__init__(**kwargs)
        self.num_embeddings = num_embeddings
        self.prefix = prefix
        self.code_counts = self.add_variable(
            shape=(num_embeddings,), initializer="zeros", dtype="float32", aggregation="sum", name="counts"
        )

    def update_state(self, codes):
        self.update_counts(code_counts(codes, self.num_embeddings))

    def update_counts(self, counts):
        """Adds a float32 (num_embeddings,) count vector (e.g. from `code_counts`)."""
        self.code_counts.assign_add(counts)

    def counts(self):
        return ops.convert_to_tensor(self.code_counts)

    def unused_codes(self):
        return ops.sum(ops.cast(ops.equal(self.counts(), 0.0), "int32"))

    def result(self):
        return {
            f"{self.prefix}epoch_codebook_usage": codebook_usage_of_counts(self.counts()),
            f"{self.prefix}epoch_dead_codes": self.unused_codes(),
        }

    def get_config(self):
        return {**super().get_config(), "num_embeddings": self.num_embeddings, "prefix": self.prefix}
