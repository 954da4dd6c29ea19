"""Range checks of integer indices: eagerly a ValueError, in a graph assertions."""

import keras
import tensorflow as tf
from keras import ops

from vq_keras._backend import IS_TENSORFLOW, is_concrete


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


def checked_range(indices, limit, message, what="values"):
    """`indices` checked to lie in [0, limit): eagerly a ValueError (`message`, then
    "Received: <what> from <min> to <max>"); in a TensorFlow graph `range_checked`; symbolic
    Keras tensors and JAX (or torch.compile) traces pass unchecked."""
    if isinstance(indices, keras.KerasTensor):
        return indices
    if is_concrete(indices):
        values = ops.convert_to_numpy(indices)
        if values.size and (values.min() < 0 or values.max() >= limit):
            raise ValueError(f"{message} Received: {what} from {values.min()} to {values.max()}")
        return indices
    if not IS_TENSORFLOW:  # a JAX or torch.compile trace has no assertions (short of checkify)
        return indices
    return range_checked(indices, limit, message)
