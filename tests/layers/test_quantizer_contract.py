"""The quantizer contract and the mechanisms BaseQuantizer gives both codebook quantizers:
the registry, cosine similarity, a low-dimensional lookup space (codebook_dim) and the
rotation trick, each against a NumPy recomputation; and every quantizer under XLA,
mixed precision, .keras round trips and MirroredStrategy."""


import keras
import numpy as np
import pytest

from tests.backend import BACKEND, input_jacobian, loss_and_gradients, tensorflow_only, to_numpy, training_call
from tests.mirrored import run_on_two_cpus
from vq_keras.layers import (
    QUANTIZERS,
    FiniteScalarQuantizer,
    ResidualVectorQuantizer,
    VectorQuantizer,
    VectorQuantizerEMA,
    make_quantizer,
)

pytestmark = pytest.mark.backends  # the same checks on every backend (tests/backend.py)
RESTARTS_ON_TF = tensorflow_only("dead-code restarts draw from TensorFlow's stateless RNG (the JAX port: issue #25)")

CODEBOOK_QUANTIZERS = [VectorQuantizer, VectorQuantizerEMA]


def _built(cls, num_embeddings=8, embedding_dim=4, seed=0, **kwargs):
    layer = cls(num_embeddings, embedding_dim, **kwargs)
    layer.build((None, embedding_dim))
    rng = np.random.default_rng(seed)
    layer.codebook.assign(rng.normal(size=layer.codebook_shape).astype("float32"))
    return layer


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _nearest(h, codebook):
    distances = ((h[:, None, :].astype(np.float64) - codebook[None].astype(np.float64)) ** 2).sum(-1)
    return distances.argmin(1)


def test_registry_names_every_quantizer_and_builds_each_from_the_arguments_it_takes():
    assert QUANTIZERS == {
        "ema": VectorQuantizerEMA, "vq": VectorQuantizer, "fsq": FiniteScalarQuantizer, "rvq": ResidualVectorQuantizer,
    }
    common = dict(num_embeddings=8, embedding_dim=4, commitment_cost=0.5, decay=0.9, epsilon=1e-3, name="q")
    vq = make_quantizer("vq", **common)
    assert isinstance(vq, VectorQuantizer) and vq.commitment_cost == 0.5 and vq.name == "q"
    assert make_quantizer("ema", **common).decay == 0.9
    assert make_quantizer("fsq", levels=(3, 3), **common).num_embeddings == 9
    assert make_quantizer("rvq", num_quantizers=2, **common).num_quantizers == 2
    with pytest.raises(ValueError, match=r"quantizer='rvq' \(ResidualVectorQuantizer\) needs num_quantizers"):
        make_quantizer("rvq", **common)
    with pytest.raises(ValueError, match=r"quantizer must be one of \('ema', 'vq', 'fsq', 'rvq'\)"):
        make_quantizer("lfq", **common)


@pytest.mark.parametrize("cls", CODEBOOK_QUANTIZERS)
def test_cosine_similarity_picks_the_code_of_largest_cosine_and_outputs_the_unit_code(cls):
    layer = _built(cls, num_embeddings=16, use_cosine_similarity=True)
    x = np.random.default_rng(1).normal(size=(20, 4)).astype("float32") * 3
    codebook = to_numpy(layer.codebook)
    expected = (_unit(x) @ _unit(codebook).T).argmax(1)
    outputs, codes = layer(x, return_codes=True)
    np.testing.assert_array_equal(to_numpy(codes), expected)
    np.testing.assert_allclose(to_numpy(outputs), _unit(codebook)[expected], atol=1e-6)
    np.testing.assert_allclose(to_numpy(layer.lookup(codes)), _unit(codebook)[expected], atol=1e-6)
    commitment = layer.commitment_cost * ((_unit(x) - _unit(codebook)[expected]) ** 2).mean()
    np.testing.assert_allclose(float(layer.losses[-1]), commitment, rtol=1e-5)


@pytest.mark.parametrize("cls", CODEBOOK_QUANTIZERS)
def test_codebook_dim_looks_codes_up_in_the_projection_and_maps_them_back(cls):
    layer = _built(cls, num_embeddings=8, embedding_dim=6, codebook_dim=2)
    assert layer.codebook.shape == (8, 2)
    (w_in, b_in), (w_out, b_out) = [[to_numpy(v) for v in pair] for pair in (layer.project_in, layer.project_out)]
    b_in[:] = 0.1
    layer.project_in[1].assign(b_in)
    x = np.random.default_rng(2).normal(size=(3, 5, 6)).astype("float32")
    h = x.reshape(-1, 6) @ w_in + b_in
    codebook = to_numpy(layer.codebook)
    expected = _nearest(h, codebook)
    outputs, codes = layer(x, return_codes=True)
    np.testing.assert_array_equal(to_numpy(codes).reshape(-1), expected)
    np.testing.assert_allclose(to_numpy(outputs).reshape(-1, 6), codebook[expected] @ w_out + b_out, atol=1e-5)
    np.testing.assert_allclose(to_numpy(layer.lookup(codes)), to_numpy(outputs), atol=1e-6)
    # The gradient reaches the encoder side (through W_in) and both projections train.
    _, gradients = loss_and_gradients(layer, keras.ops.sum, x)
    paths = [v.path for v in layer.trainable_variables]
    projections = [gradients[paths.index(v.path)] for v in [*layer.project_in, *layer.project_out]]
    assert all(g is not None and np.abs(to_numpy(g)).max() > 0 for g in projections)


