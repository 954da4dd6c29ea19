"""Codebook vectors drawn from encoder outputs: k-means++ seeding and restart candidates.

Pure functions of (vectors, seed) in `keras.ops` with stateless random draws
(`vq_keras._backend`): replicas that pass the same gathered vectors and seed get the
same result. They compile under XLA (which draws a different random stream than plain
TF for the same seed) and under jax.jit (JAX's own stream).
"""

from keras import ops

from vq_keras._backend import fold_seed, stateless_normal, stateless_uniform

# Copies of a vector (fewer distinct vectors than codes) are moved apart by
# Gaussian noise of this size relative to the vectors' standard deviation.
DUPLICATE_NOISE = 1e-3


def at_least_one_row(vectors):
    """`vectors` (M, D), or one row of zeros when M = 0 (an empty batch, whose results the caller
    discards), so that the draws below have something to index."""
    count = ops.shape(vectors)[0]
    if isinstance(count, int):  # a static count (always under JAX)
        return vectors if count else ops.zeros((1, vectors.shape[-1]), vectors.dtype)
    # Concatenated, not branched: a cond here lost the static width the codebook needs (and crashed XLA).
    missing = 1 - ops.minimum(count, 1)
    return ops.concatenate([vectors, ops.zeros((missing, vectors.shape[-1]), vectors.dtype)], axis=0)


def sample_rows(vectors, num_rows, seed):
    """`num_rows` rows of `vectors` (M, D) in a random order, without replacement
    when M >= num_rows, else every row once per round (with replacement)."""
    vectors = at_least_one_row(vectors)
    order = ops.argsort(stateless_uniform((ops.shape(vectors)[0],), seed))
    return ops.take(vectors, ops.take(order, ops.arange(num_rows) % ops.size(order), axis=0), axis=0)


def _draw_index(weights, seed):
    """An index drawn with probability proportional to `weights` (>= 0)."""
    total = ops.sum(weights)
    target = stateless_uniform((), seed) * total
    index = ops.sum(ops.cast(ops.cumsum(weights) <= target, "int32"))
    return ops.minimum(index, ops.size(weights) - 1)


def kmeans_plus_plus(vectors, num_codes, seed):
    """k-means++ seeding (Arthur & Vassilvitskii 2007): `num_codes` rows of
    `vectors` (M, D), the first uniformly, each next one with probability
    proportional to its squared distance D^2 to the nearest row chosen so far.

    Once every vector coincides with a chosen row (fewer distinct vectors than
    codes), D^2 is zero everywhere: the remaining codes are then uniformly drawn
    vectors (with replacement) plus Gaussian noise of DUPLICATE_NOISE times the
    vectors' standard deviation, so that no two codes are identical.
    """
    vectors = at_least_one_row(ops.cast(vectors, "float32"))
    width = vectors.shape[-1]
    noise_scale = DUPLICATE_NOISE * (ops.std(vectors) + 1e-6)

    def squared_distances(code):
        return ops.sum(ops.square(vectors - code), axis=1)

    def choose(i, nearest):
        step_seed = fold_seed(seed, i)
        spread = ops.sum(nearest) > 0
        index = _draw_index(ops.where(spread, nearest, ops.ones_like(nearest)), step_seed)
        noise = stateless_normal((width,), fold_seed(step_seed, 1)) * noise_scale
        return ops.take(vectors, index, axis=0) + ops.where(spread, 0.0, noise)

    first = ops.take(vectors, _draw_index(ops.ones((ops.shape(vectors)[0],)), fold_seed(seed, 0)), axis=0)
    codes = ops.scatter_update(ops.zeros((num_codes, width)), [[0]], first[None])

    def body(i, state):
        codes, nearest = state
        code = choose(i, nearest)
        return ops.scatter_update(codes, [[i]], code[None]), ops.minimum(nearest, squared_distances(code))

    codes, _ = ops.fori_loop(1, num_codes, body, (codes, squared_distances(first)))
    return codes
