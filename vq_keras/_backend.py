"""The few places where Keras gives no one way for every backend, written per backend here.

Everything else in the layers is `keras.ops`. TensorFlow keeps its own kernels where they are
faster (argmin) and its in-graph assertions; JAX and PyTorch get the `keras.ops` equivalents.
"""

import keras
import numpy as np
from keras import ops

BACKEND = keras.backend.backend()
IS_TENSORFLOW = BACKEND == "tensorflow"
IS_JAX = BACKEND == "jax"


def argmin_int32(values, axis):
    """int32 index of the smallest value along `axis`."""
    if IS_TENSORFLOW:
        import tensorflow as tf

        # tf.argmin, not ops.argmin: Keras' adds a negative-zero pass (4 element-wise
        # ops) over the whole (N, K) distance matrix; the index is the same.
        return tf.argmin(values, axis=axis, output_type="int32")
    return ops.cast(ops.argmin(values, axis=axis), "int32")


def is_concrete(value):
    """Whether `value`'s numbers can be read now: an eager TensorFlow tensor, a JAX array outside a
    trace, a PyTorch tensor outside torch.compile (not a tf.function's, jax.jit's or torch.compile's
    symbolic value)."""
    if IS_TENSORFLOW:
        import tensorflow as tf

        return tf.executing_eagerly()
    if IS_JAX:
        import jax

        return not isinstance(value, jax.core.Tracer)
    import torch

    return not torch.compiler.is_compiling()


# Stateless random draws from an int (2,) seed. TensorFlow keeps the Philox stream its
# restarts and k-means++ seeding have always drawn (so trained entries retrain the same);
# JAX draws from threefry keys made of the same two numbers, PyTorch from a torch.Generator seeded
# with them (folds and splits hash the numbers with NumPy's SeedSequence: PyTorch runs eagerly):
# seeded and deterministic on each backend, but a different stream on each (Keras' own stateless
# draws differ across backends too).
TENSORFLOW_RNG = "philox"  # one algorithm everywhere: "auto_select" may differ between XLA and plain TF


def _jax_key(seed):
    import jax
    import jax.numpy as jnp

    return jax.random.wrap_key_data(jnp.asarray(seed).astype(jnp.uint32), impl="threefry2x32")


def _seed_words(seed, *more):
    return [int(word) & 0xFFFFFFFF for word in (*ops.convert_to_numpy(seed).ravel(), *more)]


def _hashed_seeds(words, count):
    """`count` new int32 (2,) seeds from a list of 32-bit words (PyTorch's folds and splits)."""
    state = np.random.SeedSequence(words).generate_state(2 * count).view(np.int32).reshape(count, 2)
    return [ops.convert_to_tensor(pair) for pair in state]


def _torch_generator(seed):
    import torch

    first, second = _seed_words(seed)
    return torch.Generator().manual_seed((first << 32) | second)


def _torch_draw(draw, shape, seed):
    """A CPU torch.Generator's draw of `shape`, on Keras' device."""
    return ops.convert_to_tensor(draw(tuple(int(size) for size in shape), generator=_torch_generator(seed)))


def fold_seed(seed, value):
    """A new (2,) seed from `seed` and an integer `value`."""
    if IS_TENSORFLOW:
        import tensorflow as tf

        return tf.random.experimental.stateless_fold_in(seed, tf.cast(value, "int32"), alg=TENSORFLOW_RNG)
    if IS_JAX:
        import jax

        return jax.random.key_data(jax.random.fold_in(_jax_key(seed), value))
    return _hashed_seeds(_seed_words(seed, ops.convert_to_numpy(value)), 1)[0]


def stateless_uniform(shape, seed):
    """float32 draws uniform in [0, 1) of `shape` from `seed`."""
    if IS_TENSORFLOW:
        import tensorflow as tf

        return tf.random.stateless_uniform(shape, seed, alg=TENSORFLOW_RNG)
    if IS_JAX:
        import jax

        return jax.random.uniform(_jax_key(seed), tuple(shape), "float32")
    import torch

    return _torch_draw(torch.rand, shape, seed)


def stateless_normal(shape, seed):
    """float32 standard normal draws of `shape` from `seed`."""
    if IS_TENSORFLOW:
        import tensorflow as tf

        return tf.random.stateless_normal(shape, seed, alg=TENSORFLOW_RNG)
    if IS_JAX:
        import jax

        return jax.random.normal(_jax_key(seed), tuple(shape), "float32")
    import torch

    return _torch_draw(torch.randn, shape, seed)


def split_seed(seed):
    """Two new (2,) seeds from `seed`."""
    if IS_TENSORFLOW:
        import tensorflow as tf

        first, second = tf.unstack(tf.random.experimental.stateless_split(seed, alg=TENSORFLOW_RNG))
        return first, second
    if IS_JAX:
        import jax

        first, second = jax.random.split(_jax_key(seed))
        return jax.random.key_data(first), jax.random.key_data(second)
    return tuple(_hashed_seeds(_seed_words(seed), 2))


def categorical(logits, seed):
    """int32 (N,) indices drawn from the categorical distributions of float32 (N, K) logits
    (rows of -inf: excluded codes) with the (2,) seed `seed`."""
    if IS_TENSORFLOW:
        import tensorflow_probability as tfp

        # TFP's Categorical: the stream every fixed-seed sample of the zoo was drawn from.
        return ops.cast(tfp.distributions.Categorical(logits=logits).sample(seed=seed), "int32")
    if IS_JAX:
        import jax

        return jax.random.categorical(_jax_key(seed), logits, axis=-1).astype("int32")
    # Gumbel-max (the -inf of a filtered code stays -inf): argmax(logits + Gumbel noise).
    uniform = ops.maximum(stateless_uniform(ops.shape(logits), seed), 1e-20)
    return ops.cast(ops.argmax(logits - ops.log(-ops.log(uniform)), axis=-1), "int32")


def stable_argsort(values, axis=-1):
    """int32 indices that sort `values` ascending along `axis`, ties in their order."""
    if IS_TENSORFLOW:
        import tensorflow as tf

        return tf.argsort(values, axis=axis, stable=True)  # Keras' TensorFlow argsort is not stable
    return ops.cast(ops.argsort(values, axis=axis), "int32")  # jax.numpy's and torch's (as Keras calls it) are


def compiled(function, layer):
    """`function(*args)` compiled for the backend, reading `layer`'s variables as they are at each
    call: a tf.function (variables by reference), or jax.jit with the variables' values passed in
    at each call (a jit closure would freeze them at the first trace); on PyTorch the function
    itself, run eagerly (torch.compile of a data-dependent while loop falls back to eager anyway)."""
    if IS_TENSORFLOW:
        import tensorflow as tf

        return tf.function(function, reduce_retracing=True)
    if not IS_JAX:
        import torch

        return torch.no_grad()(function)  # sampling builds no autograd graph
    import jax

    variables = list(layer.variables)

    def stateless(values, *args):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))):
            return function(*args)

    jitted = jax.jit(stateless)
    return lambda *args: jitted([variable.value for variable in variables], *args)


def portable_compile_config(config):
    """A saved compile config whose optimizer every backend can rebuild.

    Keras' PyTorch backend saves its optimizers under its own module
    (keras.src.backend.torch.optimizers...), which loading on another backend imports (and with
    it PyTorch); the public name keras.optimizers.<class> gives each backend its own class."""
    optimizer = config.get("optimizer") if isinstance(config, dict) else None
    if isinstance(optimizer, dict) and str(optimizer.get("module", "")).startswith("keras.src.backend."):
        config = {**config, "optimizer": {**optimizer, "module": "keras.optimizers"}}
    return config
