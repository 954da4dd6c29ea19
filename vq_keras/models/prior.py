"""The base class of every prior over code grids: `Prior`.

A prior models p(codes) over an int (batch, height, width) grid, optionally
given class labels and the codes of the level above (VQ-VAE-2). What every
prior shares lives here once: the input checks, the dataset unpacking, the
train and test steps with their metrics (over the codes its objective scores),
the seeds, the sampling filters (temperature, top_k, top_p) and the compiled
sampling function. Two families build on it:

- autoregressive priors (`vq_keras.models.AutoregressivePrior`: the gated
  PixelCNN, the transformer): raster order, the cross-entropy of every code,
  an exact `log_prob`, cached and full sampling that draw the same codes;
- masked priors (`MaskGITPrior`): a bidirectional network that fills the grid
  in `num_steps` parallel steps, trained on the cross-entropy of masked codes,
  with no exact likelihood.

A prior supplies `call` (logits of every position), `per_code_loss` (its
training objective) and `draw` (its sampling loop in `keras.ops`, compiled by `sample`).
"""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from vq_keras import metrics
from vq_keras._backend import categorical, compiled, portable_compile_config
from vq_keras._index_checks import checked_range, range_checked
from vq_keras._replicas import own_losses, share_of_replica
from vq_keras._step_flag import StepFlag
from vq_keras.layers._validation import require_number, require_positive_int, takes_numpy_scalars
from vq_keras.models.pairing import checked_identity

DATA_KEYS = ("codes", "labels", "condition")


class _CompiledSamplers:
    """Per-instance cache of compiled sampling functions, keyed by shape and
    conditioning. A plain object, so neither Keras nor tf.Module tracks (or
    exports) the functions it holds."""

    def __init__(self):
        self.functions = {}


def seed_pair(seed, owner="sample"):
    """An int seed or a pair of ints -> int32 (2,) stateless RNG key."""
    pair = (0, seed) if isinstance(seed, (int, np.integer)) else seed
    ok = isinstance(pair, (tuple, list)) and len(pair) == 2
    ok = ok and all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and 0 <= s < 2**31 for s in pair)
    if not ok:
        raise ValueError(
            f"{owner} expects seed to be an integer in [0, 2**31) or a pair of them. Received: seed={seed!r}"
        )
    return ops.convert_to_tensor(pair, "int32")


def check_filters(owner, top_k, top_p, num_embeddings):
    """Checks the sampling filters: top_k None or an int in [1, num_embeddings], top_p None or in (0, 1]."""
    if top_k is not None and (
        isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or not 1 <= top_k <= num_embeddings
    ):
        raise ValueError(
            f"{owner} expects top_k to be None (no filter) or an integer in [1, num_embeddings={num_embeddings}]: "
            f"draw each code among the top_k most probable. Received: top_k={top_k!r}"
        )
    if top_p is not None and (
        isinstance(top_p, bool) or not isinstance(top_p, (int, float, np.floating)) or not 0 < top_p <= 1
    ):
        raise ValueError(
            f"{owner} expects top_p to be None (no filter) or a number in (0, 1]: draw each code among the "
            f"most probable codes whose probabilities sum to top_p (nucleus sampling). Received: top_p={top_p!r}"
        )


def filter_logits(logits, top_k=None, top_p=None):
    """float32 (batch, K) logits with the codes outside the filters set to -inf.

    top_k: int32 scalar; keeps the top_k largest logits (0 or None: no filter).
    top_p: float32 scalar; keeps the smallest set of the most probable codes
        (after top_k) whose probabilities reach top_p (1 or None: no filter).
    Ties with the smallest kept logit are kept. With both filters off the logits
    come back unchanged (bit for bit), so a filter given as a tensor of its
    "off" value samples what no filter samples.
    """
    if top_k is None and top_p is None:
        return logits
    ordered = ops.flip(ops.sort(logits, axis=-1), axis=-1)
    size = ops.shape(logits)[-1]  # a tensor where the export traces logits of unknown size
    k = size if top_k is None else ops.where(top_k > 0, ops.minimum(ops.cast(top_k, "int32"), size), size)
    threshold = ops.take(ordered, k - 1, axis=-1)[:, None]
    if top_p is not None:
        kept = ops.where(ordered >= threshold, ordered, -np.inf)
        # The mass before each code: the running sum one code behind.
        before = ops.pad(ops.cumsum(ops.softmax(kept, axis=-1), axis=-1)[:, :-1], [[0, 0], [1, 0]])
        top_p = ops.cast(top_p, "float32")
        inside = ops.logical_or(before < top_p, top_p >= 1.0)
        threshold = ops.maximum(threshold, ops.min(ops.where(inside, ordered, np.inf), axis=-1, keepdims=True))
    return ops.where(logits >= threshold, logits, -np.inf)


