"""Range checks of integer indices traced into a graph."""

import tensorflow as tf


def range_checked(indices, limit, message):
    """`indices` carrying assertions that they lie in [0, limit), failing with `message`.

    Everything computed from the returned tensor runs after the assertions, so an index
    out of range fails with `message`, never first in a gather's own index error.
    """
    checks = [
        tf.debugging.assert_non_negative(indices, message=message),
        tf.debugging.assert_less(indices, tf.cast(limit, indices.dtype), message=message),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(indices)
