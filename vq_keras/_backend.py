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
