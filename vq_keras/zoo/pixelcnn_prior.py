import math

import keras
from keras import layers as keras_layers
from keras import ops

from vq_keras.layers._window_matmul import conv_at_one_position
from vq_keras.layers._validation import require_number, require_positive_int, takes_numpy_scalars
from vq_keras.layers.causal_self_attention import CausalSelfAttention
from vq_keras.layers.gated_pixelcnn_block import GatedPixelCNNBlock
from vq_keras.models.autoregressive_prior import AutoregressivePrior
from vq_keras.zoo._common import PresetMixin


def rows_of(grid, top, count):
    """Rows top to top + count - 1 of a (batch, height, ...) grid; `top` may be a tensor."""
    start = (0, top) + (0,) * (len(grid.shape) - 2)
    return ops.slice(grid, start, (ops.shape(grid)[0], count, *grid.shape[2:]))


@keras.saving.register_keras_serializable(package="vq_keras")
class PixelCNNPrior(PresetMixin, AutoregressivePrior):
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

    Training, metrics, `log_prob` and `sample` come from `vq_keras.models.AutoregressivePrior`:
    `model.fit` on dict batches {"codes", "labels"?, "condition"?}; the loss is
    the mean cross-entropy of the codes (nats), with bits_per_code and accuracy.

    Sampling (`sample(..., method="cached")`, the default) computes, at each
    new position, only that position's features (Ramachandran et al. 2017):
    every gated block keeps the last k//2 + 1 rows of its vertical input
    (the vertical stack runs once per row, on one row) and the last k//2 + 1
    columns of its horizontal input in the current row (the horizontal stack
    runs once per position, on one position); each attention layer keeps
    the keys and values of the positions drawn so far; label features and the
    upsampled condition are computed once. `method="full"` runs the network
    on the rows within reach at every position (the reference): both draw the
    same codes.

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

    PRESET_FILE = "prior.keras"
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

    @takes_numpy_scalars
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
        super().__init__(
            num_embeddings=num_embeddings,
            num_classes=num_classes,
            condition_num_embeddings=condition_num_embeddings,
            condition_upsampling=condition_upsampling,
            grid_shape=grid_shape,
            **kwargs,
        )
        name = "PixelCNNPrior"
        require_positive_int(name, "num_layers", num_layers)
        require_positive_int(name, "num_filters", num_filters)
        require_positive_int(name, "kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(
                f"{name} expects an odd kernel_size (the gated blocks' vertical stack is centred "
                f"on the current column). Received: kernel_size={kernel_size}. Use e.g. 3, 5 or 7."
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
        self.num_layers = num_layers
        self.num_filters = num_filters
        self.kernel_size = kernel_size
        self.num_attention_layers = num_attention_layers
        self.num_heads = num_heads
        self.dropout = dropout

        dtype = self.dtype_policy  # sublayers follow the model's (mixed) precision
        self.code_embedding = keras_layers.Embedding(num_embeddings, num_filters, name="code_embedding", dtype=dtype)
        self.label_embedding = (
            keras_layers.Embedding(self.num_label_embeddings, num_filters, name="label_embedding", dtype=dtype)
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

    # -------------------------------------------------------------- sampling

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

    def full_sampler(self, num, height, width, labels, condition):
        """The reference: the network on the position's row and the rows within
        its reach (`sampling_window`) at every position."""
        window = self.sampling_window(height)
        label_features = self.label_features(labels)
        condition_features = self.condition_features(condition)

        def step(state, codes, position):
            row, col = position // width, position % width
            # The window's top row is `window - 1` rows up (clipped inside the grid).
            top = ops.clip(row - (window - 1), 0, height - window)
            rows = rows_of(codes, top, window)
            condition_rows = None if condition_features is None else rows_of(condition_features, top, window)
            logits = self.logits_from_embedded(
                self.code_embedding(rows), label_features, condition_rows, training=False
            )
            return logits[:, row - top, col], state

        return (), step

    def cached_sampler(self, num, height, width, labels, condition):
        """Only the new features per position, from per-layer caches (see the class docstring)."""
        label_features = self.label_features(labels)
        condition_features = self.condition_features(condition)
        window, channels = self.blocks[0].step_window, self.num_filters
        half = window - 1  # the zero columns either side of the rows the vertical stacks read
        dtype = self.code_embedding.compute_dtype
        zeros = lambda *shape: ops.zeros((num, *shape), dtype)  # noqa: E731
        attention = dict(zip(self.attention_after, self.attention_layers))
        state = {
            # Per block: the input rows its vertical stack reads (zero-padded by
            # k//2 columns), what the current row adds to its horizontal
            # pre-activations, and the input columns its horizontal stack reads.
            "rows": [zeros(window, width + 2 * half, channels) for _ in self.blocks],
            "bias": [zeros(1, width, 2 * channels) for _ in self.blocks],
            "columns": [zeros(window, channels) for _ in self.blocks],
            "attention": [layer.empty_cache(num, height * width, channels) for layer in self.attention_layers],
        }

        def new_row(state, codes, row):
            # The codes of the row above (zeros above the grid) enter the first block.
            above = self.code_embedding(codes[:, ops.maximum(row - 1, 0)])[:, None] * ops.cast(row > 0, dtype)
            condition_row = None if condition_features is None else condition_features[:, row][:, None]
            rows, biases = [], []
            for block, buffer in zip(self.blocks, state["rows"]):
                new = ops.pad(above, [[0, 0], [0, 0], [half, half], [0, 0]])
                rows.append(ops.concatenate([buffer[:, 1:], new], axis=1))
                above, bias = block.vertical_step(rows[-1], label_features, condition_row)
                biases.append(bias)
            columns = [ops.zeros_like(buffer) for buffer in state["columns"]]
            return {**state, "rows": rows, "bias": biases, "columns": columns}

        def step(state, codes, position):
            row, col = position // width, position % width
            state = ops.cond(ops.equal(col, 0), lambda: new_row(state, codes, row), lambda: state)
            # The code left of this position (zero at the row's start) enters the first block.
            h = self.code_embedding(codes[:, row, ops.maximum(col - 1, 0)]) * ops.cast(col > 0, dtype)
            skips, columns, caches = None, [], list(state["attention"])
            for i, block in enumerate(self.blocks):
                columns.append(ops.concatenate([state["columns"][i][:, 1:], h[:, None]], axis=1))
                h, skip = block.horizontal_step(columns[-1], h, state["bias"][i][:, 0, col])
                skips = skip if skips is None else skips + skip
                if i in attention:
                    slot = self.attention_after.index(i)
                    h, caches[slot] = attention[i].step(h, position, caches[slot])
            features = ops.relu(h + skips)
            for layer in self.head:
                features = conv_at_one_position(layer, features)
            logits = ops.cast(features, "float32")
            return logits, {**state, "columns": columns, "attention": caches}

        return state, step

    # ------------------------------------------------------------ serialising

    def get_config(self):
        config = super().get_config()
        config.update(
            num_layers=self.num_layers,
            num_filters=self.num_filters,
            kernel_size=self.kernel_size,
            num_attention_layers=self.num_attention_layers,
            num_heads=self.num_heads,
            dropout=self.dropout,
        )
        return config
