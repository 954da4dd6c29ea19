"""The quantizer contract, and the codebook machinery both codebook quantizers share.

The quantizer contract
======================
A quantizer layer replaces each vector z_e on the last axis of the encoder output with a
discrete code and its vector. Every quantizer in `vq_keras.layers` (and any new one) is a
`Quantizer` subclass providing:

- `call(inputs, training=None, return_codes=False)`: the quantized tensor, same shape as
  the inputs, with a gradient to the inputs (straight-through, or another estimator), cast
  to the layer's compute dtype; with `return_codes=True` also the int32 codes. Its losses
  (commitment, codebook) go through `add_loss` (a quantizer without any, such as
  `FiniteScalarQuantizer`, adds none); `VQModel` adds them to the reconstruction loss.
  `training=True` may update non-trainable state (EMA codebooks, restarts); otherwise
  nothing changes.
- `encode(inputs)`: int32 codes, shape `inputs.shape[:-1]` (plus a last axis of length
  `code_depth` when `code_depth` is not None, e.g. the stages of a residual quantizer).
- `lookup(codes)`: the float32 vectors of int codes (the inverse of `encode` up to
  quantization); codes outside [0, num_embeddings) are an error, never a wrapped lookup.
- `num_embeddings`: the number of codes per position (per stage), the `K` every metric,
  prior and range check uses; `embedding_dim`: the size of the last input axis; and
  `code_depth` (None, or the length of the codes' extra last axis).
- `get_config()`: the constructor arguments; the class registered for serialization
  under the package "vq_keras".
- Metrics: `VQModel` logs perplexity and codebook usage from the codes (`code_counts` over
  `num_embeddings`), pooled over the code axis when `code_depth` is set; the layer itself
  only provides `perplexity(codes)`.
- Replicas (tf.distribute): state a training call updates is a non-trainable float32
  weight with `aggregation="only_first_replica"` that every replica updates identically
  from values summed or gathered over the replicas (`vq_keras._replicas`).
- Mixed precision: `autocast=False`; the layer casts its inputs to float32, does all
  distances, rounding and statistics in float32, keeps its weights float32 and casts only
  its output to the compute dtype.
- Under XLA (`jit_compile=True`) the math must compile: no Python branches on tensor
  values, no bincount.

`QUANTIZERS` in `vq_keras/layers/_registry.py` (exported by `vq_keras.layers`) names every
quantizer ("vq", "ema", "fsq", "rvq"); `make_quantizer(kind, **arguments)` builds one by name, which is how `VQVAE`,
`VQVAE2` and `training.fit --quantizer` choose one. A new quantizer is one file with a
`Quantizer` subclass and one line in that registry.
"""

import warnings

import keras
from keras import ops

from vq_keras import metrics
from vq_keras._backend import IS_JAX, argmin_int32, fold_seed
from vq_keras.layers._codebook_seeding import kmeans_plus_plus, sample_rows
from vq_keras._index_checks import checked_range
from vq_keras._replicas import gather_over_replicas, sum_over_replicas
from vq_keras.layers._validation import require_choice, require_number, require_positive_int, takes_numpy_scalars

CODEBOOK_INITS = ("uniform", "kmeans++")
GRADIENTS = ("straight_through", "rotation")
# Guards the norms the rotation trick and l2 normalisation divide by.
NORM_EPSILON = 1e-12

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

    return ops.copy(quantized), grad


def l2_normalize(vectors):
    """`vectors` scaled to unit l2 norm on the last axis (zero vectors stay zero)."""
    return vectors * ops.rsqrt(ops.maximum(ops.sum(ops.square(vectors), axis=-1, keepdims=True), NORM_EPSILON))


