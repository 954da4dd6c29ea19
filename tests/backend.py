"""What the tests need from the Keras backend they run on (KERAS_BACKEND: tensorflow, jax or torch),
written once: a compiled call and the gradients of a loss of a layer's trainable weights. Everything
else the tests do goes through `keras.ops` and NumPy, the same on every backend.
"""

import inspect

import keras

BACKEND = keras.backend.backend()


def compiled(function, jit_compile=False):
    """`function` traced and compiled: a `tf.function` (XLA with `jit_compile`) or `jax.jit` (always XLA);
    on PyTorch the function itself (Keras' torch backend runs eagerly unless a model asks for torch.compile)."""
    if BACKEND == "torch":
        return function
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
    if BACKEND == "torch":
        loss = loss_of_outputs(layer(inputs, training=True, **call_kwargs)) + sum(layer.losses)
        return loss, _torch_gradients(loss, layer.trainable_variables)
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = loss_of_outputs(layer(inputs, training=True, **call_kwargs)) + sum(layer.losses)
    return loss, tape.gradient(loss, layer.trainable_variables)


def gradients(loss_of, variables, with_losses_of=None):
    """Gradients of the scalar `loss_of()` (any Keras code reading `variables`), plus the losses
    that layer `with_losses_of` adds in it if given, for each of `variables`, as NumPy (TensorFlow's
    None, a gradient that does not exist, as zeros)."""
    if BACKEND == "jax":
        import jax

        def with_values(values):
            mapping = list(zip(variables, values))
            with keras.StatelessScope(state_mapping=mapping, collect_losses=with_losses_of is not None) as scope:
                loss = loss_of()
            return loss + sum(scope.losses)

        return [to_numpy(g) for g in jax.grad(with_values)([v.value for v in variables])]
    if BACKEND == "torch":
        loss = loss_of() + (sum(with_losses_of.losses) if with_losses_of is not None else 0.0)
        return [to_numpy(g) for g in _torch_gradients(loss, variables)]
    import numpy as np
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = loss_of() + (sum(with_losses_of.losses) if with_losses_of is not None else 0.0)
    return [
        np.zeros(v.shape, "float32") if g is None else to_numpy(tf.convert_to_tensor(g))
        for v, g in zip(variables, tape.gradient(loss, variables))
    ]


def _torch_gradients(loss, variables, *tensors):
    """PyTorch: the gradients of `loss` for each of `variables` and `tensors` (zeros where it does
    not depend on one), keeping the graph for further gradients."""
    import torch

    sources = [v.value for v in variables] + list(tensors)
    found = torch.autograd.grad(loss, sources, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(s) if g is None else g for s, g in zip(sources, found)]


def to_numpy(value):
    """A backend tensor (or variable) as a NumPy array."""
    if BACKEND == "torch" and hasattr(value, "detach"):
        value = value.detach()
    return keras.ops.convert_to_numpy(value)


def input_jacobian(function, x):
    """The Jacobian of `function(x)` with respect to the NumPy array `x`: output shape + x's shape."""
    if BACKEND == "jax":
        import jax

        return to_numpy(jax.jacobian(function)(x))
    if BACKEND == "torch":
        import torch

        return to_numpy(torch.autograd.functional.jacobian(function, keras.ops.convert_to_tensor(x)))
    import tensorflow as tf

    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = function(x)
    return tape.jacobian(y, x).numpy()


def losses_and_gradients(layer, x):
    """For each loss `layer(x)` adds: (its value, its gradient with respect to `x`, its gradients with
    respect to each of `layer.trainable_variables`), as NumPy; a gradient that does not exist (TensorFlow:
    None, JAX: zeros) is all zeros."""
    trainable = [v.value for v in layer.trainable_variables]
    if BACKEND == "jax":
        import jax

        non_trainable = [v.value for v in layer.non_trainable_variables]

        def losses_of(trainable, x):
            return layer.stateless_call(trainable, non_trainable, x, return_losses=True)[2]

        results = []
        for index, loss in enumerate(losses_of(trainable, x)):
            of_x, of_weights = jax.grad(lambda t, x: losses_of(t, x)[index], argnums=(1, 0))(trainable, x)
            results.append((to_numpy(loss), to_numpy(of_x), [to_numpy(g) for g in of_weights]))
        return results
    if BACKEND == "torch":
        x = keras.ops.convert_to_tensor(x).requires_grad_()
        layer(x)
        results = []
        for loss in layer.losses:
            *of_weights, of_x = _torch_gradients(loss, layer.trainable_variables, x)
            results.append((to_numpy(loss), to_numpy(of_x), [to_numpy(g) for g in of_weights]))
        return results
    import numpy as np
    import tensorflow as tf

    x = tf.constant(x)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        layer(x)
        losses = list(layer.losses)

    def dense(gradient, like):
        return np.zeros(like.shape, "float32") if gradient is None else to_numpy(tf.convert_to_tensor(gradient))

    return [
        (to_numpy(loss), dense(tape.gradient(loss, x), x),
         [dense(tape.gradient(loss, v), v) for v in layer.trainable_variables])
        for loss in losses
    ]


def training_call(layer, jit_compile=False, **call_kwargs):
    """`batch -> layer(batch, training=True, **call_kwargs)` compiled, the layer's state updates (EMA statistics,
    counters) applied to its variables after each call: a `tf.function`, or on JAX the layer's
    `stateless_call` under `jax.jit` with the new values assigned back, as Keras's JAX trainer does."""
    if BACKEND == "jax":
        import jax

        @jax.jit
        def step(trainable, non_trainable, batch):
            return layer.stateless_call(trainable, non_trainable, batch, training=True, **call_kwargs)

        def call(batch):
            outputs, updated = step(
                [v.value for v in layer.trainable_variables], [v.value for v in layer.non_trainable_variables], batch
            )
            for variable, value in zip(layer.non_trainable_variables, updated):
                variable.assign(value)
            return outputs

        return call
    if BACKEND == "torch":
        return lambda batch: layer(batch, training=True, **call_kwargs)  # eager: assignments apply at once
    import tensorflow as tf

    return tf.function(lambda batch: layer(batch, training=True, **call_kwargs), jit_compile=jit_compile)


def tensorflow_only(reason):
    """A pytest mark skipping a test on any other backend, with `reason` (what is TensorFlow-only)."""
    import pytest

    return pytest.mark.skipif(BACKEND != "tensorflow", reason=f"TensorFlow only: {reason}")
