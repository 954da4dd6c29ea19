"""One layer test in the style of Keras's `run_layer_test` (keras.src.testing, a private module, so
written here): what every vq_keras layer and sub-network must do, checked the same way each time.

`run_layer_test(cls, init_kwargs, input_shape, ...)` checks, against independent references:
- config: `from_config(get_config())` has the same config and, given the same weights, the same output;
- the `.keras` round trip: a model holding the layer, saved and loaded, gives the same output;
- shapes: the output shape, and `compute_output_shape` where the layer has one;
- weights: the numbers of trainable and non-trainable weights;
- training: one optimizer step on a loss of the output changes the trainable weights and stays finite;
- graph == eager: the layer compiled (`tests/backend.py`: a `tf.function`, under XLA if asked, or
  `jax.jit`) gives the eager output.
The checks run on the backend the tests run on (KERAS_BACKEND).
"""

import keras
import numpy as np
from keras import ops

from tests.backend import compiled, loss_and_gradients


def run_layer_test(
    cls, init_kwargs, input_shape, expected_output_shape=None, expected_num_trainable_weights=None,
    expected_num_non_trainable_weights=None, call_kwargs=None, input_dtype="float32", training_step=True,
    jit_compile=False, tmp_path=None, seed=0, input_range=None,
):
    """Runs the checks of the module docstring on `cls(**init_kwargs)` called on a random batch of
    `input_shape` (batch first; normal values, or uniform in `input_range`, e.g. (0, 1) for images);
    returns the layer (built)."""
    call_kwargs = call_kwargs or {}
    inputs = _random_inputs(input_shape, input_dtype, seed, input_range)
    layer = cls(**init_kwargs)
    outputs = _first(layer(inputs, **call_kwargs))
    if expected_output_shape is not None:
        assert tuple(outputs.shape) == tuple(expected_output_shape), (tuple(outputs.shape), expected_output_shape)
        if _has_own_output_shape(cls):
            computed = layer.compute_output_shape(tuple(input_shape))
            computed = computed[0] if computed and isinstance(computed[0], (tuple, list)) else computed
            assert tuple(computed) == tuple(expected_output_shape), computed
    if expected_num_trainable_weights is not None:
        assert len(layer.trainable_weights) == expected_num_trainable_weights, len(layer.trainable_weights)
    if expected_num_non_trainable_weights is not None:
        assert len(layer.non_trainable_weights) == expected_num_non_trainable_weights, len(layer.non_trainable_weights)
    _check_config_round_trip(cls, layer, inputs, call_kwargs)
    _check_graph_equals_eager(layer, inputs, call_kwargs, jit_compile)
    if tmp_path is not None:
        _check_keras_file_round_trip(layer, inputs, call_kwargs, input_dtype, tmp_path)
    if training_step and layer.trainable_weights:
        _check_one_training_step(cls, init_kwargs, inputs, call_kwargs)
    return layer


def _random_inputs(shape, dtype, seed, value_range):
    rng = np.random.default_rng(seed)
    if np.issubdtype(np.dtype(dtype), np.integer):
        return rng.integers(0, 8, shape).astype(dtype)
    if value_range is not None:
        return rng.uniform(*value_range, size=shape).astype(dtype)
    return rng.normal(size=shape).astype(dtype)


def _first(value):
    return value[0] if isinstance(value, (tuple, list)) else value


def _has_own_output_shape(cls):
    return any("compute_output_shape" in vars(base) for base in cls.__mro__ if not base.__module__.startswith("keras"))


def _check_config_round_trip(cls, layer, inputs, call_kwargs):
    config = layer.get_config()
    clone = cls.from_config(config)
    assert clone.get_config() == config
    _first(clone(inputs, **call_kwargs))  # builds it
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(_numpy(clone(inputs, **call_kwargs)), _numpy(layer(inputs, **call_kwargs)))


def _check_keras_file_round_trip(layer, inputs, call_kwargs, input_dtype, tmp_path):
    symbolic = keras.Input(inputs.shape[1:], dtype=input_dtype)
    model = keras.Model(symbolic, _first(layer(symbolic, **call_kwargs)))
    path = tmp_path / f"{layer.name}.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(_numpy(reloaded(inputs)), _numpy(model(inputs)))


def _check_graph_equals_eager(layer, inputs, call_kwargs, jit_compile):
    eager = _numpy(layer(inputs, **call_kwargs))
    for compile_with_xla in ({False, jit_compile}):
        graph = compiled(lambda x: _first(layer(x, **call_kwargs)), jit_compile=compile_with_xla)
        np.testing.assert_allclose(_numpy(graph(inputs)), eager, rtol=1e-5, atol=1e-5,
                                   err_msg=f"compiled (jit_compile={compile_with_xla}) differs from eager")


def _check_one_training_step(cls, init_kwargs, inputs, call_kwargs):
    layer = cls(**init_kwargs)
    _first(layer(inputs, **call_kwargs))
    before = [np.array(w) for w in layer.trainable_weights]
    optimizer = keras.optimizers.SGD(0.1)
    loss, gradients = loss_and_gradients(
        layer, lambda outputs: ops.mean(ops.square(ops.cast(_first(outputs), "float32"))), inputs, **call_kwargs
    )
    assert np.isfinite(float(loss)), float(loss)
    optimizer.apply_gradients(zip(gradients, layer.trainable_weights))
    changed = [not np.array_equal(np.array(w), b) for w, b in zip(layer.trainable_weights, before)]
    assert any(changed), "one training step changed no trainable weight"
    assert all(np.isfinite(np.array(w)).all() for w in layer.trainable_weights)


def _numpy(value):
    return ops.convert_to_numpy(_first(value))