def rotated(inputs, quantized):
    """The rotation trick (Fifty et al. 2024, arXiv:2410.06424, eq. 4 and algorithm 1).

    Returns a tensor equal to `quantized` q whose gradient to `inputs` e is
    lambda R^T g, where R = I - 2 r r^T + 2 q^ e^T (r = (e^ + q^) / |e^ + q^|,
    ^ = unit vector) is the rotation taking e^ onto q^ and lambda = |q| / |e|, both
    treated as constants (no gradient to q). R is applied as vector operations, never
    built as a matrix.
    """
    norm_e = ops.sqrt(ops.maximum(ops.sum(ops.square(inputs), axis=-1, keepdims=True), NORM_EPSILON))
    norm_q = ops.sqrt(ops.maximum(ops.sum(ops.square(quantized), axis=-1, keepdims=True), NORM_EPSILON))
    e_hat = ops.stop_gradient(inputs / norm_e)
    q_hat = ops.stop_gradient(quantized / norm_q)
    r = l2_normalize(e_hat + q_hat)
    scale = ops.stop_gradient(norm_q / norm_e)
    dot = lambda a, b: ops.sum(a * b, axis=-1, keepdims=True)  # noqa: E731
    transformed = scale * (inputs - 2.0 * r * dot(r, inputs) + 2.0 * q_hat * dot(e_hat, inputs))
    # The value is exactly q; the upstream gradient reaches `transformed`, so e gets lambda R^T g.
    return _straight_through(transformed, quantized)


class Quantizer(keras.layers.Layer):
    """The base of every quantizer layer: see the module docstring for the contract.

    It keeps the math float32 (`autocast=False`), refuses non-float inputs to `call` and
    `encode`, and provides `perplexity`, `compute_output_shape` and the gradient
    estimators (`gradient="straight_through"` or `"rotation"`) to subclasses.
    """

    code_depth = None  # one code per position; a residual quantizer has one per stage

    def __init__(self, **kwargs):
        kwargs.setdefault("autocast", False)  # distances, rounding and codebooks stay float32
        super().__init__(**kwargs)

    def __call__(self, inputs, *args, **kwargs):
        self._check_dtype(inputs)
        return super().__call__(inputs, *args, **kwargs)

    def _check_dtype(self, inputs):
        dtype = keras.backend.standardize_dtype(getattr(inputs, "dtype", "float32"))
        if not keras.backend.is_float_dtype(dtype):
            raise TypeError(
                f"{type(self).__name__} expects floating-point inputs (the encoder "
                f"output z_e). Received: dtype={dtype}. Cast the inputs to float32 "
                "first, or pass integer codes to `lookup()` instead."
            )

    def _check_last_axis(self, input_shape):
        if len(input_shape) < 2 or input_shape[-1] != self.embedding_dim:
            raise ValueError(
                f"{type(self).__name__} expects the last input axis to equal "
                f"embedding_dim={self.embedding_dim}. Received: "
                f"input_shape={tuple(input_shape)}"
            )

    def lookup(self, codes=None, *, indices=None):
        """Returns the float32 vectors (..., embedding_dim) for int codes in [0, num_embeddings).

        Other codes are an error, never a wrapped (-1: the last code) or zero lookup:
        eagerly a TypeError (not integers) or ValueError; in a graph an assertion that
        runs before the gather (XLA drops assertions). `indices=`, the argument's old name,
        still works with a DeprecationWarning. Subclasses implement `_lookup(codes)`."""
        if indices is not None:
            if codes is not None:
                raise TypeError(f"{type(self).__name__}.lookup takes codes (or its old name indices), not both.")
            warnings.warn(
                "lookup(indices=...) is deprecated: pass the same int codes as lookup(codes=...).",
                DeprecationWarning, stacklevel=2,
            )
            codes = indices
        if codes is None:
            raise TypeError(f"{type(self).__name__}.lookup() needs codes: int codes in [0, num_embeddings).")
        return self._lookup(codes)

    def _lookup(self, codes):
        """The vectors of `codes` (the subclass checks them with `_checked_codes`)."""
        raise NotImplementedError(f"{type(self).__name__} must implement _lookup(codes).")

    def _checked_codes(self, codes):
        """int codes with their range checked (eagerly, or by an assertion in a graph)."""
        name = type(self).__name__
        if not hasattr(codes, "dtype"):
            codes = ops.convert_to_tensor(codes)
        dtype = keras.backend.standardize_dtype(codes.dtype)
        if not keras.backend.is_int_dtype(dtype):
            raise TypeError(
                f"{name} expects integer codes in lookup(). Received: dtype={dtype}. "
                "Pass the int32 codes from encode(), or cast them with tf.cast(..., 'int32')."
            )
        message = f"{name} expects codes in [0, num_embeddings={self.num_embeddings}) in lookup()."
        return checked_range(codes, self.num_embeddings, message, what="codes")

    def _with_gradient(self, inputs, quantized, gradient="straight_through"):
        """`quantized` in value; its gradient reaches `inputs` by the chosen estimator."""
        if gradient == "rotation":
            return rotated(inputs, quantized)
        return _straight_through(inputs, quantized)

    def perplexity(self, codes):
        """exp(entropy) of the code assignments in `codes` (1 to num_embeddings)."""
        return metrics.perplexity(codes, self.num_embeddings)

    def compute_output_shape(self, input_shape):
        return input_shape