def _numpy_rotation_gradient(e, q, upstream):
    """lambda R^T g per row, R = I - 2 r r^T + 2 q^ e^T built as a matrix."""
    grads = []
    for e_i, q_i, g_i in zip(e.astype(np.float64), q.astype(np.float64), upstream.astype(np.float64)):
        e_hat, q_hat = _unit(e_i), _unit(q_i)
        r = _unit(e_hat + q_hat)
        rotation = np.eye(len(e_i)) - 2 * np.outer(r, r) + 2 * np.outer(q_hat, e_hat)
        np.testing.assert_allclose(rotation @ e_hat, q_hat, atol=1e-9)  # R maps e^ onto q^
        grads.append(np.linalg.norm(q_i) / np.linalg.norm(e_i) * rotation.T @ g_i)
    return np.stack(grads)


@pytest.mark.parametrize("cls", CODEBOOK_QUANTIZERS)
def test_rotation_trick_outputs_the_code_and_its_gradient_is_the_rotated_rescaled_upstream(cls):
    layer = _built(cls, num_embeddings=8, embedding_dim=5, gradient="rotation")
    rng = np.random.default_rng(3)
    e = rng.normal(size=(6, 5)).astype("float32")
    upstream = rng.normal(size=(6, 5)).astype("float32")
    outputs = layer(e)
    q = to_numpy(layer.codebook)[_nearest(e, to_numpy(layer.codebook))]
    np.testing.assert_array_equal(to_numpy(outputs), q)  # exactly the code, as straight-through
    gradient = input_jacobian(lambda x: keras.ops.sum(keras.ops.multiply(layer(x), upstream)), e)
    expected = _numpy_rotation_gradient(e, q, upstream)
    np.testing.assert_allclose(gradient, expected, rtol=1e-4, atol=1e-5)
    assert np.abs(gradient - upstream).max() > 1e-2  # not the straight-through gradient


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(codebook_dim=5), r"codebook_dim to be None .* or an integer in \[1, embedding_dim=4\], the size "
         r"of the low-dimensional lookup space. Received: codebook_dim=5"),
        (dict(codebook_dim=0), r"codebook_dim to be None .* Received: codebook_dim=0"),
        (dict(gradient="ste"), r"gradient to be one of 'straight_through', 'rotation'. Received: gradient='ste'"),
    ],
)
@pytest.mark.parametrize("cls", CODEBOOK_QUANTIZERS)
def test_bad_option_arguments_are_clear_errors(cls, kwargs, message):
    with pytest.raises(ValueError, match=f"{cls.__name__} expects " + message):
        cls(8, 4, **kwargs)
    with pytest.raises(TypeError, match=r"use_cosine_similarity to be True or False. Received: "
                                        r"use_cosine_similarity='yes'"):
        cls(8, 4, use_cosine_similarity="yes")


ALL_OPTIONS = dict(use_cosine_similarity=True, codebook_dim=3, gradient="rotation", dead_code_threshold=0.2)


def _every_quantizer(dtype=None, restarts=True):
    # XLA draws another random stream than plain TF for the same seed: no restarts to compare.
    options = ALL_OPTIONS if restarts else {**ALL_OPTIONS, "dead_code_threshold": None}
    # On JAX a codebook trained by gradients takes no restarts (test_base_quantizer says why).
    gradient_options = options if BACKEND == "tensorflow" else {**options, "dead_code_threshold": None}
    return [
        VectorQuantizer(8, 4, dtype=dtype, **gradient_options),
        VectorQuantizerEMA(8, 4, dtype=dtype, **options),
        FiniteScalarQuantizer((4, 3, 3, 2), dtype=dtype),
        ResidualVectorQuantizer(2, 8, 4, dead_code_threshold=options["dead_code_threshold"], dtype=dtype),
    ]


