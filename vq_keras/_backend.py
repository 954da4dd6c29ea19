"""The few places where Keras gives no one way for every backend, written per backend here.

Everything else in the layers is `keras.ops`. TensorFlow keeps its own kernels where they are
faster (argmin) and its in-graph assertions; JAX gets the `keras.ops` equivalents.
"""

import keras
from keras import ops

IS_TENSORFLOW = keras.backend.backend() == "tensorflow"


def argmin_int32(values, axis):
    """int32 index of the smallest value along `axis`."""
    if IS_TENSORFLOW:
        import tensorflow as tf

        # tf.argmin, not ops.argmin: Keras' adds a negative-zero pass (4 element-wise
        # ops) over the whole (N, K) distance matrix; the index is the same.
        return tf.argmin(values, axis=axis, output_type="int32")
    return ops.cast(ops.argmin(values, axis=axis), "int32")


def is_concrete(value):
    """Whether `value`'s numbers can be read now: an eager TensorFlow tensor or a JAX array outside a
    trace (not a tf.function's or jax.jit's symbolic value)."""
    if IS_TENSORFLOW:
        import tensorflow as tf

        return tf.executing_eagerly()
    import jax

    return not isinstance(value, jax.core.Tracer)


# Stateless random draws from an int (2,) seed. TensorFlow keeps the Philox stream its
# restarts and k-means++ seeding have always drawn (so trained entries retrain the same);
# JAX draws from threefry keys made of the same two numbers: seeded and deterministic on each
# backend, but a different stream (Keras' own stateless draws differ across backends too).
TENSORFLOW_RNG = "philox"  # one algorithm everywhere: "auto_select" may differ between XLA and plain TF


def _jax_key(seed):
    import jax
    import jax.numpy as jnp

    return jax.random.wrap_key_data(jnp.asarray(seed).astype(jnp.uint32), impl="threefry2x32")


def fold_seed(seed, value):
    """A new (2,) seed from `seed` and an integer `value`."""
    if IS_TENSORFLOW:
        import tensorflow as tf

        return tf.random.experimental.stateless_fold_in(seed, tf.cast(value, "int32"), alg=TENSORFLOW_RNG)
    import jax

    return jax.random.key_data(jax.random.fold_in(_jax_key(seed), value))


def stateless_uniform(shape, seed):
    """float32 draws uniform in [0, 1) of `shape` from `seed`."""
    if IS_TENSORFLOW:
        import tensorflow as tf

        return tf.random.stateless_uniform(shape, seed, alg=TENSORFLOW_RNG)
    import jax

    return jax.random.uniform(_jax_key(seed), tuple(shape), "float32")


def stateless_normal(shape, seed):
    """float32 standard normal draws of `shape` from `seed`."""
    if IS_TENSORFLOW:
        import tensorflow as tf

        return tf.random.stateless_normal(shape, seed, alg=TENSORFLOW_RNG)
    import jax

    return jax.random.normal(_jax_key(seed), tuple(shape), "float32")


def split_seed(seed):
    """Two new (2,) seeds from `seed`."""
    if IS_TENSORFLOW:
        import tensorflow as tf

        first, second = tf.unstack(tf.random.experimental.stateless_split(seed, alg=TENSORFLOW_RNG))
        return first, second
    import jax

    first, second = jax.random.split(_jax_key(seed))
    return jax.random.key_data(first), jax.random.key_data(second)


def categorical(logits, seed):
    """int32 (N,) indices drawn from the categorical distributions of float32 (N, K) logits
    (rows of -inf: excluded codes) with the (2,) seed `seed`."""
    if IS_TENSORFLOW:
        import tensorflow_probability as tfp

        # TFP's Categorical: the stream every fixed-seed sample of the zoo was drawn from.
        return ops.cast(tfp.distributions.Categorical(logits=logits).sample(seed=seed), "int32")
    import jax

    return jax.random.categorical(_jax_key(seed), logits, axis=-1).astype("int32")


def stable_argsort(values, axis=-1):
    """int32 indices that sort `values` ascending along `axis`, ties in their order."""
    if IS_TENSORFLOW:
        import tensorflow as tf

        return tf.argsort(values, axis=axis, stable=True)  # Keras' TensorFlow argsort is not stable
    return ops.cast(ops.argsort(values, axis=axis), "int32")  # jax.numpy's argsort is stable


def compiled(function, layer):
    """`function(*args)` compiled for the backend, reading `layer`'s variables as they are at each
    call: a tf.function (variables by reference), or jax.jit with the variables' values passed in
    at each call (a jit closure would freeze them at the first trace)."""
    if IS_TENSORFLOW:
        import tensorflow as tf

        return tf.function(function, reduce_retracing=True)
    import jax

    variables = list(layer.variables)

    def stateless(values, *args):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))):
            return function(*args)

    jitted = jax.jit(stateless)
    return lambda *args: jitted([variable.value for variable in variables], *args)