class BaseQuantizer(Quantizer):
    """Maps each vector on the last axis to its nearest codebook vector.

    Subclasses create `self.codebook` in `_build_codebook()` (shape
    `codebook_shape`) and may update it in `_update_codebook()`; everything
    else (distances, the lookup space, gradient estimators, losses, k-means++
    seeding and dead-code restart) lives here once.

    Lookup space. With `codebook_dim` d (ViT-VQGAN, Yu et al. 2021,
    arXiv:2110.04627, section 3.2) a learned linear map W_in (D x d, with bias)
    takes z_e to h = W_in z_e, the codebook has shape (K, d), and a second map
    W_out (d x D) takes the chosen code back: z_q = W_out q. Without it h = z_e.
    With `use_cosine_similarity=True` h and every code are l2-normalised, so
    the nearest code is the one with the largest cosine similarity. Losses,
    distances, EMA statistics, restarts and k-means++ all work on h.

    Gradient. "straight_through" copies dL/dq onto h unchanged (van den Oord
    et al.); "rotation" (Fifty et al. 2024, arXiv:2410.06424) passes it through
    the rotation and rescaling that maps h onto q, treated as a constant
    (see `rotated`).

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

    Backends: both move codebook rows inside a training call. Keras' JAX
    trainer keeps only the non-trainable state such a call assigns, so on JAX
    only a codebook that is state (`VectorQuantizerEMA`) takes them; a
    VectorQuantizer asked for them there raises ValueError. Their random draws
    are seeded on every backend, from TensorFlow's Philox or JAX's threefry
    stream: the same seed picks other vectors on the two backends.
    """

    # Whether the codebook is state the layer assigns (EMA) rather than a weight trained by gradients.
    codebook_is_state = False

    @takes_numpy_scalars
    def __init__(
        self,
        num_embeddings,
        embedding_dim,
        commitment_cost=0.25,
        dead_code_threshold=None,
        usage_decay=0.99,
        codebook_init="uniform",
        seed=0,
        use_cosine_similarity=False,
        codebook_dim=None,
        gradient="straight_through",
        **kwargs,
    ):
        super().__init__(**kwargs)
        name = type(self).__name__
        require_positive_int(name, "num_embeddings", num_embeddings)
        require_positive_int(name, "embedding_dim", embedding_dim)
        require_number(name, "commitment_cost (beta)", commitment_cost, low=0)
        _require_threshold(name, dead_code_threshold)
        require_number(name, "usage_decay", usage_decay, low=0, high=1)
        require_choice(name, "codebook_init", codebook_init, CODEBOOK_INITS)
        require_positive_int(name, "seed", seed, allow_zero=True)
        if not isinstance(use_cosine_similarity, bool):
            raise TypeError(
                f"{name} expects use_cosine_similarity to be True or False. "
                f"Received: use_cosine_similarity={use_cosine_similarity!r}"
            )
        _require_codebook_dim(name, codebook_dim, embedding_dim)
        self._require_codebook_moves_survive(dead_code_threshold, codebook_init)
        require_choice(name, "gradient", gradient, GRADIENTS)
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.commitment_cost = commitment_cost
        self.dead_code_threshold = dead_code_threshold
        self.usage_decay = usage_decay
        self.codebook_init = codebook_init
        self.seed = seed
        self.use_cosine_similarity = use_cosine_similarity
        self.codebook_dim = codebook_dim
        self.gradient = gradient

    @property
    def lookup_dim(self):
        """The size of the codes: codebook_dim if given, else embedding_dim."""
        return self.codebook_dim or self.embedding_dim

    @property
    def codebook_shape(self):
        return (self.num_embeddings, self.lookup_dim)

    def build(self, input_shape):
        self._check_last_axis(input_shape)
        if self.codebook_dim is not None:
            self._build_projections()
        self._build_codebook()
        if self.dead_code_threshold is not None:
            self.usage_ema = self._add_state("usage_ema", (self.num_embeddings,), "zeros")
        if self.codebook_init == "kmeans++":
            self.codebook_initialized = self._add_state("codebook_initialized", (), "zeros")
        if self.dead_code_threshold is not None or self.codebook_init == "kmeans++":
            self.training_calls = self._add_state("training_calls", (), "zeros")

    def _build_projections(self):
        """W_in (D, d) and W_out (d, D) with biases: float32, trained by gradients."""
        def dense(name, shape):
            kernel = self.add_weight(
                name=f"{name}_kernel", shape=shape, initializer="glorot_uniform", dtype="float32", autocast=False
            )
            bias = self.add_weight(
                name=f"{name}_bias", shape=shape[-1:], initializer="zeros", dtype="float32", autocast=False
            )
            return kernel, bias

        self.project_in = dense("project_in", (self.embedding_dim, self.codebook_dim))
        self.project_out = dense("project_out", (self.codebook_dim, self.embedding_dim))

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

    def _require_codebook_moves_survive(self, dead_code_threshold, codebook_init):
        """Refuses restarts and k-means++ where Keras would drop the codebook rows they move."""
        if not IS_JAX or self.codebook_is_state:
            return
        if dead_code_threshold is None and codebook_init != "kmeans++":
            return
        raise ValueError(
            f"{type(self).__name__} trains its codebook by gradients, and on the {keras.backend.backend()} "
            "backend Keras keeps no assignment to a trainable weight made inside a training step "
            "(stateless_call returns the non-trainable state only), so dead-code restarts and k-means++ "
            "seeding, which move codebook rows in the forward pass, would be lost. Received: "
            f"dead_code_threshold={dead_code_threshold!r}, codebook_init={codebook_init!r}. Use "
            "VectorQuantizerEMA (quantizer=\"ema\"), whose codebook is state, or the TensorFlow backend."
        )

    def _update_codebook(self, flat_inputs, flat_codes, counts):
        """Hook for codebook updates in the forward pass (EMA); no-op here.

        flat_codes: int32 (N,) code of each of the N (N, d) flat_inputs (lookup
        space); counts: float32 (K,) number of them per code on this replica."""

    def _add_codebook_loss(self, inputs, quantized):
        """Hook for the codebook loss |sg[h] - e|^2; the EMA variant has none."""

    def _restart_codes(self, dead, vectors):
        """Moves the codes where `dead` (bool (K,)) onto the rows of `vectors` (K, d)."""
        self.codebook.assign(ops.where(dead[:, None], vectors, ops.convert_to_tensor(self.codebook)))

    def _seed(self, purpose):
        """A stateless RNG seed, the same on every replica, new every training call."""
        seed = ops.convert_to_tensor([self.seed, purpose], "int32")
        return fold_seed(seed, ops.cast(self.training_calls, "int32"))

    def _gathered(self, flat_inputs):
        """Every replica's vectors, in replica order (the reshape restores the static d)."""
        return ops.reshape(gather_over_replicas(flat_inputs), (-1, self.lookup_dim))

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

    def _codes_in_use(self):
        """The codebook as lookups see it (l2-normalised rows with cosine similarity)."""
        codebook = ops.convert_to_tensor(self.codebook)
        return l2_normalize(codebook) if self.use_cosine_similarity else codebook

    def _to_lookup_space(self, inputs):
        """float32 z_e (..., D) -> h (..., d): projected and/or l2-normalised as configured."""
        if self.codebook_dim is not None:
            kernel, bias = self.project_in
            inputs = ops.matmul(inputs, kernel) + bias
        return l2_normalize(inputs) if self.use_cosine_similarity else inputs

    def _from_lookup_space(self, vectors):
        """Codes (..., d) -> vectors (..., D) the decoder reads (W_out with codebook_dim)."""
        if self.codebook_dim is None:
            return vectors
        kernel, bias = self.project_out
        return ops.matmul(vectors, kernel) + bias

    def _distances(self, flat_inputs):
        codebook = self._codes_in_use()
        return (
            ops.sum(ops.square(flat_inputs), axis=1, keepdims=True)
            - 2.0 * ops.matmul(flat_inputs, ops.transpose(codebook))
            + ops.sum(ops.square(codebook), axis=1)[None, :]
        )

    def _nearest(self, flat_inputs):
        return argmin_int32(self._distances(flat_inputs), axis=1)

    def encode(self, inputs):
        """Returns the int32 index of the nearest code for every vector."""
        self._check_dtype(inputs)
        inputs = ops.cast(inputs, "float32")
        flat = self._to_lookup_space(ops.reshape(inputs, (-1, self.embedding_dim)))
        return ops.reshape(self._nearest(flat), ops.shape(inputs)[:-1])

    def _lookup(self, codes):
        return self._from_lookup_space(self._gather(self._checked_codes(codes)))

    def _gather(self, indices):
        return ops.take(self._codes_in_use(), indices, axis=0)

    def call(self, inputs, training=None, return_codes=False):
        inputs32 = ops.cast(inputs, "float32")
        flat = self._to_lookup_space(ops.reshape(inputs32, (-1, self.embedding_dim)))
        if training:
            before = self._state_before(flat)
        if training and self.codebook_init == "kmeans++":
            self._seed_codebook_once(flat)
        flat_codes = self._nearest(flat)
        flat_quantized = self._gather(flat_codes)  # from the codebook the codes were chosen from
        if training:
            self._train_codebook(flat, flat_codes)
            self._undo_if_empty(before)
        self._add_codebook_loss(flat, flat_quantized)
        commitment = mean_or_zero(ops.square(flat - ops.stop_gradient(flat_quantized)))
        self.add_loss(self.commitment_cost * commitment)
        flat_outputs = self._from_lookup_space(self._with_gradient(flat, flat_quantized, self.gradient))
        outputs = ops.reshape(flat_outputs, ops.shape(inputs32))
        codes = ops.reshape(flat_codes, ops.shape(inputs32)[:-1])
        outputs = ops.cast(outputs, self.compute_dtype)
        return (outputs, codes) if return_codes else outputs

    def _state_before(self, flat_inputs):
        """(whether any replica's batch holds vectors, the values of the state a training call may
        assign): an empty batch (all replicas) must leave the codebook, EMA statistics, usage and
        counters as they were, and the updates would otherwise decay them toward its zero counts.
        Selected after the updates rather than branched around them: the updates hold replica
        collectives, which cannot sit in a branch."""
        count = sum_over_replicas(ops.cast(ops.shape(flat_inputs)[0], "float32"))
        state = {id(v): v for v in [self.codebook, *self.non_trainable_variables]}.values()
        return count > 0, [(variable, ops.copy(variable.value)) for variable in state]  # a copy: a read may alias

    def _undo_if_empty(self, before):
        has_vectors, values = before
        for variable, value in values:
            variable.assign(ops.where(has_vectors, ops.convert_to_tensor(variable), value))

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
            use_cosine_similarity=self.use_cosine_similarity,
            codebook_dim=self.codebook_dim,
            gradient=self.gradient,
        )
        return config


def mean_or_zero(values):
    """The mean of `values`, 0 when there are none (an empty batch), where ops.mean gives NaN."""
    return ops.sum(values) / ops.maximum(ops.cast(ops.size(values), values.dtype), 1.0)


def _require_codebook_dim(owner, codebook_dim, embedding_dim):
    valid = codebook_dim is None or (
        not isinstance(codebook_dim, bool) and isinstance(codebook_dim, int) and 1 <= codebook_dim <= embedding_dim
    )
    if not valid:
        raise ValueError(
            f"{owner} expects codebook_dim to be None (look codes up in the embedding_dim space) or an "
            f"integer in [1, embedding_dim={embedding_dim}], the size of the low-dimensional lookup space. "
            f"Received: codebook_dim={codebook_dim!r}"
        )


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
