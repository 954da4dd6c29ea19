import math

import keras
from keras import layers as keras_layers
from keras import ops

from vq_keras.layers._validation import require_choice, require_number, require_positive_int, takes_numpy_scalars

ATTENTION_KINDS = ("causal", "bidirectional")


@keras.saving.register_keras_serializable(package="vq_keras")
class TransformerBlock(keras.layers.Layer):
    """A pre-norm transformer block over a sequence, with a key/value cache for decoding.

    x = x + Dropout(Attention(LayerNorm(x))); x = x + Dropout(MLP(LayerNorm(x))),
    where Attention is multi-head self-attention (causal: position t attends
    to positions <= t; bidirectional: to all) and MLP is
    Dense(intermediate_dim, GELU) - Dense(hidden). Attention scores and the
    softmax are float32 even under mixed precision.

    Decoding (`cached_call`) feeds a chunk of new positions at a time (the
    whole prefix once, then one position per step): their keys and values go
    into a cache of the whole sequence's length, and they attend to the cached
    positions before them and to each other causally, which gives the outputs
    `call` gives for those positions (up to float rounding).

    Args:
        num_heads: the number of attention heads; must divide the hidden size
            (the input's last axis).
        intermediate_dim: the MLP's hidden size (4 x hidden in GPT-2).
        attention: "causal" (autoregressive priors) or "bidirectional" (MaskGIT).
        dropout: dropout rate on the attention weights and both residual branches, in [0, 1).
        layer_norm_epsilon: epsilon of the two layer normalisations.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        inputs: float (batch, length, hidden).
        training: whether dropout is active.

    Input shape:
        (batch, length, hidden).

    Output shape:
        Same as the input.

    Example:
        >>> block = TransformerBlock(num_heads=8, intermediate_dim=1024)
        >>> y = block(keras.random.normal((2, 64, 256)))  # (2, 64, 256)

    Reference:
        Vaswani et al., "Attention Is All You Need", 2017, arXiv:1706.03762;
        Radford et al., GPT-2, 2019 (the pre-norm layout).
    """

    @takes_numpy_scalars
    def __init__(self, num_heads, intermediate_dim, attention="causal", dropout=0.0, layer_norm_epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        require_positive_int("TransformerBlock", "num_heads", num_heads)
        require_positive_int("TransformerBlock", "intermediate_dim", intermediate_dim)
        require_choice("TransformerBlock", "attention", attention, ATTENTION_KINDS)
        require_number("TransformerBlock", "dropout", dropout, low=0, high=1)
        require_number("TransformerBlock", "layer_norm_epsilon", layer_norm_epsilon, low=0, low_inclusive=False)
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.attention = attention
        self.dropout = dropout
        self.layer_norm_epsilon = layer_norm_epsilon
        dtype = self.dtype_policy  # sublayers follow this layer's (mixed) precision
        norm = lambda name: keras_layers.LayerNormalization(epsilon=layer_norm_epsilon, name=name, dtype=dtype)  # noqa: E731
        self.attention_norm = norm("attention_norm")
        self.mlp_norm = norm("mlp_norm")
        self.mlp_hidden = keras_layers.Dense(intermediate_dim, activation="gelu", name="mlp_hidden", dtype=dtype)
        self.attention_dropout = keras_layers.Dropout(dropout, name="attention_dropout", dtype=dtype)
        self.residual_dropout = keras_layers.Dropout(dropout, name="residual_dropout", dtype=dtype)
        self.query_key_value = None  # Dense(3 * hidden), created in build()
        self.attention_output = None  # Dense(hidden)
        self.mlp_output = None  # Dense(hidden)

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(
                "TransformerBlock expects 3D inputs (batch, length, hidden) with a known hidden size. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        hidden = input_shape[-1]
        if hidden % self.num_heads:
            raise ValueError(
                f"TransformerBlock expects num_heads to divide the hidden size (each head has hidden / "
                f"num_heads channels). Received: hidden={hidden}, num_heads={self.num_heads}"
            )
        dtype = self.dtype_policy
        self.query_key_value = keras_layers.Dense(3 * hidden, name="query_key_value", dtype=dtype)
        self.attention_output = keras_layers.Dense(hidden, name="attention_output", dtype=dtype)
        self.mlp_output = keras_layers.Dense(hidden, name="mlp_output", dtype=dtype)
        flat = (None, None, hidden)
        for layer in (self.attention_norm, self.mlp_norm, self.query_key_value, self.mlp_hidden):
            layer.build(flat)
        self.attention_output.build(flat)
        self.mlp_output.build((None, None, self.intermediate_dim))

    @property
    def key_dim(self):
        return self.query_key_value.units // 3 // self.num_heads

    def _heads(self, x):
        """(batch, length, heads * d) -> (batch, heads, length, d)."""
        shape = ops.shape(x)
        return ops.transpose(ops.reshape(x, (shape[0], shape[1], self.num_heads, -1)), (0, 2, 1, 3))

    def _queries_keys_values(self, inputs):
        query, key, value = ops.split(self.query_key_value(self.attention_norm(inputs)), 3, axis=-1)
        return ops.cast(self._heads(query), "float32"), ops.cast(self._heads(key), "float32"), self._heads(value)

    def _attend(self, query, key, value, allowed, training):
        """Heads of queries (b, h, t, d) and keys/values (b, h, s, d), bool `allowed`
        (t, s) or None -> attended values (batch, t, heads * d)."""
        scores = ops.einsum("bhtd,bhsd->bhts", query, key) / math.sqrt(self.key_dim)
        if allowed is not None:
            scores = ops.where(allowed, scores, -1e9)
        weights = self.attention_dropout(ops.softmax(scores, axis=-1), training=training)
        attended = ops.einsum("bhts,bhsd->bhtd", ops.cast(weights, value.dtype), value)
        shape = ops.shape(attended)
        return ops.reshape(ops.transpose(attended, (0, 2, 1, 3)), (shape[0], shape[2], -1))

    def _finish(self, inputs, attended, training):
        x = inputs + self.residual_dropout(self.attention_output(attended), training=training)
        mlp = self.mlp_output(self.mlp_hidden(self.mlp_norm(x)))
        return x + self.residual_dropout(mlp, training=training)

    def call(self, inputs, training=None):
        query, key, value = self._queries_keys_values(inputs)
        allowed = None
        if self.attention == "causal":
            positions = ops.arange(ops.shape(inputs)[1])
            allowed = positions[None, :] <= positions[:, None]
        return self._finish(inputs, self._attend(query, key, value, allowed, training), training)

    # Decoding with a key/value cache (causal blocks).

    def empty_cache(self, batch, length):
        """The cache for a sequence of `length` positions: float32 keys and values
        (batch, heads, length, key_dim), zero until `cached_call` fills them."""
        shape = (batch, self.num_heads, length, self.key_dim)
        return {"key": ops.zeros(shape, "float32"), "value": ops.zeros(shape, self.compute_dtype)}

    def cached_call(self, inputs, start, cache):
        """The outputs at positions start, ..., start + n - 1 from their inputs and the cache.

        Args:
            inputs: (batch, n, hidden), the inputs at those positions.
            start: int scalar, the position of inputs[:, 0]; chunks come in order
                from 0 with the cache each call returns.
            cache: `empty_cache(...)` at start 0, else the previous call's.

        Returns:
            (outputs, cache): (batch, n, hidden), those positions of `call`'s
            output (dropout off), and the cache holding their keys and values.
        """
        if self.attention != "causal":
            raise ValueError(
                "TransformerBlock.cached_call decodes causal blocks: with attention='bidirectional' every "
                "position depends on later ones. Call the block on the whole sequence instead."
            )
        inputs = ops.convert_to_tensor(inputs)  # added to tensors below: NumPy + a torch tensor fails
        query, key, value = self._queries_keys_values(inputs)
        key = ops.slice_update(cache["key"], (0, 0, start, 0), key)
        value = ops.slice_update(cache["value"], (0, 0, start, 0), ops.cast(value, cache["value"].dtype))
        chunk = ops.arange(ops.shape(inputs)[1]) + start
        allowed = ops.arange(ops.shape(key)[2])[None, :] <= chunk[:, None]
        outputs = self._finish(inputs, self._attend(query, key, value, allowed, False), False)
        return outputs, {"key": key, "value": value}

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            num_heads=self.num_heads,
            intermediate_dim=self.intermediate_dim,
            attention=self.attention,
            dropout=self.dropout,
            layer_norm_epsilon=self.layer_norm_epsilon,
        )
        return config
