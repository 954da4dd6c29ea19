"""Checks that float images hold finite values in [0, 1]: eagerly, or as graph assertions.

Out-of-range or NaN images are never clipped or passed on: an image in 0..255
maps every pixel far from the codebook (all codes alike, a reconstruction of
1.0 everywhere once clipped) and a NaN gives finite, meaningless codes.
"""

import keras
import numpy as np
import tensorflow as tf

from vq_keras._backend import IS_TENSORFLOW, is_concrete

# How many offending images an eager error names.
SHOWN_IMAGES = 5


def unit_interval_assertion(images, message):
    """An op that fails with `message` and the images' min and max unless every value
    is in [0, 1] (NaN and infinity are not).

    The one per-call cost is a fused comparison and reduction; the min and max are
    computed only when the check fails. XLA (jit_compile) drops assertions.
    """

    def fail():
        return tf.debugging.Assert(
            False, [message, tf.reduce_min(images), tf.reduce_max(images)], summarize=16
        )

    inside = tf.reduce_all(tf.logical_and(images >= 0.0, images <= 1.0))
    return tf.cond(inside, tf.no_op, fail)


def unit_checked(images, owner):
    """`images` checked to be finite and in [0, 1]; `owner` names the caller in the error.

    Eagerly (NumPy arrays, eager tensors, JAX arrays outside a trace) a ValueError names
    what is wrong; in a TensorFlow graph the returned tensor carries the assertion
    (`graph_unit_checked`). Symbolic Keras tensors and JAX (or torch.compile) traces pass unchecked.
    """
    if isinstance(images, keras.KerasTensor):
        return images
    if is_concrete(images):
        _check_eagerly(np.asarray(images, dtype=np.float32), owner)
        return images
    if not IS_TENSORFLOW:  # a JAX or torch.compile trace has no assertions (short of checkify)
        return images
    return graph_unit_checked(images, owner)


def graph_unit_checked(images, owner):
    """`images` (a tensor of a TensorFlow graph: a tf.function or a tf.data map, whatever the
    Keras backend) carrying the assertion that they are finite and in [0, 1]: everything
    computed from the result runs after the check."""
    message = (
        f"{owner} expects finite float images scaled to [0, 1] (values are never clipped). Divide "
        "images in 0..255 by 255; drop or repair images holding NaN or infinity. Received min and max:"
    )
    with tf.control_dependencies([unit_interval_assertion(images, message)]):
        return tf.identity(images)


def _check_eagerly(values, owner):
    inside = (values >= 0.0) & (values <= 1.0)
    if inside.all():
        return
    finite = np.isfinite(values)
    if not finite.all():
        bad = np.flatnonzero(~finite.reshape(len(values), -1).all(axis=1)) if values.ndim else np.array([0])
        shown = ", ".join(map(str, bad[:SHOWN_IMAGES])) + (", ..." if len(bad) > SHOWN_IMAGES else "")
        raise ValueError(
            f"{owner} expects finite float images in [0, 1]. Received: {int(np.isnan(values).sum())} NaN and "
            f"{int(np.isinf(values).sum())} infinite value(s) in {len(bad)} image(s) (batch index {shown}). "
            "Drop or repair those images (a NaN often comes from a division by zero in preprocessing)."
        )
    raise ValueError(
        f"{owner} expects float images scaled to [0, 1] (values are never clipped). Received: values from "
        f"{values.min():g} to {values.max():g}. Divide images in 0..255 by 255 first (e.g. `images / 255.0`)."
    )
