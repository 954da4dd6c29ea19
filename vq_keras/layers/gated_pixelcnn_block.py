import keras
from keras import layers as keras_layers
from keras import ops

from vq_keras.layers._window_matmul import conv_at_one_position
from vq_keras.layers._validation import require_number, require_positive_int, takes_numpy_scalars
from vq_keras.layers.masked_conv2d import check_mask_type


@keras.saving.register_keras_serializable(package="vq_keras")
class GatedPixelCNNBlock(keras.layers.Layer):
    """One gated PixelCNN layer: a vertical and a horizontal stack, without blind spot.

    With k = kernel_size and p = filters, for output position (i, j):

    - vertical stack: a (k//2 + 1) x k convolution over the rows above. In a
      type "A" block it reads input rows i-k//2-1 .. i-1 (the input is shifted
      down one row); in a type "B" block rows i-k//2 .. i of a vertical input
      that is itself strictly above. Either way the vertical output at row i
      depends only on rows strictly above i, so it feeds the horizontal stack
      directly (through a 1x1 convolution) and there is no blind spot.
    - horizontal stack: a 1 x (k//2 + 1) convolution over the current row:
      columns j-k//2-1 .. j-1 ("A", shifted right one column) or
      j-k//2 .. j ("B"), plus the 1x1 link from the vertical pre-activation.
    - gates: out = tanh(W_f * x + c_f) * sigmoid(W_g * x + c_g) on each stack,
      where the conditioning c is V^T y for a per-example vector y
      (`label_embedding`, broadcast over positions) plus a 1x1 convolution of a
      spatial map (`spatial_condition`, e.g. the codes of the level above);
      the link to the horizontal stack takes the conditioned vertical
      pre-activation.
    - the horizontal output is a 1x1 convolution of its gate, plus the
      horizontal input (residual) in type "B" blocks; type "A" has no
      residual, since its horizontal input holds the current position. A
      second 1x1 convolution of the gate is the skip output.

    Causality: if a network's first block is type "A" (fed the embedded
    inputs as both v and h) and every later block type "B", the horizontal
    output at (i, j) depends only on inputs before (i, j) in raster order
    (rows above, and columns left of j in row i), and with enough blocks on
    all of them.

    Args:
        filters: p, the channels of both stacks and of the skip output.
        kernel_size: k, an odd integer; the vertical stack grows by k//2 + 1
            rows in the first block and k//2 per later block, the horizontal
            stack by k//2 + 1 (first) and k//2 (later) columns.
        mask_type: "A" for the first block of a network (excludes the current
            position), "B" for every later block (its inputs already exclude it).
        dropout: dropout rate on the horizontal gate output, in [0, 1).
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        inputs: a list [v, h] of the vertical and horizontal stack inputs,
            each (batch, height, width, channels); in a type "B" block h must
            have `filters` channels (for the residual).
        label_embedding: optional float (batch, label_dim), a conditioning
            vector per example (e.g. an embedded class label). The block is
            built with or without it and must always be called the same way.
        spatial_condition: optional float (batch, height, width, cond_channels),
            a conditioning map at the inputs' resolution (e.g. the embedded,
            upsampled codes of the level above). Same rule as label_embedding.
        training: whether dropout is active.

    Input shape:
        [(batch, height, width, c_v), (batch, height, width, c_h)].

    Output shape:
        A tuple (v, h, skip), each (batch, height, width, filters).

    Example:
        >>> first = GatedPixelCNNBlock(64, kernel_size=3, mask_type="A")
        >>> later = GatedPixelCNNBlock(64, kernel_size=3, mask_type="B")
        >>> x = keras.random.normal((2, 8, 8, 64))  # embedded codes
        >>> v, h, skip1 = first([x, x])
        >>> v, h, skip2 = later([v, h])

    Reference:
        van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves, Kavukcuoglu,
        "Conditional Image Generation with PixelCNN Decoders", 2016,
        arXiv:1606.05328, section 2.2 and figure 2.
    """

    @takes_numpy_scalars
    def __init__(self, filters, kernel_size, mask_type, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        require_positive_int("GatedPixelCNNBlock", "filters", filters)
        require_positive_int("GatedPixelCNNBlock", "kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(
                "GatedPixelCNNBlock expects an odd kernel_size, so that the vertical stack "
                f"is centred on the current column. Received: kernel_size={kernel_size}. "
                "Use e.g. 3, 5 or 7."
            )
        check_mask_type("GatedPixelCNNBlock", mask_type)
        require_number("GatedPixelCNNBlock", "dropout", dropout, low=0, high=1)
        self.filters = filters
        self.kernel_size = kernel_size
        self.mask_type = mask_type
        self.dropout = dropout
        half = kernel_size // 2
        gates = 2 * filters  # the tanh half and the sigmoid half
        dtype = self.dtype_policy  # sublayers follow this layer's (mixed) precision
        self.vertical_conv = keras_layers.Conv2D(gates, (half + 1, kernel_size), name="vertical_conv", dtype=dtype)
        self.horizontal_conv = keras_layers.Conv2D(gates, (1, half + 1), name="horizontal_conv", dtype=dtype)
        self.vertical_to_horizontal = keras_layers.Conv2D(gates, 1, name="vertical_to_horizontal", dtype=dtype)
        self.horizontal_output = keras_layers.Conv2D(filters, 1, name="horizontal_output", dtype=dtype)
        self.skip_output = keras_layers.Conv2D(filters, 1, name="skip_output", dtype=dtype)
        self.gate_dropout = keras_layers.Dropout(dropout, name="gate_dropout", dtype=dtype)
        # Created in build() when the block is built with the conditioning inputs.
        self.label_to_vertical = self.label_to_horizontal = None
        self.spatial_to_vertical = self.spatial_to_horizontal = None

    def _check_shapes(self, inputs_shape, label_embedding_shape, spatial_condition_shape):
        name = "GatedPixelCNNBlock"
        shapes = inputs_shape if isinstance(inputs_shape, (list, tuple)) else None
        if (
            shapes is None
            or len(shapes) != 2
            or not all(isinstance(s, (list, tuple)) and len(s) == 4 for s in shapes)
        ):
            raise ValueError(
                f"{name} expects inputs [v, h]: a list of two 4D tensors (batch, height, width, "
                f"channels), the vertical and horizontal stacks. Received: inputs_shape={inputs_shape}. "
                "For the first block of a network pass the embedded inputs twice: block([x, x])."
            )
        v_shape, h_shape = (tuple(s) for s in shapes)
        if self.mask_type == "B" and h_shape[-1] != self.filters:
            raise ValueError(
                f'{name} with mask_type="B" adds its horizontal input to its output, so h must '
                f"have filters={self.filters} channels. Received: h shape={h_shape}. Make the "
                'first block mask_type="A", or project h to filters channels.'
            )
        for a, b in zip(v_shape[1:3], h_shape[1:3]):
            if a is not None and b is not None and a != b:
                raise ValueError(
                    f"{name} expects v and h of the same height and width. "
                    f"Received: v shape={v_shape}, h shape={h_shape}"
                )
        if label_embedding_shape is not None and len(label_embedding_shape) != 2:
            raise ValueError(
                f"{name} expects label_embedding of shape (batch, label_dim), one vector per "
                f"example. Received: label_embedding shape={tuple(label_embedding_shape)}"
            )
        if spatial_condition_shape is not None:
            spatial = tuple(spatial_condition_shape)
            same_grid = len(spatial) == 4 and all(
                a is None or b is None or a == b for a, b in zip(spatial[1:3], h_shape[1:3])
            )
            if not same_grid:
                raise ValueError(
                    f"{name} expects spatial_condition of shape (batch, height, width, channels) "
                    f"with the inputs' height and width. Received: spatial_condition "
                    f"shape={spatial}, h shape={h_shape}. Upsample the condition to the inputs' grid."
                )
        return v_shape, h_shape

    def build(self, inputs_shape, label_embedding_shape=None, spatial_condition_shape=None):
        v_shape, h_shape = self._check_shapes(inputs_shape, label_embedding_shape, spatial_condition_shape)
        gates = 2 * self.filters
        dtype = self.dtype_policy
        self.vertical_conv.build((v_shape[0], None, None, v_shape[-1]))
        self.horizontal_conv.build((h_shape[0], None, None, h_shape[-1]))
        self.vertical_to_horizontal.build((v_shape[0], None, None, gates))
        self.horizontal_output.build((h_shape[0], None, None, self.filters))
        self.skip_output.build((h_shape[0], None, None, self.filters))
        if label_embedding_shape is not None:
            self.label_to_vertical = keras_layers.Dense(
                gates, use_bias=False, name="label_to_vertical", dtype=dtype
            )
            self.label_to_horizontal = keras_layers.Dense(
                gates, use_bias=False, name="label_to_horizontal", dtype=dtype
            )
            for layer in (self.label_to_vertical, self.label_to_horizontal):
                layer.build(tuple(label_embedding_shape))
        if spatial_condition_shape is not None:
            self.spatial_to_vertical = keras_layers.Conv2D(
                gates, 1, use_bias=False, name="spatial_to_vertical", dtype=dtype
            )
            self.spatial_to_horizontal = keras_layers.Conv2D(
                gates, 1, use_bias=False, name="spatial_to_horizontal", dtype=dtype
            )
            for layer in (self.spatial_to_vertical, self.spatial_to_horizontal):
                layer.build(tuple(spatial_condition_shape))

    def __call__(self, inputs, *args, **kwargs):
        # Checked here, not in call(), so the message reaches the user unwrapped.
        if self.built:
            names = ("label_embedding", "spatial_condition")
            given = dict(zip(names, args))
            given.update({name: kwargs[name] for name in names if name in kwargs})
            self._check_conditioning("label_embedding", given.get("label_embedding"), self.label_to_vertical)
            self._check_conditioning("spatial_condition", given.get("spatial_condition"), self.spatial_to_vertical)
        return super().__call__(inputs, *args, **kwargs)

    def _check_conditioning(self, argument, value, layer):
        if (value is None) != (layer is None):
            built = "without" if layer is None else "with"
            raise ValueError(
                f"GatedPixelCNNBlock {self.name!r} was built {built} {argument} and must be "
                f"called the same way. Received: {argument}="
                f"{'None' if value is None else 'a tensor'}. Build a new block to change its conditioning."
            )

    def _gate(self, pre_activation):
        value, gate = ops.split(pre_activation, 2, axis=-1)
        return ops.tanh(value) * ops.sigmoid(gate)

    def call(self, inputs, label_embedding=None, spatial_condition=None, training=None):
        v, h = inputs
        half = self.kernel_size // 2
        if self.mask_type == "A":
            # Shift down one row (vertical) / right one column (horizontal): the
            # vertical stack never reads the current row, nor the horizontal
            # stack the current position.
            v_in = ops.pad(v, [[0, 0], [half + 1, 0], [half, half], [0, 0]])[:, :-1]
            h_in = ops.pad(h, [[0, 0], [0, 0], [half + 1, 0], [0, 0]])[:, :, :-1]
        else:
            v_in = ops.pad(v, [[0, 0], [half, 0], [half, half], [0, 0]])
            h_in = ops.pad(h, [[0, 0], [0, 0], [half, 0], [0, 0]])
        v_pre = self._vertical_pre_activation(v_in, label_embedding, spatial_condition)
        h_pre = self.horizontal_conv(h_in) + self._horizontal_bias(v_pre, label_embedding, spatial_condition)
        h_out, skip = self._horizontal_outputs(h_pre, h, training, apply=lambda conv, x: conv(x))
        return self._gate(v_pre), h_out, skip

    # Incremental (cached) sampling: the same math on the few rows and columns
    # that one new output row or position reads (Ramachandran et al. 2017).

    @property
    def step_window(self):
        """k//2 + 1: the input rows `vertical_step` and the input columns `horizontal_step` read."""
        return self.kernel_size // 2 + 1

    def vertical_step(self, rows, label_embedding=None, spatial_condition=None):
        """One output row i of the vertical stack, from the input rows it reads.

        Args:
            rows: (batch, k//2 + 1, width + 2 * (k//2), c_v), the vertical input
                rows that output row i reads, zero-padded by k//2 columns on
                either side (and zero rows above the grid): rows
                i-k//2-1 .. i-1 in a type "A" block, i-k//2 .. i in type "B".
            label_embedding: as in `call`.
            spatial_condition: row i of the map of `call`, (batch, 1, width, c).

        Returns:
            (v, bias): the output row (batch, 1, width, p), equal (up to float
            rounding) to row i of `call`'s, and what row i adds to the
            horizontal pre-activations (batch, 1, width, 2p): the link from
            the vertical stack and the conditioning, for `horizontal_step`.
        """
        v_pre = self._vertical_pre_activation(ops.convert_to_tensor(rows), label_embedding, spatial_condition)
        return self._gate(v_pre), self._horizontal_bias(v_pre, label_embedding, spatial_condition)

    def horizontal_step(self, columns, h, bias):
        """One output position (i, j) of the horizontal stack and the skip output.

        Args:
            columns: (batch, k//2 + 1, c_h), the horizontal input at the
                columns (i, j) reads, zero left of the grid: j-k//2-1 .. j-1 in
                a type "A" block, j-k//2 .. j in type "B".
            h: (batch, c_h), the horizontal input at (i, j) (the residual of a
                type "B" block; unused by type "A", which may pass None).
            bias: (batch, 2p), `vertical_step`'s bias at column j.

        Returns:
            (h_out, skip), each (batch, p): position (i, j) of `call`'s
            (dropout off, as when sampling), up to float rounding.
        """
        h = None if h is None else ops.convert_to_tensor(h)  # the residual: a NumPy h would not add to a torch tensor
        h_pre = conv_at_one_position(self.horizontal_conv, columns) + ops.convert_to_tensor(bias)
        return self._horizontal_outputs(h_pre, h, training=False, apply=conv_at_one_position)

    def _vertical_pre_activation(self, v_in, label_embedding, spatial_condition):
        v_pre = self.vertical_conv(v_in)
        if label_embedding is not None:
            v_pre = v_pre + self.label_to_vertical(label_embedding)[:, None, None, :]
        if spatial_condition is not None:
            v_pre = v_pre + self.spatial_to_vertical(spatial_condition)
        return v_pre

    def _horizontal_bias(self, v_pre, label_embedding, spatial_condition):
        """What the vertical stack and the conditioning add to the horizontal pre-activation."""
        # The link carries the conditioned vertical pre-activation, so the
        # vertical conditioning of a network's last block (whose v output is
        # unused) still reaches the output and gets gradients.
        bias = self.vertical_to_horizontal(v_pre)
        if label_embedding is not None:
            bias = bias + self.label_to_horizontal(label_embedding)[:, None, None, :]
        if spatial_condition is not None:
            bias = bias + self.spatial_to_horizontal(spatial_condition)
        return bias

    def _horizontal_outputs(self, h_pre, h, training, apply):
        """(h_out, skip) from the horizontal pre-activation; `apply(conv, x)` runs a
        1x1 convolution (on a grid in `call`, as a matrix product in `horizontal_step`)."""
        h_gated = self.gate_dropout(self._gate(h_pre), training=training)
        h_out = apply(self.horizontal_output, h_gated)
        if self.mask_type == "B":
            h_out = h_out + h
        return h_out, apply(self.skip_output, h_gated)

    def compute_output_shape(self, inputs_shape, label_embedding_shape=None, spatial_condition_shape=None):
        v_shape, h_shape = (tuple(s) for s in inputs_shape)
        return (*v_shape[:-1], self.filters), (*h_shape[:-1], self.filters), (*h_shape[:-1], self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            mask_type=self.mask_type,
            dropout=self.dropout,
        )
        return config
