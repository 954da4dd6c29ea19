"""Codebook vectors drawn from encoder outputs: k-means++ seeding and restart candidates.

Pure graph functions of (vectors, seed) with stateless RNG: replicas that pass the
same gathered vectors and seed get the same result. They compile under XLA (which
draws a different random stream than plain TF for the same seed).
"""

import tensorflow as tf

# One algorithm everywhere: "auto_select" may differ between XLA and plain TF.
ALGORITHM = "philox"
# Copies of a vector (fewer distinct vectors than codes) are moved apart by
# Gaussian noise of this size relative to the vectors' standard deviation.
DUPLICATE_NOISE = 1e-3


def fold_seed(seed, value):
    """A new stateless seed (shape (2,)) from `seed` and an integer `value`."""
    return tf.random.experimental.stateless_fold_in(seed, tf.cast(value, "int32"), alg=ALGORITHM)


def at_least_one_row(vectors):
    """`vectors` (M, D), or one row of zeros when M = 0 (an empty batch, whose results the caller
    discards), so that the draws below have something to index."""
    # Concatenated, not branched: a cond here lost the static width the codebook needs (and crashed XLA).
    missing = 1 - tf.minimum(tf.shape(vectors)[0], 1)
    return tf.concat([vectors, tf.zeros((missing, vectors.shape[-1]), vectors.dtype)], axis=0)


def sample_rows(vectors, num_rows, seed):
    """`num_rows` rows of `vectors` (M, D) in a random order, without replacement
    when M >= num_rows, else every row once per round (with replacement)."""
    vectors = at_least_one_row(vectors)
    order = tf.argsort(tf.random.stateless_uniform(tf.shape(vectors)[:1], seed, alg=ALGORITHM))
    return tf.gather(vectors, tf.gather(order, tf.range(num_rows) % tf.size(order)))


def _draw_index(weights, seed):
    """An index drawn with probability proportional to `weights` (>= 0)."""
    total = tf.reduce_sum(weights)
    target = tf.random.stateless_uniform((), seed, alg=ALGORITHM) * total
    index = tf.reduce_sum(tf.cast(tf.cumsum(weights) <= target, "int32"))
    return tf.minimum(index, tf.size(weights) - 1)


def kmeans_plus_plus(vectors, num_codes, seed):
    """k-means++ seeding (Arthur & Vassilvitskii 2007): `num_codes` rows of
    `vectors` (M, D), the first uniformly, each next one with probability
    proportional to its squared distance D^2 to the nearest row chosen so far.

    Once every vector coincides with a chosen row (fewer distinct vectors than
    codes), D^2 is zero everywhere: the remaining codes are then uniformly drawn
    vectors (with replacement) plus Gaussian noise of DUPLICATE_NOISE times the
    vectors' standard deviation, so that no two codes are identical.
    """
    vectors = at_least_one_row(tf.cast(vectors, "float32"))
    count = tf.shape(vectors)[0]
    noise_scale = DUPLICATE_NOISE * (tf.math.reduce_std(vectors) + 1e-6)

    def squared_distances(code):
        return tf.reduce_sum(tf.square(vectors - code), axis=1)

    def choose(i, nearest):
        step_seed = fold_seed(seed, i)
        spread = tf.reduce_sum(nearest) > 0
        uniform = tf.ones_like(nearest)
        index = _draw_index(tf.where(spread, nearest, uniform), step_seed)
        noise = tf.random.stateless_normal(tf.shape(vectors)[1:], fold_seed(step_seed, 1), alg=ALGORITHM) * noise_scale
        return vectors[index] + tf.where(spread, 0.0, noise)

    first = vectors[_draw_index(tf.ones((count,)), fold_seed(seed, 0))]
    codes = tf.tensor_scatter_nd_update(tf.zeros((num_codes, vectors.shape[-1])), [[0]], first[None])

    def body(i, codes, nearest):
        code = choose(i, nearest)
        codes = tf.tensor_scatter_nd_update(codes, [[i]], code[None])
        return i + 1, codes, tf.minimum(nearest, squared_distances(code))

    _, codes, _ = tf.while_loop(
        lambda i, codes, nearest: i < num_codes, body, (tf.constant(1), codes, squared_distances(first))
    )
    return codes
