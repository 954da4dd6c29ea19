"""What the transformer priors share (`TransformerPrior`, `MaskGITPrior`): the token and
2-D position embeddings of a code grid, the conditioning on the level above, the blocks and
the head. A mixin over `vq_keras.models.Prior`, so each prior keeps its layers as its own
attributes (their names are the weights' paths in a .keras file)."""

import keras
from keras import layers as keras_layers
from keras import ops

from vq_keras.layers._validation import require_number, require_positive_int
from vq_keras.layers.transformer_block import TransformerBlock


class GridTransformerMixin:
    """Transformer layers over a code grid read in raster order.

    `_make_transformer(...)` (called from the prior's `__init__` after the base's)
    creates: `code_embedding` (`num_tokens` rows), `row_embedding` and
    `column_embedding` over grid_shape, `start_embedding` (the class token of
    a class-conditional prior, else one learned start token), the condition's `condition_embedding`
    with its own row and column embeddings (conditioned priors), `num_layers`
    `TransformerBlock`s, `final_norm` and the Dense `head` to num_embeddings
    logits.
    """

    def _make_transformer(self, num_tokens, num_layers, hidden_dim, num_heads, intermediate_dim, dropout, attention):
        name = type(self).__name__
        if self.grid_shape is None:
            raise ValueError(
                f"{name} expects grid_shape=(height, width): its position embeddings are learned for "
                "each row and column of the grid. Received: grid_shape=None"
            )
        require_positive_int(name, "num_layers", num_layers)
        require_positive_int(name, "hidden_dim", hidden_dim)
        require_positive_int(name, "num_heads", num_heads)
        if hidden_dim % num_heads:
            raise ValueError(
                f"{name} expects num_heads to divide hidden_dim (each head has hidden_dim / num_heads "
                f"channels). Received: hidden_dim={hidden_dim}, num_heads={num_heads}"
            )
        if intermediate_dim is not None:
            require_positive_int(name, "intermediate_dim", intermediate_dim)
        require_number(name, "dropout", dropout, low=0, high=1)
        height, width = self.grid_shape
        u = self.condition_upsampling
        if self.condition_num_embeddings and (height % u or width % u):
            raise ValueError(
                f"{name} expects condition_upsampling={u} to divide the grid {self.grid_shape}: the "
                "condition grid is the code grid / condition_upsampling."
            )
        self.num_layers = num_layers
        self.hidden_dim = hidden_dim
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.dropout = dropout
        self.code_embedding = self._embedding(num_tokens, "code_embedding")
        self.row_embedding = self._embedding(height, "row_embedding")
        self.column_embedding = self._embedding(width, "column_embedding")
        classes = self.num_label_embeddings
        self.start_embedding = self._embedding(classes or 1, "label_embedding" if classes else "start_embedding")
        if self.condition_num_embeddings:
            self.condition_embedding = self._embedding(self.condition_num_embeddings, "condition_embedding")
            self.condition_row_embedding = self._embedding(height // u, "condition_row_embedding")
            self.condition_column_embedding = self._embedding(width // u, "condition_column_embedding")
        else:
            self.condition_embedding = self.condition_row_embedding = self.condition_column_embedding = None
        dtype = self.dtype_policy  # sublayers follow the model's (mixed) precision
        self.blocks = [
            TransformerBlock(
                num_heads, intermediate_dim or 4 * hidden_dim, attention, dropout=dropout, name=f"block{i}", dtype=dtype
            )
            for i in range(num_layers)
        ]
        self.final_norm = keras_layers.LayerNormalization(epsilon=1e-5, name="final_norm", dtype=dtype)
        self.head = keras_layers.Dense(self.num_embeddings, name="logits", dtype=dtype)

    def _embedding(self, count, name):
        return keras_layers.Embedding(
            count, self.hidden_dim, embeddings_initializer=keras.initializers.RandomNormal(stddev=0.02),
            name=name, dtype=self.dtype_policy,
        )

    def build(self, codes_shape=None, labels_shape=None, condition_shape=None):
        """Creates every weight; none depends on the batch, so any shapes do."""
        for layer in (self.code_embedding, self.start_embedding):
            layer.build((None, None))
        for layer in (self.row_embedding, self.column_embedding):
            layer.build((None,))
        if self.condition_embedding is not None:
            self.condition_embedding.build((None, None))
            self.condition_row_embedding.build((None,))
            self.condition_column_embedding.build((None,))
        sequence = (None, None, self.hidden_dim)
        for layer in (*self.blocks, self.final_norm, self.head):
            layer.build(sequence)

    def _check_inputs(self, codes, labels, condition, **check):
        checked = super()._check_inputs(codes, labels, condition, **check)
        height, width = checked[0].shape[1:3]
        limit = self.grid_shape
        if height is not None and width is not None and (height > limit[0] or width > limit[1]):
            raise ValueError(
                f"{type(self).__name__} has position embeddings for grids up to grid_shape={limit}. "
                f"Received: a {height}x{width} code grid. Build the prior with a larger grid_shape."
            )
        return checked

    def _positions(self, rows, columns, height, width):
        """(1, height * width, hidden_dim): row plus column embeddings in raster order."""
        grid = rows(ops.arange(height))[:, None] + columns(ops.arange(width))[None, :]
        return ops.reshape(grid, (1, height * width, self.hidden_dim))

    def grid_positions(self, height, width):
        """(1, height * width, hidden_dim): the code grid's position embeddings."""
        return self._positions(self.row_embedding, self.column_embedding, height, width)

    def aligned_condition(self, condition, batch, length):
        """(batch, length, hidden_dim): the condition code above each position (upsampled
        by condition_upsampling), embedded; 0 without a condition."""
        if condition is None:
            return 0
        u = self.condition_upsampling
        aligned = ops.repeat(ops.repeat(self.condition_embedding(condition), u, axis=1), u, axis=2)
        return ops.reshape(aligned, (batch, length, self.hidden_dim))

    def start_tokens(self, labels, batch):
        """(batch, hidden_dim): the class token of each grid, or the start token."""
        return self.start_embedding(ops.zeros((batch,), "int32") if labels is None else labels)

    def prefix_inputs(self, condition):
        """(batch, h * w, hidden_dim): the condition grid's tokens, or None without one."""
        if condition is None:
            return None
        shape = ops.shape(condition)
        positions = self._positions(
            self.condition_row_embedding, self.condition_column_embedding, shape[1], shape[2]
        )
        return ops.reshape(self.condition_embedding(condition), (shape[0], -1, self.hidden_dim)) + positions

    def logits_from_features(self, features):
        """Block outputs (..., hidden_dim) -> float32 logits (..., num_embeddings)."""
        return ops.cast(self.head(self.final_norm(features)), "float32")

    def transformer_config(self):
        return dict(
            num_layers=self.num_layers,
            hidden_dim=self.hidden_dim,
            num_heads=self.num_heads,
            intermediate_dim=self.intermediate_dim,
            dropout=self.dropout,
        )
