"""Code-assignment statistics: perplexity and codebook usage."""

from keras import ops


def code_counts(codes, num_embeddings):
    """float32 (num_embeddings,) number of times each code occurs in `codes`."""
    # A one-hot sum rather than bincount: it compiles under XLA.
    flat = ops.reshape(ops.cast(codes, "int32"), (-1,))
    return ops.sum(ops.one_hot(flat, num_embeddings, dtype="float32"), axis=0)


def perplexity(codes, num_embeddings):
    """exp(entropy) of the code frequencies: 1 (one code) to num_embeddings (uniform)."""
    return perplexity_of_counts(code_counts(codes, num_embeddings))


def codebook_usage(codes, num_embeddings):
    """Fraction of the num_embeddings codes that occur at least once in `codes`."""
    return codebook_usage_of_counts(code_counts(codes, num_embeddings))


def perplexity_of_counts(counts):
    probs = counts / ops.maximum(ops.sum(counts), 1.0)
    return ops.exp(-ops.sum(probs * ops.log(probs + 1e-10)))


def codebook_usage_of_counts(counts):
    return ops.mean(ops.cast(counts > 0, "float32"))
