"""What the tests need from the Keras backend they run on (KERAS_BACKEND: tensorflow or jax), written
once: a compiled call and the gradients of a loss of a layer's trainable weights. Everything else the
tests do goes through `keras.ops` and NumPy, the same on every backend.
"""

import inspect

import keras

BACKEND = keras.backend.backend()


def compiled(function, jit_compile=False):
    """`function` traced and compiled: a `tf.function` (XLA with `jit_compile`) or `jax.jit` (always XLA)."""
    if BACKEND == "jax":
        import jax

        return jax.jit(function)
    import tensorflow as tf

    return tf.function(function, jit_compile=jit_compile)


def loss_and_gradients(layer, loss_of_outputs, inputs, **call_kwargs):
    """(loss, gradients of it for each of `layer.trainable_variables`) of `loss_of_outputs(outputs)` plus
    the layer's own losses, for `layer(inputs, training=True, **call_kwargs)`."""
    if BACKEND == "jax":
        import jax

        # stateless_call hands its arguments to `call` as they are (layer() drops
        # a `training` the layer's call does not take)
        training = {"training": True} if "training" in inspect.signature(layer.call).parameters else {}

        def loss_of(trainable):
            non_trainable = [v.value for v in layer.non_trainable_variables]
            outputs, _, losses = layer.stateless_call(
                trainable, non_trainable, inputs, return_losses=True, **training, **call_kwargs
            )
            return loss_of_outputs(outputs) + sum(losses)

        return jax.value_and_grad(loss_of)([v.value for v in layer.trainable_variables])
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = loss_of_outputs(layer(inputs, training=True, **call_kwargs)) + sum(layer.losses)
    return loss, tape.gradient(loss, layer.trainable_variables)


def to_numpy(value):
    """A backend tensor (or variable) as a NumPy array."""
    return keras.ops.convert_to_numpy(value)


def input_jacobian(function, x):
    """The Jacobian of `function(x)` with respect to the NumPy array `x`: output shape + x's shape."""
    if BACKEND == "jax":
        import jax

        return to_numpy(jax.jacobian(function)(x))
    import tensorflow as tf

    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = function(x)
    return tape.jacobian(y, x).numpy()
