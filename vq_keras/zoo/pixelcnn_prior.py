import math

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from keras import layers as keras_layers
from keras import ops

from vq_keras import metrics
from vq_keras._index_checks import checked_range
from vq_keras._replicas import loss_for_gradients
from vq_keras.layers._validation import require_number, require_positive_int
from vq_keras.layers.causal_self_attention import CausalSelfAttention
from vq_keras.layers.gated_pixelcnn_block import GatedPixelCNNBlock
from vq_keras.zoo._common import PresetMixin

tfd = tfp.distributions

DATA_KEYS = ("codes", "labels", "condition")


class _CompiledSamplers:
    """Per-instance cache of compiled sampling functions, keyed by shape and
    conditioning. A plain object, so neither Keras nor tf.Module tracks (or
    exports) the functions it holds."""

    def __init__(self):
        self.functions = {}


def _seed_pair(seed):
    """An int seed or a pair of ints -> int32 (2,) stateless RNG key."""
    pair = (0, seed) if isinstance(seed, (int, np.integer)) else seed
    ok = isinstance(pair, (tuple, list)) and len(pair) == 2
    ok = ok and all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and 0 <= s < 2**31 for s in pair)
    if not ok:
        raise ValueError(
            f"sample expects seed to be an integer in [0, 2**31) or a pair of them. Received: seed={seed!r}"
        )
    return tf.constant(pair, tf.int32)


