import functools

import numpy as np
import pytest

from tests.backend import compiled, to_numpy
from vq_keras.layers._codebook_seeding import kmeans_plus_plus, sample_rows

pytestmark = pytest.mark.backends


@functools.lru_cache(maxsize=None)
def _kmeans_for(num_codes):
    return compiled(lambda vectors, seed: kmeans_plus_plus(vectors, num_codes, seed))


def kmeans(vectors, num_codes, seed):
    """k-means++ compiled once per number of codes (a static loop bound under jax.jit)."""
    return _kmeans_for(num_codes)(vectors, np.asarray(seed, "int32"))


def _row_index(rows, vectors):
    """For each row, the index of the identical vector (-1 if none)."""
    equal = (rows[:, None, :] == vectors[None]).all(-1)
    return np.where(equal.any(1), equal.argmax(1), -1)


def test_every_code_is_a_distinct_input_vector():
    vectors = np.random.default_rng(0).normal(size=(40, 3)).astype("float32")
    codes = to_numpy(kmeans(vectors, 16, np.array([1, 2])))
    index = _row_index(codes, vectors)
    assert (index >= 0).all() and len(set(index)) == 16


def test_clusters_far_apart_each_receive_a_code():
    rng = np.random.default_rng(1)
    centres = np.array([[0, 0], [1000, 0], [0, 1000], [1000, 1000]], "float32")
    vectors = (centres[rng.integers(0, 4, 200)] + rng.normal(scale=0.01, size=(200, 2))).astype("float32")
    for seed in range(5):
        codes = to_numpy(kmeans(vectors, 4, np.array([seed, 0])))
        nearest_centre = ((codes[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
        assert sorted(nearest_centre) == [0, 1, 2, 3]


def test_second_code_is_drawn_proportionally_to_squared_distance():
    points = np.array([[0.0], [1.0], [3.0]], "float32")
    pairs = np.zeros((3, 3))
    draws = 900
    for seed in range(draws):
        codes = to_numpy(kmeans(points, 2, np.array([seed, 7])))
        first, second = _row_index(codes, points)
        pairs[first, second] += 1
    d2 = (points - points.T) ** 2
    expected = d2 / d2.sum(1, keepdims=True) / 3  # first uniform, then D^2
    np.testing.assert_allclose(pairs / draws, expected, atol=0.045)
    assert np.trace(pairs) == 0


def test_fewer_vectors_than_codes_adds_noisy_copies():
    vectors = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]], "float32")
    codes = to_numpy(kmeans(vectors, 7, np.array([3, 3])))
    assert sorted(_row_index(codes[:3], vectors)) == [0, 1, 2]
    copies = codes[3:]
    distance = np.sqrt(((copies[:, None] - vectors[None]) ** 2).sum(-1)).min(1)
    assert (distance > 0).all() and (distance < 0.1).all()
    assert len({tuple(row) for row in codes}) == 7


def test_sample_rows_without_replacement_then_round_robin():
    vectors = np.arange(10, dtype="float32")[:, None]
    rows = to_numpy(sample_rows(vectors, 6, np.array([0, 1])))[:, 0]
    assert len(set(rows)) == 6 and set(rows) <= set(range(10))
    rows = to_numpy(sample_rows(vectors[:4], 10, np.array([0, 1])))[:, 0]
    np.testing.assert_array_equal(rows[:4], rows[4:8])
    assert sorted(rows[:4]) == [0, 1, 2, 3]
