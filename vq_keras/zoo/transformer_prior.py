import keras
from keras import ops

from vq_keras.layers._validation import takes_numpy_scalars
from vq_keras.models.autoregressive_prior import AutoregressivePrior
from vq_keras.zoo._common import PresetMixin
from vq_keras.zoo._grid_transformer import GridTransformerMixin


@keras.saving.register_keras_serializable(package="vq_keras")
class TransformerPrior(PresetMixin, GridTransformerMixin, AutoregressivePrior):
    """A decoder-only transformer over a grid of discrete codes: p(codes) in raster order.

    The grid's H x W codes are read in raster order p = i * W + j. The input of
    slot p is the embedding of code p - 1 (slot 0: a learned start vector, or
    the class embedding for a class-conditional prior) plus learned 2-D
    position embeddings of p (a row and a column embedding); `num_layers`
    causal `TransformerBlock`s and a final layer norm give slot p the features
    of codes < p, and a Dense head the float32 logits of code p.

    Conditioning on the codes of the level above (VQ-VAE-2 lower levels), both:
    - prefix: the condition grid's codes, embedded with their own 2-D position
      embeddings, come first in the sequence, so every slot attends to the
      whole condition (it is known in full, so nothing leaks);
    - aligned: the embedding of the condition code above position p
      (upsampled by condition_upsampling) is added to slot p's input.

    Training, metrics, `log_prob` and `sample` come from `vq_keras.models.AutoregressivePrior`
    (the mean cross-entropy in nats, bits_per_code, accuracy). Sampling
    (`method="cached"`, the default) runs the prefix once and then one slot per
    step, each block keeping the keys and values of the slots before it (a
    key/value cache): one position's features per step. `method="full"` runs
    the network on the whole grid at every position (the reference); both
    draw the same codes.

    Args:
        num_embeddings: K, the number of codes of this grid (the codebook size).
        grid_shape: (height, width) of the code grid: the size of the position
            embeddings (the prior models grids up to this size).
        num_layers: the number of transformer blocks.
        hidden_dim: the width of the embeddings and blocks.
        num_heads: attention heads per block; must divide hidden_dim.
        intermediate_dim: the blocks' MLP width (default 4 * hidden_dim).
        dropout: dropout rate in the blocks, in [0, 1).
        num_classes: if set, the prior is class-conditional: labels in
            [0, num_classes) are required.
        condition_num_embeddings: if set, the prior is conditioned on a code
            grid of the level above with this many codes (VQ-VAE-2 lower levels).
        condition_upsampling: this grid's size over the condition grid's (1, 2, 4, ...).
        **kwargs: standard `keras.Model` arguments (name, ...).

    Call arguments:
        codes: int (batch, height, width) codes in [0, num_embeddings).
        labels: int (batch,) class labels (required iff num_classes is set).
        condition: int (batch, height / u, width / u) codes of the level above
            (required iff condition_num_embeddings is set).
        training: whether dropout is active.

    Input shape:
        codes (batch, height, width) with height, width at most grid_shape;
        labels (batch,); condition (batch, height / u, width / u).

    Output shape:
        float32 logits (batch, height, width, num_embeddings).

    Example:
        >>> prior = TransformerPrior.from_preset("cifar10", num_classes=10)  # 8x8 grids of 512 codes
        >>> prior.compile(optimizer=keras.optimizers.Adam(1e-3))
        >>> prior.fit(tf.data.Dataset.from_tensor_slices({"codes": codes, "labels": labels}).batch(32))
        >>> new_codes = prior.sample(10, labels=list(range(10)), seed=0, top_k=100)  # (10, 8, 8)

    Reference:
        Esser, Rombach, Ommer, "Taming Transformers for High-Resolution Image
        Synthesis" (VQGAN), 2021, arXiv:2012.09841; Sun et al., "Autoregressive
        Model Beats Diffusion: Llama for Scalable Image Generation" (LlamaGen),
        2024, arXiv:2406.06525 (the class token as the first input).
    """

    PRESET_FILE = "prior.keras"
    PRESETS = {
        # The code grid of VQVAE.from_preset("cifar10"): 8x8, 512 codes. 4 blocks of width 256 with
        # a 2x MLP (2.4M parameters): what 36 minutes of a 2-core CPU train (zoo/transformer_vqvae_cifar10).
        "cifar10": dict(
            num_embeddings=512, grid_shape=(8, 8), num_layers=4, hidden_dim=256, num_heads=8, intermediate_dim=512,
            dropout=0.1,
        ),
        # VQVAE2.from_preset("cifar10"): the top grid (4x4) ...
        "cifar10_top": dict(
            num_embeddings=512, grid_shape=(4, 4), num_layers=4, hidden_dim=256, num_heads=8, intermediate_dim=512,
            dropout=0.1,
        ),
        # ... and the bottom grid (8x8), conditioned on the top codes.
        "cifar10_bottom": dict(
            num_embeddings=512, grid_shape=(8, 8), num_layers=4, hidden_dim=256, num_heads=8, intermediate_dim=512,
            dropout=0.1, condition_num_embeddings=512, condition_upsampling=2,
        ),
    }

    @takes_numpy_scalars
    def __init__(
        self,
        num_embeddings,
        grid_shape,
        num_layers=8,
        hidden_dim=256,
        num_heads=8,
        intermediate_dim=None,
        dropout=0.0,
        num_classes=None,
        condition_num_embeddings=None,
        condition_upsampling=1,
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
        self._make_transformer(num_embeddings, num_layers, hidden_dim, num_heads, intermediate_dim, dropout, "causal")

    # ------------------------------------------------------------- the model

    def slot_inputs(self, batch, height, width, labels, condition):
        """(batch, height * width, hidden_dim): each slot's input apart from the previous code's
        embedding: its position, the start or class token at slot 0, the aligned condition."""
        length = height * width
        start = self.start_tokens(labels, batch)
        slots = self.grid_positions(height, width) + ops.pad(start[:, None], [[0, 0], [0, length - 1], [0, 0]])
        return slots + self.aligned_condition(condition, batch, length)

    def call(self, codes, labels=None, condition=None, training=None):
        shape = ops.shape(codes)
        batch, height, width = shape[0], shape[1], shape[2]
        tokens = self.code_embedding(ops.reshape(codes, (batch, -1)))
        # Slot p reads code p - 1: the embeddings shifted one slot along the raster.
        x = self.slot_inputs(batch, height, width, labels, condition) + ops.pad(tokens, [[0, 0], [1, 0], [0, 0]])[:, :-1]
        prefix = self.prefix_inputs(condition)
        if prefix is not None:
            x = ops.concatenate([prefix, x], axis=1)
        for block in self.blocks:
            x = block(x, training=training)
        if prefix is not None:
            x = x[:, ops.shape(prefix)[1]:]
        return ops.reshape(self.logits_from_features(x), (batch, height, width, self.num_embeddings))

    # -------------------------------------------------------------- sampling

    def cached_sampler(self, num, height, width, labels, condition):
        """One slot per step through every block's key/value cache (see the class docstring)."""
        slots = self.slot_inputs(num, height, width, labels, condition)
        prefix = self.prefix_inputs(condition)
        offset = 0 if prefix is None else (height // self.condition_upsampling) * (width // self.condition_upsampling)
        caches = [block.empty_cache(num, offset + height * width) for block in self.blocks]
        if prefix is not None:
            caches = self._through_blocks(prefix, 0, caches)[1]

        def step(caches, codes, position):
            previous = ops.maximum(position - 1, 0)
            token = self.code_embedding(codes[:, previous // width, previous % width])
            token = token * ops.cast(position > 0, token.dtype)
            features, caches = self._through_blocks((slots[:, position] + token)[:, None], offset + position, caches)
            return self.logits_from_features(features[:, 0]), caches

        return caches, step

    def _through_blocks(self, x, start, caches):
        new_caches = []
        for block, cache in zip(self.blocks, caches):
            x, cache = block.cached_call(x, start, cache)
            new_caches.append(cache)
        return x, new_caches

    # ------------------------------------------------------------ serialising

    def get_config(self):
        return {**super().get_config(), **self.transformer_config()}
