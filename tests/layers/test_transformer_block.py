"""TransformerBlock: causal and bidirectional attention, and decoding with a key/value cache."""

import keras
import numpy as np
import pytest

from tests.backend import to_numpy
from tests.layer_harness import run_layer_test
from vq_keras.layers import TransformerBlock

pytestmark = pytest.mark.backends  # the same checks on every backend (tests/backend.py)


def _inputs(batch=2, length=7, hidden=16, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, length, hidden)).astype("float32")


def _reference(block, x):
    """The block in NumPy from its weights: pre-norm attention then MLP (no dropout)."""

    def norm(layer, v):
        mean, variance = v.mean(-1, keepdims=True), v.var(-1, keepdims=True)
        return (v - mean) / np.sqrt(variance + layer.epsilon) * to_numpy(layer.gamma) + to_numpy(layer.beta)

    def dense(layer, v):
        return v @ to_numpy(layer.kernel) + to_numpy(layer.bias)

    batch, length, hidden = x.shape
    heads, d = block.num_heads, hidden // block.num_heads
    qkv = dense(block.query_key_value, norm(block.attention_norm, x))
    q, k, v = (a.reshape(batch, length, heads, d).transpose(0, 2, 1, 3) for a in np.split(qkv, 3, axis=-1))
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(d)
    if block.attention == "causal":
        scores = np.where(np.tril(np.ones((length, length), bool)), scores, -np.inf)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    attended = (weights @ v).transpose(0, 2, 1, 3).reshape(batch, length, hidden)
    x = x + dense(block.attention_output, attended)
    gelu = to_numpy(keras.ops.gelu(dense(block.mlp_hidden, norm(block.mlp_norm, x)), approximate=False))
    return x + dense(block.mlp_output, gelu)


@pytest.mark.parametrize("attention", ["causal", "bidirectional"])
def test_outputs_equal_a_numpy_reference(attention):
    block = TransformerBlock(num_heads=4, intermediate_dim=24, attention=attention)
    x = _inputs()
    np.testing.assert_allclose(to_numpy(block(x)), _reference(block, x), atol=2e-5)


def test_causal_outputs_do_not_depend_on_later_inputs():
    block = TransformerBlock(num_heads=2, intermediate_dim=8)
    x = _inputs()
    changed = x.copy()
    changed[:, 4:] += _inputs(length=3, seed=1)  # not a constant shift, which the layer norm removes
    before, after = to_numpy(block(x)), to_numpy(block(changed))
    np.testing.assert_allclose(before[:, :4], after[:, :4], atol=1e-6)
    assert np.abs(before[:, 4:] - after[:, 4:]).min() > 0


def test_bidirectional_outputs_depend_on_later_inputs():
    block = TransformerBlock(num_heads=2, intermediate_dim=8, attention="bidirectional")
    x = _inputs()
    changed = x.copy()
    changed[:, -1] += _inputs(length=1, seed=1)[:, 0]
    assert np.abs(to_numpy(block(x))[:, 0] - to_numpy(block(changed))[:, 0]).max() > 1e-4


def test_cached_chunks_give_the_full_pass_outputs():
    block = TransformerBlock(num_heads=4, intermediate_dim=32)
    x = _inputs(length=9)
    full = to_numpy(block(x))
    cache = block.empty_cache(2, 9)
    pieces = []
    for start, stop in ((0, 4), (4, 5), (5, 6), (6, 9)):  # a prefix, single steps, a longer chunk
        out, cache = block.cached_call(x[:, start:stop], start, cache)
        pieces.append(to_numpy(out))
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), full, atol=2e-5)
    assert cache["key"].shape == (2, 4, 9, 4)


def test_dropout_only_in_training():
    block = TransformerBlock(num_heads=2, intermediate_dim=8, dropout=0.5)
    x = _inputs()
    np.testing.assert_array_equal(to_numpy(block(x)), to_numpy(block(x, training=False)))
    assert np.abs(to_numpy(block(x, training=True)) - to_numpy(block(x))).max() > 1e-3


@pytest.mark.parametrize("attention", ["causal", "bidirectional"])
def test_the_layer_harness(attention, tmp_path):
    run_layer_test(
        TransformerBlock, dict(num_heads=2, intermediate_dim=12, attention=attention, dropout=0.1), (2, 5, 8),
        expected_output_shape=(2, 5, 8), expected_num_trainable_weights=12,  # 2 norms x 2, 4 dense x 2
        expected_num_non_trainable_weights=0, jit_compile=True, tmp_path=tmp_path,
    )


def test_one_training_step_moves_every_weight():
    block = TransformerBlock(num_heads=2, intermediate_dim=8)
    inputs = keras.Input((5, 8))
    model = keras.Model(inputs, block(inputs))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    before = [to_numpy(w).copy() for w in block.trainable_weights]
    model.fit(_inputs(length=5, hidden=8), _inputs(length=5, hidden=8, seed=1), epochs=1, verbose=0)
    assert all(np.abs(to_numpy(w) - b).max() > 0 for w, b in zip(block.trainable_weights, before))


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(num_heads=0, intermediate_dim=8), "TransformerBlock expects num_heads to be a positive integer. Received: num_heads=0"),
        (dict(num_heads=2, intermediate_dim=8, attention="masked"), "TransformerBlock expects attention to be one of 'causal', 'bidirectional'. Received: attention='masked'"),
        (dict(num_heads=2, intermediate_dim=8, dropout=1.0), "TransformerBlock expects dropout in [0, 1). Received: dropout=1.0"),
    ],
)
def test_bad_arguments_are_refused(arguments, message):
    with pytest.raises(ValueError) as error:
        TransformerBlock(**arguments)
    assert str(error.value) == message


def test_heads_must_divide_the_hidden_size_and_bidirectional_blocks_do_not_decode():
    with pytest.raises(ValueError, match=r"num_heads to divide the hidden size .* Received: hidden=10, num_heads=4"):
        TransformerBlock(num_heads=4, intermediate_dim=8)(_inputs(hidden=10))
    block = TransformerBlock(num_heads=2, intermediate_dim=8, attention="bidirectional")
    block(_inputs())
    with pytest.raises(ValueError, match="decodes causal blocks"):
        block.cached_call(_inputs()[:, :1], 0, {"key": None, "value": None})
