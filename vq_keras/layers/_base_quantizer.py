"""The nearest-neighbour lookup and losses shared by both quantizer layers."""

import keras
import tensorflow as tf
from keras import ops

from vq_keras import metrics
from vq_keras.layers._codebook_seeding import fold_seed, kmeans_plus_plus, sample_rows
from vq_keras._index_checks import checked_range
from vq_keras._replicas import gather_over_replicas, sum_over_replicas
from vq_keras.layers._validation import require_number, require_positive_int

CODEBOOK_INITS = ("uniform", "kmeans++")

def codebook_initializer():
    """Uniform in +-sqrt(3 / embedding_dim), as Sonnet initialises its codebooks.

    The codebook is (num_embeddings, embedding_dim), so fan_out is embedding_dim.
    A new instance per layer: an unseeded Keras initializer repeats its values.
    """
    return keras.initializers.VarianceScaling(mode="fan_out", distribution="uniform")


@ops.custom_gradient
def _straight_through(inputs, quantized):
    """Returns `quantized`; the gradient flows to `inputs` unchanged (STE)."""

    def grad(*args, upstream=None):
        if upstream is None:
            (upstream,) = args
        return upstream, ops.zeros_like(quantized)

    return tf.identity(quantized), grad


class BaseQuantizer(keras.layers.Layer):
    """Maps each vector on the last axis to its nearest codebook vector.

    Subclasses create `self.codebook` in `_build_codebook()` and may update it
    in `_update_codebook()`; everything else (distances, straight-through
    gradient, losses, perplexity, k-means++ seeding and dead-code restart)
    lives here once.

    Dead-code restart (`dead_code_threshold` not None): every training call
    updates u_i <- usage_decay * u_i + (1 - usage_decay) * n_i, an EMA of the
    number n_i of vectors assigned to code i (summed over replicas; u starts
    at 0, so codes unused by the first training batch are restarted at once,
    a data-dependent start). A code whose share u_i / sum(u) falls
    below dead_code_threshold / num_embeddings (that fraction of a uniform
    share) is moved onto an encoder output of the current batch, gathered over
    all replicas and drawn without replacement (with replacement if the global
    batch has fewer vectors than codes) by a stateless RNG seeded with `seed`
    and the training-call counter, so every replica restarts identically. A
    restarted code starts over with the mean usage (a uniform share). Live
    codes are untouched. The codes returned by this call are those before the
    restart.

    k-means++ (`codebook_init="kmeans++"`): the first training call replaces
    the codebook with a k-means++ seeding of the batch's (gathered) encoder
    outputs before quantizing it; the `codebook_initialized` weight records
    that it happened, so a reloaded layer does not seed again. See
    `kmeans_plus_plus` for batches with fewer distinct vectors than codes.
    """

    def __init__(
        self,
        num_embeddings,
        embedding_dim,
        commitment_cost=0.25,
        dead_code_threshold=None,
        usage_decay=0.99,
        codebook_init="uniform",
        seed=0,
        **kwargs,
    ):
        kwargs.setdefault("autocast", False)  # distances and codebook stay float32
        super().__init__(**kwargs)
        name = type(self).__name__
        require_positive_int(name, "num_embeddings", num_embeddings)
        require_positive_int(name, "embedding_dim", embedding_dim)
        require_number(name, "commitment_cost (beta)", commitment_cost, low=0)
        _require_threshold(name, dead_code_threshold)
        require_number(name, "usage_decay", usage_decay, low=0, high=1)
        if codebook_init not in CODEBOOK_INITS:
            raise ValueError(
                f"{name} expects codebook_init to be one of {', '.join(map(repr, CODEBOOK_INITS))}. "
                f"Received: codebook_init={codebook_init!r}"
            )
        require_positive_int(name, "seed", seed, allow_zero=True)
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.commitment_cost = commitment_cost
        self.dead_code_threshold = dead_code_threshold
        self.usage_decay = usage_decay
        self.codebook_init = codebook_init
        self.seed = seed

    def __call__(self, inputs, *args, **kwargs):
        self._check_dtype(inputs)
        return super().__call__(inputs, *args, **kwargs)

    def _check_dtype(self, inputs):
        dtype = keras.backend.standardize_dtype(getattr(inputs, "dtype", "float32"))
        if not keras.backend.is_float_dtype(dtype):
            raise TypeError(
                f"{type(self).__name__} expects floating-point inputs (the encoder "
                f"output z_e). Received: dtype={dtype}. Cast the inputs to float32 "
                "first, or pass integer code indices to `lookup()` instead."
            )

    def build(self, input_shape):
        if len(input_shape) < 2 or input_shape[-1] != self.embedding_dim:
            raise ValueError(
                f"{type(self).__name__} expects the last input axis to equal "
                f"embedding_dim={self.embedding_dim}. Received: "
                f"input_shape={tuple(input_shape)}"
            )
        self._build_codebook()
        if self.dead_code_threshold is not None:
            self.usage_ema = self._add_state("usage_ema", (self.num_embeddings,), "zeros")
        if self.codebook_init == "kmeans++":
            self.codebook_initialized = self._add_state("codebook_initialized", (), "zeros")
        if self.dead_code_threshold is not None or self.codebook_init == "kmeans++":
            self.training_calls = self._add_state("training_calls", (), "zeros")

    def _add_state(self, name, shape, initializer):
        """A non-trainable float32 weight that every replica updates identically."""
        # Every replica computes the same update from all-reduced or gathered
        # values, so the first replica's value stands for all.
        return self.add_weight(
            name=name,
            shape=shape,
            initializer=initializer,
            dtype="float32",
            autocast=False,  # float32 even inside a mixed-precision autocast scope
            trainable=False,
            aggregation="only_first_replica",
        )

    def _build_codebook(self):
        raise NotImplementedError

    def _update_codebook(self, flat_inputs, flat_codes, counts):
        """Hook for codebook updates in the forward pass (EMA); no-op here.

        flat_codes: int32 (N,) code of each of the N (N, D) flat_inputs;
        counts: float32 (K,) number of them per code on this replica."""

    def _add_codebook_loss(self, inputs, quantized):
        """Hook for the codebook loss |sg[z_e] - e|^2; the EMA variant has none."""

    def _restart_codes(self, dead, vectors):
        """Moves the codes where `dead` (bool (K,)) onto the rows of `vectors` (K, D)."""
        self.codebook.assign(ops.where(dead[:, None], vectors, self.codebook))

    def _seed(self, purpose):
        """A stateless RNG seed, the same on every replica, new every training call."""
        seed = ops.convert_to_tensor([self.seed, purpose], "int32")
        return fold_seed(seed, ops.cast(self.training_calls, "int32"))

    def _gathered(self, flat_inputs):
        """Every replica's vectors, in replica order (the reshape restores the static D)."""
        return ops.reshape(gather_over_replicas(flat_inputs), (-1, self.embedding_dim))

    def _seed_codebook_once(self, flat_inputs):
        """k-means++ on the first training call's (gathered) vectors, then never again."""
        # Gathered outside the cond: a replica collective cannot sit in a branch.
        vectors = self._gathered(flat_inputs)
        done = ops.convert_to_tensor(self.codebook_initialized) > 0
        codebook = ops.cond(
            done,
            lambda: ops.convert_to_tensor(self.codebook),
            lambda: kmeans_plus_plus(vectors, self.num_embeddings, self._seed(0)),
        )
        self.codebook.assign(codebook)
        self.codebook_initialized.assign(1.0)

    def _restart_dead_codes(self, flat_inputs, counts):
        counts = sum_over_replicas(counts)
        usage = self.usage_decay * self.usage_ema + (1.0 - self.usage_decay) * counts
        mean_usage = ops.mean(usage)
        dead = usage < self.dead_code_threshold * mean_usage
        self.usage_ema.assign(ops.where(dead, mean_usage, usage))
        candidates = sample_rows(self._gathered(flat_inputs), self.num_embeddings, self._seed(1))
        self._restart_codes(dead, candidates)

    def compute_output_shape(self, input_shape):
        return input_shape

    def _distances(self, flat_inputs):
        codebook = ops.convert_to_tensor(self.codebook)
        return (
            ops.sum(ops.square(flat_inputs), axis=1, keepdims=True)
            - 2.0 * ops.matmul(flat_inputs, ops.transpose(codebook))
            + ops.sum(ops.square(codebook), axis=1)[None, :]
        )

    def _nearest(self, flat_inputs):
        # tf.argmin, not ops.argmin: Keras' adds a negative-zero pass (4 element-wise
        # ops) over the whole (N, K) distance matrix; the nearest code is the same.
        return tf.argmin(self._distances(flat_inputs), axis=1, output_type="int32")

    def encode(self, inputs):
        """Returns the int32 index of the nearest code for every vector."""
        self._check_dtype(inputs)
        inputs = ops.cast(inputs, "float32")
        flat = ops.reshape(inputs, (-1, self.embedding_dim))
        return ops.reshape(self._nearest(flat), ops.shape(inputs)[:-1])

    def lookup(self, indices):
        """Returns the float32 codebook vectors for int code indices in [0, num_embeddings).

        Other indices are an error, never a wrapped (-1: the last code) or zero lookup:
        eagerly a TypeError (not integers) or ValueError; in a graph an assertion that
        runs before the gather (XLA drops assertions)."""
        name = type(self).__name__
        if not hasattr(indices, "dtype"):
            indices = ops.convert_to_tensor(indices)
        dtype = keras.backend.standardize_dtype(indices.dtype)
        if not keras.backend.is_int_dtype(dtype):
            raise TypeError(
                f"{name} expects integer code indices in lookup(). Received: dtype={dtype}. "
                "Pass the int32 codes from encode(), or cast them with tf.cast(..., 'int32')."
            )
        message = f"{name} expects codes in [0, num_embeddings={self.num_embeddings}) in lookup()."
        return self._gather(checked_range(indices, self.num_embeddings, message, what="codes"))

    def _gather(self, indices):
        return ops.take(ops.convert_to_tensor(self.codebook), indices, axis=0)

    def perplexity(self, codes):
        """exp(entropy) of the code assignments in `codes` (1 to num_embeddings)."""
        return metrics.perplexity(codes, self.num_embeddings)

    def call(self, inputs, training=None, return_codes=False):
        inputs32 = ops.cast(inputs, "float32")
        flat = ops.reshape(inputs32, (-1, self.embedding_dim))
        if training and self.codebook_init == "kmeans++":
            self._seed_codebook_once(flat)
        flat_codes = self._nearest(flat)
        codes = ops.reshape(flat_codes, ops.shape(inputs32)[:-1])
        quantized = self._gather(codes)  # from the codebook the codes were chosen from
        if training:
            self._train_codebook(flat, flat_codes)
        self._add_codebook_loss(inputs32, quantized)
        commitment = ops.mean(ops.square(inputs32 - ops.stop_gradient(quantized)))
        self.add_loss(self.commitment_cost * commitment)
        outputs = ops.cast(_straight_through(inputs32, quantized), self.compute_dtype)
        return (outputs, codes) if return_codes else outputs

    def _train_codebook(self, flat_inputs, flat_codes):
        counts = metrics.code_counts(flat_codes, self.num_embeddings)
        self._update_codebook(flat_inputs, flat_codes, counts)
        if self.dead_code_threshold is not None:
            self._restart_dead_codes(flat_inputs, counts)
        if hasattr(self, "training_calls"):
            self.training_calls.assign_add(1.0)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_embeddings=self.num_embeddings,
            embedding_dim=self.embedding_dim,
            commitment_cost=self.commitment_cost,
            dead_code_threshold=self.dead_code_threshold,
            usage_decay=self.usage_decay,
            codebook_init=self.codebook_init,
            seed=self.seed,
        )
        return config


def _require_threshold(owner, threshold):
    valid = threshold is None or (
        not isinstance(threshold, bool) and isinstance(threshold, (int, float)) and 0 < threshold < 1
    )
    if not valid:
        raise ValueError(
            f"{owner} expects dead_code_threshold to be None (no restarts) or a number in (0, 1), "
            "the fraction of a uniform share of the assignments below which a code is restarted. "
            f"Received: dead_code_threshold={threshold!r}"
        )