def test_every_quantizer_trains_the_same_eagerly_and_under_xla():
    x = np.random.default_rng(4).normal(size=(2, 3, 3, 4)).astype("float32")
    for eager, compiled in zip(_every_quantizer(restarts=False), _every_quantizer(restarts=False)):
        for layer in (eager, compiled):
            layer.build(x.shape)
        compiled.set_weights(eager.get_weights())
        step = training_call(compiled, jit_compile=True, return_codes=True)
        for _ in range(2):
            want, got = eager(x, training=True, return_codes=True), step(x)
            np.testing.assert_array_equal(to_numpy(got[1]), to_numpy(want[1]))
            np.testing.assert_allclose(to_numpy(got[0]), to_numpy(want[0]), atol=1e-5)
        for a, b in zip(eager.get_weights(), compiled.get_weights()):
            np.testing.assert_allclose(a, b, atol=1e-5)


def test_every_quantizer_keeps_float32_math_under_mixed_precision():
    x = np.random.default_rng(5).normal(size=(2, 3, 3, 4)).astype("float32")
    for full, mixed in zip(_every_quantizer(), _every_quantizer("mixed_float16")):
        full.build(x.shape)
        mixed.build(x.shape)
        mixed.set_weights(full.get_weights())
        assert all(w.dtype == "float32" for w in mixed.weights)
        outputs, codes = mixed(x.astype("float16"), return_codes=True)
        assert keras.backend.standardize_dtype(outputs.dtype) == "float16"
        np.testing.assert_array_equal(to_numpy(codes), to_numpy(full.encode(x.astype("float16").astype("float32"))))
        assert all(keras.backend.standardize_dtype(loss.dtype) == "float32" for loss in mixed.losses)


@RESTARTS_ON_TF
def test_every_quantizer_survives_a_keras_file_round_trip(tmp_path):
    x = np.random.default_rng(6).normal(size=(2, 3, 3, 4)).astype("float32")
    for layer in _every_quantizer():
        inputs = keras.Input((3, 3, 4))
        model = keras.Model(inputs, layer(inputs))
        layer(x, training=True)  # state away from its initial values
        path = tmp_path / f"{layer.name}.keras"
        model.save(path)
        reloaded = keras.saving.load_model(path).layers[-1]
        assert type(reloaded) is type(layer) and reloaded.get_config() == layer.get_config()
        np.testing.assert_array_equal(to_numpy(reloaded.encode(x)), to_numpy(layer.encode(x)))
        np.testing.assert_allclose(to_numpy(reloaded(x)), to_numpy(layer(x)), atol=1e-6)


MIRRORED_SCRIPT = """
import keras
from tests.layers.test_quantizer_contract import _every_quantizer

rng = np.random.default_rng(0)
batches = [rng.normal(size=(8, 2, 2, 4)).astype("float32") for _ in range(3)]
singles = _every_quantizer()
with strategy.scope():
    mirrored = _every_quantizer()
for single, many in zip(singles, mirrored):
    keras.utils.set_random_seed(0)
    single.build((None, 2, 2, 4))
    with strategy.scope():
        many.build((None, 2, 2, 4))
    for variable, value in zip(many.weights, single.get_weights()):
        variable.assign(value)
    step = tf.function(lambda x, layer=many: layer(x, training=True, return_codes=True)[1])
    for batch in batches:
        want = single(batch, training=True, return_codes=True)[1].numpy()
        dataset = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(batch))
        for x in dataset:
            got = strategy.experimental_local_results(strategy.run(step, args=(x,)))
        np.testing.assert_array_equal(np.concatenate([g.numpy() for g in got]), want)
    for one, variable in zip(single.weights, many.weights):
        assert_replicas_equal(strategy, variable, one.numpy(), name=one.path)
    print(type(single).__name__, "replicas agree")
"""


@pytest.mark.large
@pytest.mark.skipif(BACKEND != "tensorflow", reason="tf.distribute's replicas: TensorFlow only")
def test_mirrored_replicas_of_every_quantizer_equal_one_device_on_the_whole_batch():
    output = run_on_two_cpus(MIRRORED_SCRIPT)
    for name in ("VectorQuantizer", "VectorQuantizerEMA", "FiniteScalarQuantizer", "ResidualVectorQuantizer"):
        assert f"{name} replicas agree" in output, output


@pytest.mark.parametrize("kind", sorted(QUANTIZERS))
def test_lookup_takes_codes_and_its_old_keyword_indices_with_a_deprecation_warning(kind):
    layer = make_quantizer(kind, num_embeddings=8, embedding_dim=4, levels=(4, 2), num_quantizers=2)
    inputs = np.random.default_rng(0).normal(size=(3, layer.embedding_dim)).astype("float32")
    layer(inputs)
    codes = layer.encode(inputs)
    expected = to_numpy(layer.lookup(codes))
    np.testing.assert_array_equal(to_numpy(layer.lookup(codes=codes)), expected)
    with pytest.warns(DeprecationWarning, match=r"lookup\(indices=...\) is deprecated: pass .* lookup\(codes=...\)"):
        np.testing.assert_array_equal(to_numpy(layer.lookup(indices=codes)), expected)
    with pytest.raises(TypeError, match="takes codes \\(or its old name indices\\), not both"):
        layer.lookup(codes, indices=codes)
