import math

import keras
from keras import layers as keras_layers
from keras import ops

from vq_keras.layers._validation import require_number, require_positive_int, takes_numpy_scalars
from vq_keras.layers.masked_conv2d import check_mask_type


@keras.saving.register_keras_serializable(package="vq_keras")
class CausalSelfAttention(keras.layers.Layer):
    """Multi-head self-attention over a grid in raster order, with a causal mask.

    The (height, width) positions are flattened in raster order p = i * width + j.
    Query, key and value projections of every position are split into heads;
    position p attends to

    - mask_type "B": positions q <= p, and the input is added back (residual).
      Use it inside a network whose features at p already exclude input p
      (after a type "A" gated block), as in the VQ-VAE-2 top prior.
    - mask_type "A": positions q < p only, with the query of position p
      computed from input p - 1 (the inputs shifted one position along the
      raster; a zero vector for p = 0), and no residual: nothing at p reads
      input p. Position 0 has nothing to attend to and outputs zeros. Use it
      directly on the embedded inputs.

    Attention scores and the softmax are float32 even under mixed precision.
    No positional encoding is added: in a PixelCNN prior the convolutional
    features before it carry position (from the zero padding at the borders).

    Args:
        num_heads: the number of attention heads.
        key_dim: the size of each head's queries and keys.
        mask_type: "A" (attend strictly earlier positions, no residual) or
            "B" (attend earlier positions and itself, residual).
        value_dim: the size of each head's values; defaults to key_dim.
        dropout: dropout rate on the attention weights, in [0, 1).
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        inputs: float (batch, height, width, channels).
        training: whether dropout is active.

    Input shape:
        (batch, height, width, channels).

    Output shape:
        Same as the input.

    Example:
        >>> attention = CausalSelfAttention(num_heads=4, key_dim=32, mask_type="B")
        >>> y = attention(keras.random.normal((2, 8, 8, 128)))  # (2, 8, 8, 128)

    Reference:
        Vaswani et al., "Attention Is All You Need", 2017, arXiv:1706.03762;
        Chen et al., "PixelSNAIL", 2017, arXiv:1712.09763; Razavi et al.,
        VQ-VAE-2, 2019, arXiv:1906.00446, section 3.3 (the top prior's attention).
    """

    @takes_numpy_scalars
    def __init__(self, num_heads, key_dim, mask_type, value_dim=None, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        require_positive_int("CausalSelfAttention", "num_heads", num_heads)
        require_positive_int("CausalSelfAttention", "key_dim", key_dim)
        check_mask_type("CausalSelfAttention", mask_type)
        if value_dim is not None:
            require_positive_int("CausalSelfAttention", "value_dim", value_dim)
        require_number("CausalSelfAttention", "dropout", dropout, low=0, high=1)
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.mask_type = mask_type
        self.value_dim = value_dim
        self.dropout = dropout
        values = num_heads * (value_dim or key_dim)
        dtype = self.dtype_policy  # sublayers follow this layer's (mixed) precision
        self.query = keras_layers.Dense(num_heads * key_dim, name="query", dtype=dtype)
        self.key = keras_layers.Dense(num_heads * key_dim, name="key", dtype=dtype)
        self.value = keras_layers.Dense(values, name="value", dtype=dtype)
        self.output_projection = None  # Dense(channels), created in build()
        self.attention_dropout = keras_layers.Dropout(dropout, name="attention_dropout", dtype=dtype)

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(
                "CausalSelfAttention expects 4D inputs (batch, height, width, channels) with a "
                f"known number of channels. Received: input_shape={tuple(input_shape)}"
            )
        channels = input_shape[-1]
        dtype = self.dtype_policy
        flat = (input_shape[0], None, channels)
        for layer in (self.query, self.key, self.value):
            layer.build(flat)
        self.output_projection = keras_layers.Dense(channels, name="output_projection", dtype=dtype)
        self.output_projection.build((input_shape[0], None, self.num_heads * (self.value_dim or self.key_dim)))

    def _heads(self, x, batch, length):
        """(batch, length, heads * d) -> (batch, heads, length, d)."""
        return ops.transpose(ops.reshape(x, (batch, length, self.num_heads, -1)), (0, 2, 1, 3))

    def attention_mask(self, length):
        """bool (length, length): allowed[p, q] says whether position p attends to q."""
        positions = ops.arange(length)
        query, key = positions[:, None], positions[None, :]
        return key < query if self.mask_type == "A" else key <= query

    def call(self, inputs, training=None):
        shape = ops.shape(inputs)
        batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
        length = height * width
        flat = ops.reshape(inputs, (batch, length, channels))
        if self.mask_type == "A":
            # The query of p must not read input p: it comes from input p - 1.
            asking = ops.pad(flat, [[0, 0], [1, 0], [0, 0]])[:, :-1]
        else:
            asking = flat
        query = ops.cast(self._heads(self.query(asking), batch, length), "float32")
        key = ops.cast(self._heads(self.key(flat), batch, length), "float32")
        value = self._heads(self.value(flat), batch, length)
        attended = self._attend(query, key, value, self.attention_mask(length), training)
        attended = ops.reshape(ops.transpose(attended, (0, 2, 1, 3)), (batch, length, -1))
        outputs = ops.reshape(self.output_projection(attended), (batch, height, width, channels))
        return inputs + outputs if self.mask_type == "B" else outputs

    def _attend(self, query, key, value, allowed, training=None):
        """Heads (batch, heads, p, d) of queries, (batch, heads, q, d) of keys and
        values, bool `allowed` (p, q) -> attended values (batch, heads, p, d_v)."""
        scores = ops.einsum("bhpd,bhqd->bhpq", query, key) / math.sqrt(self.key_dim)
        scores = ops.where(allowed, scores, -1e9)
        # Zeroing the masked weights also zeroes the rows with nothing allowed
        # (position 0 under mask "A"), whose softmax would otherwise be uniform.
        weights = ops.softmax(scores, axis=-1) * ops.cast(allowed, "float32")
        weights = self.attention_dropout(weights, training=training)
        return ops.einsum("bhpq,bhqd->bhpd", ops.cast(weights, value.dtype), value)

    # Incremental (cached) sampling: one raster position at a time, with the
    # keys and values of the earlier positions kept in a cache.

    def empty_cache(self, batch, length, channels):
        """The cache `step` starts from for a grid of `length` positions: zero keys
        (float32) and values (batch, heads, length, d) and the previous input."""
        heads, value_dim = self.num_heads, self.value_dim or self.key_dim
        return {
            "key": ops.zeros((batch, heads, length, self.key_dim), "float32"),
            "value": ops.zeros((batch, heads, length, value_dim), self.compute_dtype),
            "previous": ops.zeros((batch, channels), self.compute_dtype),
        }

    def step(self, inputs, position, cache):
        """The output at raster position p from the input there and the cache.

        Args:
            inputs: (batch, channels), the input at position p.
            position: int scalar p (0 for the first position); positions are
                fed in order 0, 1, 2, ... with the cache each step returns.
            cache: `empty_cache(...)` at p = 0, else the previous step's.

        Returns:
            (outputs, cache): (batch, channels), position p of `call`'s output
            (dropout off), and the cache holding p's key and value.
        """
        inputs = ops.convert_to_tensor(inputs)  # added to tensors below: NumPy + a torch tensor fails
        batch = ops.shape(inputs)[0]
        length = ops.shape(cache["key"])[2]
        asking = cache["previous"] if self.mask_type == "A" else inputs
        query = ops.cast(self._heads(self.query(asking[:, None]), batch, 1), "float32")
        # Position p's key and value go in at index p of the length axis.
        one_hot = ops.reshape(ops.one_hot(position, length, dtype="bool"), (1, 1, length, 1))
        key = ops.where(one_hot, ops.cast(self._heads(self.key(inputs[:, None]), batch, 1), "float32"), cache["key"])
        value = ops.where(one_hot, self._heads(self.value(inputs[:, None]), batch, 1), cache["value"])
        earlier = ops.arange(length)[None, :]
        allowed = earlier < position if self.mask_type == "A" else earlier <= position
        attended = self._attend(query, key, value, allowed)
        outputs = self.output_projection(ops.reshape(attended, (batch, -1)))
        outputs = inputs + outputs if self.mask_type == "B" else outputs
        return outputs, {"key": key, "value": value, "previous": ops.cast(inputs, cache["previous"].dtype)}

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            num_heads=self.num_heads,
            key_dim=self.key_dim,
            mask_type=self.mask_type,
            value_dim=self.value_dim,
            dropout=self.dropout,
        )
        return config