@keras.saving.register_keras_serializable(package="vq_keras")
class PixelCNNPrior(PresetMixin, keras.Model):
    """A gated PixelCNN over a grid of discrete codes: p(codes) in raster order.

    Codes are embedded (num_filters channels) and fed, as both the vertical
    and horizontal stack, to `num_layers` `GatedPixelCNNBlock`s: the first of
    type "A", the rest type "B", so the logits at position (i, j) depend only
    on the codes before (i, j) in raster order, with no blind spot. With
    num_attention_layers > 0, `CausalSelfAttention` layers (mask "B") follow
    evenly spaced blocks on the horizontal stack, so every earlier position is
    in reach whatever the grid size (the VQ-VAE-2 top prior). The sum of the
    skip outputs and the last horizontal output goes through
    ReLU - 1x1 conv - ReLU - 1x1 conv to num_embeddings float32 logits.

    Conditioning (added to every block's gate pre-activations):
    - class labels (num_classes): a learned embedding per class;
    - the codes of the level above (condition_num_embeddings): embedded,
      upsampled by condition_upsampling (stride-2 transposed convolutions)
      to this grid and passed through a 3x3 convolution. The condition is
      known in full, so it need not be causal.

    Training: `model.fit` on a tf.data dataset of dict batches
    {"codes": int (N, H, W), "labels": int (N,), "condition": int (N, H/u, W/u)}
    ("labels" only with num_classes, "condition" only with
    condition_num_embeddings, u = condition_upsampling); an unconditional
    prior also accepts plain code batches. The loss is the mean cross-entropy
    of the codes (nats). Metrics: loss (nats per code), bits_per_code
    (loss / ln 2; a uniform guess scores log2(num_embeddings)) and accuracy
    (of the most probable code). Compile with an optimizer only.

    Args:
        num_embeddings: K, the number of codes of this grid (the codebook size).
        num_layers: the number of gated blocks (the first of type "A").
        num_filters: channels of the code embedding, both stacks and the head.
        kernel_size: the odd kernel size k of the gated blocks; each block
            widens the receptive field by about k//2 rows and columns.
        num_classes: if set, the prior is class-conditional: labels in
            [0, num_classes) are required.
        condition_num_embeddings: if set, the prior is conditioned on a code
            grid of the level above with this many codes (VQ-VAE-2 lower levels).
        condition_upsampling: this grid's size over the condition grid's
            (1, 2, 4, ...); 2 between VQ-VAE-2 levels.
        num_attention_layers: causal self-attention layers (0 for none).
        num_heads: heads of each attention layer; must divide num_filters.
        dropout: dropout rate in the gated blocks and attention, in [0, 1).
        grid_shape: optional (height, width) of the code grid the prior is
            meant for; the default of `sample(grid_shape=...)` and `generate`.
        **kwargs: standard `keras.Model` arguments (name, ...).

    Call arguments:
        codes: int (batch, height, width) codes in [0, num_embeddings).
        labels: int (batch,) class labels (required iff num_classes is set).
        condition: int (batch, height / u, width / u) codes of the level above
            (required iff condition_num_embeddings is set).
        training: whether dropout is active.

    Input shape:
        codes (batch, height, width); labels (batch,);
        condition (batch, height / condition_upsampling, width / condition_upsampling).

    Output shape:
        float32 logits (batch, height, width, num_embeddings).

    Example:
        >>> prior = PixelCNNPrior.from_preset("cifar10")  # 512 codes, 8x8 grids
        >>> prior.compile(optimizer=keras.optimizers.Adam(3e-4))
        >>> codes = tf.data.Dataset.from_tensor_slices({"codes": vqvae.encode(images)})
        >>> prior.fit(codes.batch(32), epochs=10)
        >>> new_codes = prior.sample(16, seed=0)  # int32 (16, 8, 8), one compiled call
        >>> images = vqvae.decode(new_codes)

    Reference:
        van den Oord et al., "Conditional Image Generation with PixelCNN
        Decoders", 2016, arXiv:1606.05328; Razavi et al., "Generating Diverse
        High-Fidelity Images with VQ-VAE-2", 2019, arXiv:1906.00446, section 3.3.
    """

    PRESETS = {
        # The code grid of VQVAE.from_preset("cifar10"): 8x8, 512 codes.
        "cifar10": dict(
            num_embeddings=512, num_layers=12, num_filters=128, kernel_size=3, dropout=0.1, grid_shape=(8, 8),
        ),
        # VQVAE2.from_preset("cifar10"): the top grid (4x4), with attention ...
        "cifar10_top": dict(
            num_embeddings=512, num_layers=8, num_filters=128, kernel_size=3, num_attention_layers=2,
            num_heads=4, dropout=0.1, grid_shape=(4, 4),
        ),
        # ... and the bottom grid (8x8), conditioned on the top codes.
        "cifar10_bottom": dict(
            num_embeddings=512, num_layers=12, num_filters=128, kernel_size=3, condition_num_embeddings=512,
            condition_upsampling=2, dropout=0.1, grid_shape=(8, 8),
        ),
    }

    def __init__(
        self,
        num_embeddings,
        num_layers=12,
        num_filters=128,
        kernel_size=3,
        num_classes=None,
        condition_num_embeddings=None,
        condition_upsampling=1,
        num_attention_layers=0,
        num_heads=4,
        dropout=0.0,
        grid_shape=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        name = "PixelCNNPrior"
        require_positive_int(name, "num_embeddings", num_embeddings)
        require_positive_int(name, "num_layers", num_layers)
        require_positive_int(name, "num_filters", num_filters)
        require_positive_int(name, "kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(
                f"{name} expects an odd kernel_size (the gated blocks' vertical stack is centred "
                f"on the current column). Received: kernel_size={kernel_size}. Use e.g. 3, 5 or 7."
            )
        if num_classes is not None:
            require_positive_int(name, "num_classes", num_classes)
        if condition_num_embeddings is not None:
            require_positive_int(name, "condition_num_embeddings", condition_num_embeddings)
        require_positive_int(name, "condition_upsampling", condition_upsampling)
        if condition_upsampling & (condition_upsampling - 1):
            raise ValueError(
                f"{name} expects condition_upsampling to be a power of 2 (1, 2, 4, ...): the "
                f"condition grid is upsampled by stride-2 steps. Received: condition_upsampling={condition_upsampling}"
            )
        require_positive_int(name, "num_attention_layers", num_attention_layers, allow_zero=True)
        if num_attention_layers > num_layers:
            raise ValueError(
                f"{name} places each attention layer after a gated block, so it expects "
                f"num_attention_layers <= num_layers={num_layers}. "
                f"Received: num_attention_layers={num_attention_layers}"
            )
        require_positive_int(name, "num_heads", num_heads)
        if num_attention_layers and num_filters % num_heads:
            raise ValueError(
                f"{name} expects num_heads to divide num_filters (each head has num_filters / "
                f"num_heads channels). Received: num_filters={num_filters}, num_heads={num_heads}"
            )
        require_number(name, "dropout", dropout, low=0, high=1)
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
        self.num_layers = num_layers
        self.num_filters = num_filters
        self.kernel_size = kernel_size
        self.num_classes = num_classes
        self.condition_num_embeddings = condition_num_embeddings
        self.condition_upsampling = condition_upsampling
        self.num_attention_layers = num_attention_layers
        self.num_heads = num_heads
        self.dropout = dropout
        self.grid_shape = grid_shape

        dtype = self.dtype_policy  # sublayers follow the model's (mixed) precision
        self.code_embedding = keras_layers.Embedding(num_embeddings, num_filters, name="code_embedding", dtype=dtype)
        self.label_embedding = (
            keras_layers.Embedding(num_classes, num_filters, name="label_embedding", dtype=dtype)
            if num_classes
            else None
        )
        if condition_num_embeddings:
            self.condition_embedding = keras_layers.Embedding(
                condition_num_embeddings, num_filters, name="condition_embedding", dtype=dtype
            )
            self.condition_upsamplers = [
                keras_layers.Conv2DTranspose(
                    num_filters, 4, strides=2, padding="same", activation="relu",
                    name=f"condition_upsampler{i}", dtype=dtype,
                )
                for i in range(int(math.log2(condition_upsampling)))
            ]
            self.condition_conv = keras_layers.Conv2D(
                num_filters, 3, padding="same", activation="relu", name="condition_conv", dtype=dtype
            )
        else:
            self.condition_embedding, self.condition_upsamplers, self.condition_conv = None, [], None
        self.blocks = [
            GatedPixelCNNBlock(
                num_filters, kernel_size, "A" if i == 0 else "B", dropout=dropout, name=f"gated_block{i}", dtype=dtype
            )
            for i in range(num_layers)
        ]
        # attention_after[i]: index of the block the i-th attention layer follows.
        self.attention_after = [
            (i + 1) * num_layers // num_attention_layers - 1 for i in range(num_attention_layers)
        ]
        self.attention_layers = [
            CausalSelfAttention(
                num_heads, num_filters // num_heads, "B", dropout=dropout, name=f"attention{i}", dtype=dtype
            )
            for i in range(num_attention_layers)
        ]
        self.head = [
            keras_layers.Conv2D(num_filters, 1, activation="relu", name="head_hidden", dtype=dtype),
            keras_layers.Conv2D(num_embeddings, 1, name="logits", dtype=dtype),
        ]
        self._trackers = [keras.metrics.Mean(name=n) for n in ("loss", "bits_per_code", "accuracy")]
        self._samplers = _CompiledSamplers()

    # ----------------------------------------------------------------- build

    def build(self, codes_shape=None, labels_shape=None, condition_shape=None):
        """Creates every weight; none depends on the grid size, so any shapes do."""
        features = (None, None, None, self.num_filters)
        self.code_embedding.build((None, None, None))
        label_features = None
        if self.label_embedding is not None:
            self.label_embedding.build((None,))
            label_features = (None, self.num_filters)
        condition_features = None
        if self.condition_embedding is not None:
            self.condition_embedding.build((None, None, None))
            for layer in [*self.condition_upsamplers, self.condition_conv]:
                layer.build(features)
            condition_features = features
        for i, block in enumerate(self.blocks):
            block.build([features, features], label_features, condition_features)
        for attention in self.attention_layers:
            attention.build(features)
        for layer in self.head:
            layer.build(features)

    def build_if_needed(self):
        """Builds the prior (weights do not depend on the grid size) if it is not built yet."""
        if not self.built:
            self.build((None, None, None))

    # ------------------------------------------------------------ validation

    def _check_codes(self, argument, codes, rank, limit, limit_name):
        """Checks the dtype, rank and (eagerly, or by graph assertions) range of
        integer indices; returns them (with the assertions attached in a graph)."""
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
        return checked_range(codes, limit, message, what=argument)

    def _check_presence(self, argument, value, setting, setting_value, what):
        if (value is None) != (setting_value is None):
            expected = "not expected" if setting_value is None else "required"
            raise ValueError(
                f"{type(self).__name__} was built with {setting}={setting_value}, so {what} "
                f"{expected}. Received: {argument}={'None' if value is None else 'a tensor'}."
            )

    def _check_inputs(self, codes, labels, condition):
        """Validates the inputs of a call; returns them as tensors (with range
        assertions attached when traced into a graph)."""

        def tensor(value):
            if value is None or isinstance(value, (tf.Tensor, keras.KerasTensor)):
                return value
            return ops.convert_to_tensor(value)

        codes, labels, condition = tensor(codes), tensor(labels), tensor(condition)
        codes = self._check_codes("codes", codes, 3, self.num_embeddings, "num_embeddings")
        self._check_presence("labels", labels, "num_classes", self.num_classes, "labels (dataset key 'labels') are")
        if labels is not None:
            labels = self._check_codes("labels", labels, 1, self.num_classes, "num_classes")
        self._check_presence(
            "condition", condition, "condition_num_embeddings", self.condition_num_embeddings,
            "a condition (the codes of the level above, dataset key 'condition') is",
        )
        if condition is not None:
            condition = self._check_codes(
                "condition", condition, 3, self.condition_num_embeddings, "condition_num_embeddings"
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
        # Checked here, not in call(), so the messages reach the user unwrapped.
        codes, labels, condition = self._check_inputs(codes, labels, condition)
        return super().__call__(codes, labels=labels, condition=condition, **kwargs)

    # ------------------------------------------------------------- the model

    def label_features(self, labels):
        """int (batch,) labels -> (batch, num_filters) conditioning vectors, or None."""
        return None if labels is None else self.label_embedding(labels)

    def condition_features(self, condition):
        """int (batch, h, w) codes of the level above -> (batch, h*u, w*u, num_filters), or None."""
        if condition is None:
            return None
        features = self.condition_embedding(condition)
        for layer in self.condition_upsamplers:
            features = layer(features)
        return self.condition_conv(features)

    def logits_from_embedded(self, embedded, label_features=None, condition_features=None, training=None):
        """The network after the code embedding: embedded codes (batch, H, W, num_filters)
        -> float32 logits (batch, H, W, num_embeddings). Exposed for analysis, e.g.
        receptive-field checks by gradients with respect to the embedded codes."""
        v = h = embedded
        skips = []
        attention = dict(zip(self.attention_after, self.attention_layers))
        for i, block in enumerate(self.blocks):
            v, h, skip = block(
                [v, h], label_embedding=label_features, spatial_condition=condition_features, training=training
            )
            skips.append(skip)
            if i in attention:
                h = attention[i](h, training=training)
        features = ops.relu(h + sum(skips[1:], skips[0]))
        for layer in self.head:
            features = layer(features)
        return ops.cast(features, "float32")

    def call(self, codes, labels=None, condition=None, training=None):
        return self.logits_from_embedded(
            self.code_embedding(codes), self.label_features(labels), self.condition_features(condition), training
        )

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

    def _nll_and_logits(self, data, training):
        codes, labels, condition = self._unpack(data)
        logits = self(codes, labels=labels, condition=condition, training=training)
        nll = -tfd.Categorical(logits=logits).log_prob(codes)  # nats, (N, H, W)
        return codes, logits, nll

    def _record(self, codes, logits, nll):
        predicted = ops.cast(ops.argmax(logits, axis=-1), codes.dtype)
        values = [nll, metrics.bits_per_code(nll), ops.cast(ops.equal(predicted, codes), "float32")]
        for tracker, value in zip(self._trackers, values):
            tracker.update_state(value)
        return {tracker.name: tracker.result() for tracker in self._trackers}

    def train_step(self, data):
        with tf.GradientTape() as tape:
            codes, logits, nll = self._nll_and_logits(data, training=True)
            loss = ops.mean(nll)
            if self.losses:
                loss = loss + ops.sum(ops.stack([ops.cast(x, "float32") for x in self.losses]))
            scaled = loss_for_gradients(self.optimizer, loss)
        gradients = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply(gradients, self.trainable_variables)
        return self._record(codes, logits, nll)

    def test_step(self, data):
        return self._record(*self._nll_and_logits(data, training=False))

    def log_prob(self, codes, labels=None, condition=None):
        """float32 (batch,) log-probability of each code grid, in nats."""
        codes = ops.convert_to_tensor(codes)
        logits = self(codes, labels=labels, condition=condition, training=False)
        return ops.sum(tfd.Categorical(logits=logits).log_prob(codes), axis=(1, 2))

    # -------------------------------------------------------------- sampling

    def _sampling_inputs(self, num, labels, condition, grid_shape):
        """Checked int32 labels and condition tensors (or None) and the (height, width) grid."""
        name = f"{type(self).__name__}.sample"
        require_positive_int(name, "num", num)
        if labels is not None:
            labels = ops.convert_to_tensor(labels)
            if len(labels.shape) == 0:
                labels = tf.fill([num], labels)
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
        _, labels, condition = self._check_inputs(tf.zeros((num, height, width), tf.int32), labels, condition)
        for argument, value in (("labels", labels), ("condition", condition)):
            if value is not None and value.shape[0] != num:
                raise ValueError(
                    f"{name} expects one {argument} entry per sample: num={num}. "
                    f"Received: {argument} shape={tuple(value.shape)}"
                )
        cast = lambda value: None if value is None else tf.cast(value, tf.int32)  # noqa: E731
        return cast(labels), cast(condition), (height, width)

    def vertical_reach(self):
        """How many rows above a position its logits depend on (None: all, with attention).

        The first (type A) block reads kernel_size // 2 + 1 rows above, every
        further block kernel_size // 2 more; the 1x1 head and the position-wise
        conditioning add none.
        """
        if self.num_attention_layers:
            return None
        half = self.kernel_size // 2
        return half + 1 + (self.num_layers - 1) * half

    def sampling_window(self, height):
        """Rows the network runs on to draw one position of a `height`-row grid:
        the position's row and the rows within reach above it. Rows further up
        change only features that never reach the drawn position, so the logits
        equal those of the whole grid (up to float rounding)."""
        reach = self.vertical_reach()
        return height if reach is None else min(height, reach + 1)

    def _sampler(self, num, height, width, has_labels, has_condition):
        """The compiled sampling function for one shape and conditioning, cached."""
        key = (num, height, width, has_labels, has_condition)
        if key not in self._samplers.functions:

            window = self.sampling_window(height)

            def sample_codes(labels, condition, temperature, seed):
                label_features = self.label_features(labels)
                condition_features = self.condition_features(condition)

                def draw(position, codes):
                    row, col = position // width, position % width
                    # Only the rows that reach this one: the window's top row is
                    # `window - 1` rows up (clipped inside the grid).
                    top = tf.clip_by_value(row - (window - 1), 0, height - window)
                    rows = tf.slice(codes, [0, top, 0], [num, window, width])
                    condition_rows = None
                    if condition_features is not None:
                        channels = tf.shape(condition_features)[-1]
                        condition_rows = tf.slice(condition_features, [0, top, 0, 0], [num, window, width, channels])
                    logits = self.logits_from_embedded(
                        self.code_embedding(rows), label_features, condition_rows, training=False
                    )
                    step_seed = tf.random.experimental.stateless_fold_in(seed, position)
                    drawn = tfd.Categorical(logits=logits[:, row - top, col, :] / temperature).sample(seed=step_seed)
                    where = tf.stack(
                        [tf.range(num), tf.fill([num], row), tf.fill([num], col)], axis=1
                    )
                    return position + 1, tf.tensor_scatter_nd_update(codes, where, tf.cast(drawn, tf.int32))

                _, codes = tf.while_loop(
                    lambda position, _: position < height * width,
                    draw,
                    (tf.constant(0), tf.zeros((num, height, width), tf.int32)),
                )
                return codes

            self._samplers.functions[key] = tf.function(sample_codes, reduce_retracing=True)
        return self._samplers.functions[key]

    def sample(self, num, labels=None, condition=None, temperature=1.0, seed=0, grid_shape=None):
        """Draws `num` code grids in raster order in one compiled call.

        A tf.while_loop over the height * width positions runs inside one
        tf.function; each step runs the network on the codes drawn so far (on
        the rows within reach only, see `sampling_window`) and draws position p
        from Categorical(logits / temperature) with a stateless RNG key folded
        from (seed, p). The same seed gives the same
        codes (on the same machine and TF version); the compiled function is
        cached on this instance per (num, grid, conditioning).

        Args:
            num: the number of code grids.
            labels: int class labels, (num,) or one int for all (class-conditional priors).
            condition: int (num, h, w) codes of the level above (conditioned priors);
                the grid is then (h, w) * condition_upsampling.
            temperature: > 0; below 1 sharpens the distribution, above 1 flattens it.
            seed: an int in [0, 2**31), or a pair of them.
            grid_shape: (height, width) of the grid; defaults to the condition's
                grid times condition_upsampling, else to the prior's grid_shape.

        Returns:
            int32 codes (num, height, width) in [0, num_embeddings).
        """
        require_number(f"{type(self).__name__}.sample", "temperature", temperature, low=0, low_inclusive=False)
        key = _seed_pair(seed)
        self.build_if_needed()
        labels, condition, (height, width) = self._sampling_inputs(num, labels, condition, grid_shape)
        function = self._sampler(num, height, width, labels is not None, condition is not None)
        return function(labels, condition, tf.constant(temperature, tf.float32), key)

    # ------------------------------------------------------------ serialising

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "num_embeddings": self.num_embeddings,
            "num_layers": self.num_layers,
            "num_filters": self.num_filters,
            "kernel_size": self.kernel_size,
            "num_classes": self.num_classes,
            "condition_num_embeddings": self.condition_num_embeddings,
            "condition_upsampling": self.condition_upsampling,
            "num_attention_layers": self.num_attention_layers,
            "num_heads": self.num_heads,
            "dropout": self.dropout,
            "grid_shape": self.grid_shape,
        }