def guide_logits(logits, guidance):
    """Classifier-free guidance: float32 logits (2N, ...) of N grids given their
    labels, then of the same N given "no class" -> (N, ...) logits
    l_u + s (l_c - l_u) for the guidance scale s (a float32 scalar); exactly
    l_c at s = 1, l_u at s = 0.
    """
    conditional, unconditional = ops.split(logits, 2, axis=0)
    guided = unconditional + guidance * (conditional - unconditional)
    return ops.where(ops.equal(guidance, 1.0), conditional, guided)


class Prior(keras.Model):
    """Base class of the priors: p(codes) over a grid, trained by `fit`, sampled by `sample`.

    Subclasses build their network in `__init__`/`build`, implement
    `call(codes, labels=None, condition=None, training=None)` -> float32
    logits (batch, height, width, num_embeddings), `per_code_loss` (the
    training objective) and `draw` (the sampling loop); they pass the
    arguments below to `super().__init__` by keyword and extend `get_config`.

    Training: `model.fit` on a tf.data dataset of dict batches
    {"codes": int (N, H, W), "labels": int (N,), "condition": int (N, H/u, W/u)}
    ("labels" only with num_classes, "condition" only with
    condition_num_embeddings, u = condition_upsampling); an unconditional
    prior also accepts plain code batches. The loss is the mean cross-entropy
    (nats) of the codes the objective scores; the metrics are METRIC_NAMES
    (loss, accuracy of the most probable code, and for priors with an exact
    likelihood bits_per_code = loss / ln 2). Compile with an optimizer only.

    Args:
        num_embeddings: K, the number of codes of this grid (the codebook size).
        num_classes: if set, the prior is class-conditional: labels in
            [0, num_classes) are required.
        condition_num_embeddings: if set, the prior is conditioned on a code
            grid of the level above with this many codes (VQ-VAE-2 lower levels).
        condition_upsampling: this grid's size over the condition grid's
            (1, 2, 4, ...); 2 between VQ-VAE-2 levels.
        grid_shape: optional (height, width) of the code grid the prior is
            meant for; the default of `sample(grid_shape=...)` and `generate`.
        label_dropout: class-conditional priors: the probability that training
            replaces a grid's label by the "no class" label `num_classes`
            (classifier-free guidance's condition dropout), in [0, 1). A prior
            trained with it also models p(codes) without a class (labels equal
            to num_classes) and samples with `guidance`. 0: labels in
            [0, num_classes) only, as before.
        trained_on: None, or the `autoencoder_identity` of the autoencoder whose
            codes the prior was trained on (stage 2 records it); the tools refuse
            to sample it with another (`check_trained_on`).
        **kwargs: standard `keras.Model` arguments (name, ...).
    """

    METRIC_NAMES = ("loss", "bits_per_code", "accuracy")

    @takes_numpy_scalars
    def __init__(
        self,
        num_embeddings,
        num_classes=None,
        condition_num_embeddings=None,
        condition_upsampling=1,
        grid_shape=None,
        label_dropout=0.0,
        trained_on=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        name = type(self).__name__
        self.trained_on = checked_identity(name, trained_on)
        require_positive_int(name, "num_embeddings", num_embeddings)
        if num_classes is not None:
            require_positive_int(name, "num_classes", num_classes)
        require_number(name, "label_dropout", label_dropout, low=0, high=1)
        if label_dropout and num_classes is None:
            raise ValueError(
                f"{name} expects label_dropout=0 without num_classes: it drops class labels, and an "
                f"unconditional prior has none. Received: label_dropout={label_dropout}, num_classes=None"
            )
        if condition_num_embeddings is not None:
            require_positive_int(name, "condition_num_embeddings", condition_num_embeddings)
        require_positive_int(name, "condition_upsampling", condition_upsampling)
        if condition_upsampling & (condition_upsampling - 1):
            raise ValueError(
                f"{name} expects condition_upsampling to be a power of 2 (1, 2, 4, ...): the "
                f"condition grid is upsampled by stride-2 steps. Received: condition_upsampling={condition_upsampling}"
            )
        if grid_shape is not None:
            if not (
                isinstance(grid_shape, (tuple, list))
                and len(grid_shape) == 2
                and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in grid_shape)
            ):
                raise ValueError(
                    f"{name} expects grid_shape to be None or (height, width), two positive "
                    f"integers. Received: grid_shape={grid_shape!r}"
                )
            grid_shape = tuple(grid_shape)
        self.num_embeddings = num_embeddings
        self.num_classes = num_classes
        self.condition_num_embeddings = condition_num_embeddings
        self.condition_upsampling = condition_upsampling
        self.grid_shape = grid_shape
        self.label_dropout = label_dropout
        # Created only when used: a prior saved without label dropout has no such state to load.
        self.label_seeds = keras.random.SeedGenerator(name="label_seeds") if label_dropout else None
        self._trackers = [keras.metrics.Mean(name=n) for n in self.METRIC_NAMES]
        self._samplers = _CompiledSamplers()
        self._batch_forward = StepFlag()  # on in train_step and test_step

    @property
    def num_label_embeddings(self):
        """The rows of a class embedding: num_classes, plus the "no class" label
        num_classes when trained with label_dropout; None when unconditional."""
        if self.num_classes is None:
            return None
        return self.num_classes + (1 if self.label_dropout else 0)

    def build_if_needed(self):
        """Builds the prior (its weights do not depend on the grid size) if it is not built yet."""
        if not self.built:
            self.build((None, None, None))

    # ------------------------------------------------------------ validation

    def _check_codes(self, argument, codes, rank, limit, limit_name, check=checked_range):
        """Checks the dtype, rank and (eagerly, or by graph assertions) range of
        integer indices; returns them (with the assertions attached in a graph).
        `check(indices, limit, message, what)` checks the range."""
        name = type(self).__name__
        dtype = keras.backend.standardize_dtype(codes.dtype)
        if "int" not in dtype:
            raise TypeError(
                f"{name} expects integer {argument} (indices, e.g. int32). Received: "
                f"dtype={dtype}. Cast them with tf.cast(..., 'int32')."
            )
        if len(codes.shape) != rank:
            expected = "(batch, height, width)" if rank == 3 else "(batch,)"
            raise ValueError(f"{name} expects {argument} of shape {expected}. Received: shape={tuple(codes.shape)}")
        message = f"{name} expects {argument} in [0, {limit_name}={limit})."
        return check(codes, limit, message, what=argument)

    def _code_range(self):
        """(limit, its name): the codes `call` takes lie in [0, limit)."""
        return self.num_embeddings, "num_embeddings"

    def _label_range(self):
        """(limit, its name): labels lie in [0, limit); num_classes itself ("no class") is one
        when the prior was trained with label_dropout."""
        if self.label_dropout:
            return self.num_classes + 1, "num_classes + 1 (num_classes: no class)"
        return self.num_classes, "num_classes"

    def _check_presence(self, argument, value, setting, setting_value, what):
        if (value is None) != (setting_value is None):
            expected = "not expected" if setting_value is None else "required"
            raise ValueError(
                f"{type(self).__name__} was built with {setting}={setting_value}, so {what} "
                f"{expected}. Received: {argument}={'None' if value is None else 'a tensor'}."
            )

    def _check_inputs(self, codes, labels, condition, check=checked_range):
        """Validates the inputs of a call; returns them as tensors (with range
        assertions attached when traced into a graph); `check` as in `_check_codes`."""

        def tensor(value):
            if value is None or isinstance(value, (tf.Tensor, keras.KerasTensor)) or ops.is_tensor(value):
                return value  # a tf.Tensor too: a tf.data map's, whatever the Keras backend
            return ops.convert_to_tensor(value)

        codes, labels, condition = tensor(codes), tensor(labels), tensor(condition)
        codes = self._check_codes("codes", codes, 3, *self._code_range(), check)
        self._check_presence("labels", labels, "num_classes", self.num_classes, "labels (dataset key 'labels') are")
        if labels is not None:
            labels = self._check_codes("labels", labels, 1, *self._label_range(), check)
        self._check_presence(
            "condition", condition, "condition_num_embeddings", self.condition_num_embeddings,
            "a condition (the codes of the level above, dataset key 'condition') is",
        )
        if condition is not None:
            condition = self._check_codes(
                "condition", condition, 3, self.condition_num_embeddings, "condition_num_embeddings", check
            )
            u = self.condition_upsampling
            for size, small in zip(codes.shape[1:3], condition.shape[1:3]):
                if size is not None and small is not None and size != small * u:
                    raise ValueError(
                        f"{type(self).__name__} expects the condition grid times condition_upsampling={u} "
                        f"to equal the code grid. Received: codes shape={tuple(codes.shape)}, "
                        f"condition shape={tuple(condition.shape)}"
                    )
        return codes, labels, condition

    def __call__(self, codes, labels=None, condition=None, **kwargs):
        if self._batch_forward.take():
            return codes  # the batch of a train or test step (see `train_step`)
        # Checked here, not in call(), so the messages reach the user unwrapped.
        codes, labels, condition = self._check_inputs(codes, labels, condition)
        return super().__call__(codes, labels=labels, condition=condition, **kwargs)

    # -------------------------------------------------------------- training

    @property
    def metrics(self):
        return list(self._trackers)

    def _unpack(self, data):
        """A dict batch {"codes", "labels"?, "condition"?} (or plain codes) -> three tensors."""
        if isinstance(data, (tuple, list)) and len(data) == 1:
            data = data[0]
        if not isinstance(data, dict):
            if isinstance(data, (tuple, list)):
                raise TypeError(
                    f"{type(self).__name__} expects dataset elements that are dicts "
                    "{'codes': ..., 'labels': ..., 'condition': ...} (or plain code batches). "
                    f"Received: a {type(data).__name__} of {len(data)} elements. Map the dataset "
                    "to dicts, e.g. dataset.map(lambda c, y: {'codes': c, 'labels': y})."
                )
            data = {"codes": data}
        unknown = sorted(set(data) - set(DATA_KEYS))
        if unknown or "codes" not in data:
            raise ValueError(
                f"{type(self).__name__} expects dataset dicts with the key 'codes' and optionally "
                f"'labels' and 'condition'. Received keys: {sorted(data)}"
            )
        return data["codes"], data.get("labels"), data.get("condition")

    def per_code_loss(self, codes, labels, condition, training):
        """The training objective: (logits, nll, weights), the float32 logits
        (N, H, W, K) the network gave, the cross-entropy (nats, (N, H, W)) of
        each code and the float32 (N, H, W) weights of the codes it scores (None:
        every code, equally)."""
        raise NotImplementedError(f"{type(self).__name__} must implement per_code_loss.")

    def dropped_labels(self, labels):
        """Training labels with each replaced by "no class" (num_classes) with probability
        label_dropout (from `label_seeds`); unchanged without label dropout."""
        if labels is None or not self.label_dropout:
            return labels
        dropped = keras.random.uniform(ops.shape(labels), seed=self.label_seeds) < self.label_dropout
        return ops.where(dropped, ops.cast(self.num_classes, labels.dtype), labels)

    def _loss_and_record(self, data, training):
        codes, labels, condition = self._unpack(data)
        if training:
            labels = self.dropped_labels(ops.convert_to_tensor(labels) if labels is not None else None)
        logits, nll, weights = self.per_code_loss(codes, labels, condition, training)
        if weights is None:
            loss = ops.mean(nll)
        else:
            loss = ops.sum(nll * weights) / ops.maximum(ops.sum(weights), 1.0)
        return loss, (codes, logits, nll, weights)

    def _record(self, codes, logits, nll, weights):
        predicted = ops.cast(ops.argmax(logits, axis=-1), codes.dtype)
        values = {
            "loss": nll,
            "bits_per_code": metrics.bits_per_code(nll),
            "accuracy": ops.cast(ops.equal(predicted, codes), "float32"),
        }
        for tracker in self._trackers:
            tracker.update_state(values[tracker.name], sample_weight=weights)

    def compile_from_config(self, config):
        super().compile_from_config(portable_compile_config(config))

    # fit and evaluate check their data before it enters the compiled step.

    def fit(self, x=None, *args, validation_data=None, **kwargs):
        self.build_if_needed()  # Keras would build it by calling it on a whole dataset element
        return super().fit(
            self._checked_data(x), *args, validation_data=self._checked_data(validation_data), **kwargs
        )

    def evaluate(self, x=None, *args, **kwargs):
        self.build_if_needed()
        return super().evaluate(self._checked_data(x), *args, **kwargs)

    def _checked_data(self, data):
        """`data` for fit/evaluate, its codes, labels and condition checked where the compiled
        step cannot: arrays and eager tensors in full now (a TypeError or ValueError before any
        step). A tf.data.Dataset is checked by the step's own range assertions, but XLA drops
        them (jit_compile, and every JAX step): there the checks are mapped into the pipeline."""
        if data is None:
            return data
        if isinstance(data, tf.data.Dataset):
            self._unpack(data.element_spec)  # refuses elements of another structure by name, now
            if not self.jit_compile:
                return data
            return data.map(
                lambda *element: self._checked_pipeline_batch(element[0] if len(element) == 1 else element),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
        if isinstance(data, (dict, np.ndarray)) or ops.is_tensor(data):
            self._check_inputs(*self._unpack(data))
        return data

    def _checked_pipeline_batch(self, element):
        """A dataset element (see `_unpack`) carrying TensorFlow assertions on its values."""
        graph_check = lambda indices, limit, message, what: range_checked(indices, limit, message)  # noqa: E731
        checked = self._check_inputs(*self._unpack(element), check=graph_check)
        if not isinstance(element, dict):
            return checked[0]
        return {**element, **{key: value for key, value in zip(DATA_KEYS, checked) if value is not None}}

    def train_step(self, *state_and_data):
        """Keras' own train step (`(data)` on TensorFlow and PyTorch, `(state, data)` on JAX); the
        objective runs in `compute_loss` (see below)."""
        self._unpack(state_and_data[-1])  # refuses a batch of another structure by name
        with self._batch_forward.on():
            return super().train_step(*state_and_data)

    def test_step(self, *state_and_data):
        self._unpack(state_and_data[-1])
        with self._batch_forward.on():
            return super().test_step(*state_and_data)

    # Keras' steps run the forward pass, `self(x)` (TensorFlow, PyTorch) or `stateless_call(..., x)`
    # (JAX), then hand its output to compute_loss. A prior's objective needs the batch's labels and
    # condition and may mask codes or drop labels first (`per_code_loss`), so that first forward
    # pass of a step returns the batch and compute_loss runs the objective: every backend
    # differentiates compute_loss (the tape, jax.grad, autograd).

    def stateless_call(self, trainable_variables, non_trainable_variables, *args, return_losses=False, **kwargs):
        if self._batch_forward.take():
            outputs = (args[0], non_trainable_variables)
            return (*outputs, []) if return_losses else outputs
        return super().stateless_call(
            trainable_variables, non_trainable_variables, *args, return_losses=return_losses, **kwargs
        )

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The objective's mean cross-entropy of the batch `x` (plus any regularisation losses),
        as this replica's share of the global-batch loss; records the step's metrics."""
        loss, scored = self._loss_and_record(x, training)
        for term in own_losses(self.losses):
            loss = loss + ops.cast(term, "float32")
        self._record(*scored)
        return share_of_replica(loss)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """The logs: `compute_loss` updated the metrics."""
        return {tracker.name: tracker.result() for tracker in self._trackers}

    # -------------------------------------------------------------- sampling

    def check_sampling_options(self, owner, method, num_steps):
        """Refuses the sampling options this kind of prior cannot use; returns the method
        to sample with (the compiled functions are cached per method)."""
        raise NotImplementedError(f"{type(self).__name__} must implement check_sampling_options.")

    def draw(
        self, num, grid_shape, labels, condition, temperature, key, method=None, top_k=None, top_p=None,
        num_steps=None, guidance=None,
    ):
        """The sampling loop in `keras.ops` (`sample` compiles it; the generate
        signature of an export traces it with scalar tensors).

        Args:
            num: int or int32 scalar tensor, the number of grids.
            grid_shape: (height, width), Python ints.
            labels, condition: int32 tensors or None, checked by the caller.
            temperature: float32 scalar tensor, > 0.
            key: int32 (2,) stateless RNG key.
            method: the kind's sampling method (see `check_sampling_options`).
            top_k, top_p: None, or int32 / float32 scalar tensors (see `filter_logits`).
            num_steps: None, or an int32 scalar tensor: the steps of a masked prior.
            guidance: None, or a float32 scalar tensor: the classifier-free
                guidance scale (see `guided_call`; labels are given).

        Returns:
            int32 codes (num, height, width).
        """
        raise NotImplementedError(f"{type(self).__name__} must implement draw.")

    def guidance_inputs(self, labels, condition):
        """The labels and condition of a guided batch: the N grids with their labels,
        then the same N with "no class" (num_classes); the condition twice."""
        labels = ops.concatenate([labels, ops.full_like(labels, self.num_classes)], axis=0)
        return labels, None if condition is None else ops.concatenate([condition, condition], axis=0)

    def guided_call(self, codes, labels, condition, guidance=None):
        """float32 logits (N, H, W, K) of `call` (inference), steered by
        classifier-free guidance when `guidance` (the scale s) is given: the
        network runs on the grids with and without their labels in one batch
        and `guide_logits` mixes the two."""
        if guidance is None:
            return self.call(codes, labels=labels, condition=condition, training=False)
        labels, condition = self.guidance_inputs(labels, condition)
        logits = self.call(ops.concatenate([codes, codes], axis=0), labels=labels, condition=condition, training=False)
        return guide_logits(logits, guidance)

    def check_guidance(self, owner, guidance, has_labels):
        """Refuses a guidance scale the prior cannot use: it needs label_dropout training
        (the "no class" label) and labels to steer towards."""
        if guidance is None:
            return
        require_number(owner, "guidance", guidance, low=0)
        if not self.label_dropout:
            raise ValueError(
                f"{owner}: guidance (classifier-free) needs a class-conditional prior trained with "
                f"label_dropout > 0, which also models codes without a class; this "
                f"{type(self).__name__} has num_classes={self.num_classes}, label_dropout={self.label_dropout}. "
                f"Received: guidance={guidance!r}. Leave guidance out, or train with label_dropout (e.g. 0.1)."
            )
        if not has_labels:
            raise ValueError(
                f"{owner}: guidance steers each sample towards its label; pass labels. Received: labels=None, "
                f"guidance={guidance!r}"
            )

    def draw_codes(self, logits, temperature, top_k, top_p, key):
        """int32 codes drawn from Categorical(logits / temperature) filtered by top_k and
        top_p, for float32 logits (..., K), with the stateless RNG key `key`."""
        flat = ops.reshape(logits, (-1, ops.shape(logits)[-1]))
        drawn = categorical(filter_logits(flat / temperature, top_k, top_p), key)
        return ops.reshape(drawn, ops.shape(logits)[:-1])

    def draw_levels(
        self, num, grid_shapes, labels, temperature, seed, method=None, top_k=None, top_p=None, num_steps=None,
        guidance=None,
    ):
        """`sample(seed=seed)` as graph ops for an int32 scalar `seed`: [codes] of the one
        grid `grid_shapes[0]`, as `HierarchicalPrior.draw_levels` gives every level's."""
        key = ops.stack([ops.zeros_like(seed), seed])  # the key seed_pair makes of an int seed
        return [
            self.draw(num, grid_shapes[0], labels, None, temperature, key, method, top_k, top_p, num_steps, guidance)
        ]

    def _sampling_inputs(self, num, labels, condition, grid_shape):
        """Checked int32 labels and condition tensors (or None) and the (height, width) grid."""
        name = f"{type(self).__name__}.sample"
        require_positive_int(name, "num", num)
        if labels is not None:
            labels = ops.convert_to_tensor(labels)
            if len(labels.shape) == 0:
                labels = ops.broadcast_to(labels, (num,))
        if condition is not None:
            condition = ops.convert_to_tensor(condition)
            if len(condition.shape) == 3:
                derived = tuple(int(s) * self.condition_upsampling for s in condition.shape[1:3])
                if grid_shape is not None and tuple(grid_shape) != derived:
                    raise ValueError(
                        f"{name}: grid_shape={tuple(grid_shape)} does not match the condition grid "
                        f"{tuple(condition.shape[1:3])} times condition_upsampling={self.condition_upsampling}. "
                        "Leave grid_shape=None to derive it from the condition."
                    )
                grid_shape = derived
        grid_shape = grid_shape or self.grid_shape
        if grid_shape is None:
            raise ValueError(
                f"{name} needs the code grid size. Received: grid_shape=None, and the prior has no "
                "default grid_shape. Pass grid_shape=(height, width)."
            )
        height, width = (int(s) for s in grid_shape)
        _, labels, condition = self._check_inputs(ops.zeros((num, height, width), "int32"), labels, condition)
        for argument, value in (("labels", labels), ("condition", condition)):
            if value is not None and value.shape[0] != num:
                raise ValueError(
                    f"{name} expects one {argument} entry per sample: num={num}. "
                    f"Received: {argument} shape={tuple(value.shape)}"
                )
        cast = lambda value: None if value is None else ops.cast(value, "int32")  # noqa: E731
        return cast(labels), cast(condition), (height, width)

    def _sampler(self, num, grid_shape, has_labels, has_condition, method):
        """The compiled sampling function for one shape, conditioning and method, cached."""
        key = (num, *grid_shape, has_labels, has_condition, method)
        if key not in self._samplers.functions:

            def sample_codes(labels, condition, temperature, seed, top_k, top_p, num_steps, guidance):
                return self.draw(
                    num, grid_shape, labels, condition, temperature, seed, method, top_k, top_p, num_steps, guidance
                )

            self._samplers.functions[key] = compiled(sample_codes, self)
        return self._samplers.functions[key]

    def sample(
        self, num, labels=None, condition=None, temperature=1.0, seed=0, grid_shape=None, method=None,
        top_k=None, top_p=None, num_steps=None, guidance=None,
    ):
        """Draws `num` code grids in one compiled call.

        The kind's sampling loop (`draw`: raster order for autoregressive
        priors, `num_steps` parallel steps for masked ones) runs inside one
        compiled function (a tf.function on TensorFlow, jax.jit on JAX; eager,
        without gradients, on PyTorch); codes are drawn from
        Categorical(logits / temperature), filtered by top_k and top_p, with
        stateless RNG keys folded from the seed. The same seed gives the same
        codes on the same machine, backend and version (each backend draws from
        its own random stream); the compiled function is
        cached on this instance per (num, grid, conditioning, method).

        Args:
            num: the number of code grids.
            labels: int class labels, (num,) or one int for all (class-conditional priors).
            condition: int (num, h, w) codes of the level above (conditioned priors);
                the grid is then (h, w) * condition_upsampling.
            temperature: > 0; below 1 sharpens the distribution, above 1 flattens it.
            seed: an int in [0, 2**31), or a pair of them.
            grid_shape: (height, width) of the grid; defaults to the condition's
                grid times condition_upsampling, else to the prior's grid_shape.
            method: autoregressive priors: "cached" (None, the default): each
                step computes only the new position's features; "full": each
                step runs the network (the reference, for tests and benchmarks).
                Masked priors take None only.
            top_k: None, or draw each code among its top_k most probable codes.
            top_p: None, or draw each code among the most probable codes whose
                probabilities (after temperature and top_k) sum to top_p, in (0, 1].
            num_steps: masked priors: the parallel decoding steps (None: the
                prior's num_steps); autoregressive priors take None only.
            guidance: None, or the classifier-free guidance scale s >= 0 for a
                prior trained with label_dropout: each step's logits are
                l_u + s (l_c - l_u), from the network given the labels (l_c)
                and given "no class" (l_u), in one batch of 2 * num. 1 draws
                what None draws (at twice the cost); above 1 steers samples
                harder towards their class, 0 ignores the labels.

        Returns:
            int32 codes (num, height, width) in [0, num_embeddings).
        """
        name = f"{type(self).__name__}.sample"
        require_number(name, "temperature", temperature, low=0, low_inclusive=False)
        method = self.check_sampling_options(name, method, num_steps)
        check_filters(name, top_k, top_p, self.num_embeddings)
        self.check_guidance(name, guidance, labels is not None)
        key = seed_pair(seed, name)
        self.build_if_needed()
        labels, condition, grid_shape = self._sampling_inputs(num, labels, condition, grid_shape)
        function = self._sampler(num, grid_shape, labels is not None, condition is not None, method)
        tensor = lambda value, dtype: None if value is None else ops.convert_to_tensor(value, dtype)  # noqa: E731
        return function(
            labels, condition, tensor(temperature, "float32"), key, tensor(top_k, "int32"), tensor(top_p, "float32"),
            tensor(num_steps, "int32"), tensor(guidance, "float32"),
        )

    # ------------------------------------------------------------ serialising

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "num_embeddings": self.num_embeddings,
            "num_classes": self.num_classes,
            "condition_num_embeddings": self.condition_num_embeddings,
            "condition_upsampling": self.condition_upsampling,
            "grid_shape": self.grid_shape,
            "label_dropout": self.label_dropout,
            "trained_on": self.trained_on,
        }
