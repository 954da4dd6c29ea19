import math

import keras
from keras import ops

from vq_keras._backend import fold_seed, split_seed, stable_argsort, stateless_uniform
from vq_keras.layers._validation import require_choice, require_number, require_positive_int, takes_numpy_scalars
from vq_keras.models.prior import Prior
from vq_keras.zoo._common import PresetMixin
from vq_keras.zoo._grid_transformer import GridTransformerMixin

SCHEDULES = ("cosine", "arccos", "linear")


def mask_ratio(schedule, r):
    """gamma(r), the fraction of the codes masked at r in [0, 1]: 1 at r = 0, 0 at r = 1.

    cosine: cos(pi r / 2) (MaskGIT's choice); arccos: 2 arccos(r) / pi; linear: 1 - r.
    """
    if schedule == "cosine":
        return ops.cos(r * (math.pi / 2))
    if schedule == "arccos":
        return ops.arccos(r) * (2 / math.pi)
    return 1.0 - r


@keras.saving.register_keras_serializable(package="vq_keras")
class MaskGITPrior(PresetMixin, GridTransformerMixin, Prior):
    """MaskGIT: a bidirectional transformer that fills a code grid in a few parallel steps.

    The network reads a grid in which some codes are replaced by a mask token
    (index num_embeddings of the code embedding) and gives, at every position,
    the logits of the code there. Inputs: the embedded codes plus learned row
    and column embeddings (and the aligned condition code above, as in
    `TransformerPrior`); a class token (class-conditional priors, else a learned
    start token) and the condition grid's tokens (VQ-VAE-2 lower levels) come
    first in the sequence; `num_layers` bidirectional `TransformerBlock`s, a
    final layer norm and a Dense head.

    Training (`fit`, the masked-token loss): for each grid, r ~ U(0, 1) and
    ceil(gamma(r) * H * W) codes (at least one), chosen uniformly, are masked;
    the loss is the cross-entropy (nats) of the masked codes, averaged over
    them; the metrics are that loss and the accuracy on the masked codes.
    MaskGIT has no exact likelihood: it reports this loss, not bits per code,
    and has no `log_prob`.

    Sampling (`sample`, `num_steps` steps, MaskGIT's iterative decoding): from
    an all-masked grid, each step draws a code at every masked position
    (temperature, top_k, top_p as for any prior), keeps those drawn before,
    and masks again the floor(gamma((t + 1) / T) * H * W) new codes with the
    lowest confidence (the log-probability of the drawn code, plus Gumbel
    noise scaled by choice_temperature * (1 - (t + 1) / T)), at least one
    and never a code committed before; the last step commits every code. One
    step commits every code at once.

    Args:
        num_embeddings: K, the number of codes of this grid (the codebook size).
        grid_shape: (height, width) of the code grid (the prior models grids up to it).
        num_layers: the number of transformer blocks.
        hidden_dim: the width of the embeddings and blocks.
        num_heads: attention heads per block; must divide hidden_dim.
        intermediate_dim: the blocks' MLP width (default 4 * hidden_dim).
        dropout: dropout rate in the blocks, in [0, 1).
        num_steps: T, the default number of decoding steps of `sample`.
        schedule: gamma, the mask schedule of training and decoding: "cosine"
            (default), "arccos" or "linear".
        choice_temperature: the scale of the Gumbel noise added to the
            confidences when choosing what to mask again (annealed to 0 over the
            steps), >= 0; MaskGIT uses 4.5.
        num_classes: if set, the prior is class-conditional: labels in
            [0, num_classes) are required.
        condition_num_embeddings: if set, the prior is conditioned on a code
            grid of the level above with this many codes (VQ-VAE-2 lower levels).
        condition_upsampling: this grid's size over the condition grid's (1, 2, 4, ...).
        **kwargs: standard `keras.Model` arguments (name, ...).

    Call arguments:
        codes: int (batch, height, width) codes in [0, num_embeddings], where
            num_embeddings is the mask token.
        labels: int (batch,) class labels (required iff num_classes is set).
        condition: int (batch, height / u, width / u) codes of the level above
            (required iff condition_num_embeddings is set).
        training: whether dropout is active.

    Output shape:
        float32 logits (batch, height, width, num_embeddings).

    Example:
        >>> prior = MaskGITPrior.from_preset("cifar10", num_classes=10)  # 8x8 grids of 512 codes
        >>> prior.compile(optimizer=keras.optimizers.Adam(1e-3))
        >>> prior.fit(tf.data.Dataset.from_tensor_slices({"codes": codes, "labels": labels}).batch(32))
        >>> new_codes = prior.sample(10, labels=list(range(10)), seed=0, num_steps=8)  # (10, 8, 8)

    Reference:
        Chang, Zhang, Jiang, Liu, Freeman, "MaskGIT: Masked Generative Image
        Transformer", 2022, arXiv:2202.04200 (sections 3.2-3.3).
    """

    METRIC_NAMES = ("loss", "accuracy")
    PRESET_FILE = "prior.keras"
    PRESETS = {
        # The code grid of VQVAE.from_preset("cifar10"): 8x8, 512 codes; the network of
        # TransformerPrior's preset, bidirectional.
        "cifar10": dict(
            num_embeddings=512, grid_shape=(8, 8), num_layers=4, hidden_dim=256, num_heads=8, intermediate_dim=512,
            dropout=0.1,
        ),
        "cifar10_top": dict(
            num_embeddings=512, grid_shape=(4, 4), num_layers=4, hidden_dim=256, num_heads=8, intermediate_dim=512,
            dropout=0.1, num_steps=4,
        ),
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
        num_layers=4,
        hidden_dim=256,
        num_heads=8,
        intermediate_dim=None,
        dropout=0.0,
        num_steps=8,
        schedule="cosine",
        choice_temperature=4.5,
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
        name = "MaskGITPrior"
        require_positive_int(name, "num_steps", num_steps)
        require_choice(name, "schedule", schedule, SCHEDULES)
        require_number(name, "choice_temperature", choice_temperature, low=0)
        self.num_steps = num_steps
        self.schedule = schedule
        self.choice_temperature = choice_temperature
        # Code index num_embeddings is the mask token.
        self._make_transformer(
            num_embeddings + 1, num_layers, hidden_dim, num_heads, intermediate_dim, dropout, "bidirectional"
        )
        self.mask_seeds = keras.random.SeedGenerator(name="mask_seeds")

    @property
    def mask_token(self):
        return self.num_embeddings

    def _code_range(self):
        return self.num_embeddings + 1, "num_embeddings + 1"  # the mask token, num_embeddings, included

    # ------------------------------------------------------------- the model

    def call(self, codes, labels=None, condition=None, training=None):
        shape = ops.shape(codes)
        batch, height, width = shape[0], shape[1], shape[2]
        length = height * width
        x = self.code_embedding(ops.reshape(codes, (batch, -1))) + self.grid_positions(height, width)
        x = x + self.aligned_condition(condition, batch, length)
        prefix = [self.start_tokens(labels, batch)[:, None]]
        if condition is not None:
            prefix.append(self.prefix_inputs(condition))
        x = ops.concatenate([*prefix, x], axis=1)
        for block in self.blocks:
            x = block(x, training=training)
        features = x[:, ops.shape(x)[1] - length :]
        return ops.reshape(self.logits_from_features(features), (batch, height, width, self.num_embeddings))

    # -------------------------------------------------------------- training

    def training_mask(self, batch, length):
        """bool (batch, length): the codes to mask in each grid, ceil(gamma(r) * length) of
        them (at least one) chosen uniformly, r ~ U(0, 1) per grid (from `mask_seeds`)."""
        r = keras.random.uniform((batch, 1), seed=self.mask_seeds)
        count = ops.maximum(ops.ceil(mask_ratio(self.schedule, r) * ops.cast(length, "float32")), 1.0)
        scores = keras.random.uniform((batch, length), seed=self.mask_seeds)
        ranks = ops.argsort(ops.argsort(scores, axis=-1), axis=-1)
        return ops.cast(ranks, "float32") < count

    def per_code_loss(self, codes, labels, condition, training):
        codes = self._check_codes("codes", ops.convert_to_tensor(codes), 3, self.num_embeddings, "num_embeddings")
        shape = ops.shape(codes)
        mask = ops.reshape(self.training_mask(shape[0], shape[1] * shape[2]), shape)
        masked = ops.where(mask, ops.cast(self.mask_token, codes.dtype), codes)
        logits = self(masked, labels=labels, condition=condition, training=training)
        nll = -ops.take_along_axis(
            ops.log_softmax(logits, axis=-1), ops.cast(codes, "int32")[..., None], axis=-1
        )[..., 0]
        return logits, nll, ops.cast(mask, "float32")

    def log_prob(self, codes, labels=None, condition=None):
        raise NotImplementedError(
            "MaskGITPrior has no exact likelihood: it is trained on masked codes and draws many codes per step. "
            "Its evaluate() reports the masked-token loss; use an autoregressive prior (PixelCNNPrior, "
            "TransformerPrior) for bits per code."
        )

    # -------------------------------------------------------------- sampling

    def check_sampling_options(self, owner, method, num_steps):
        if method is not None:
            raise ValueError(
                f"{owner} fills the grid in num_steps parallel steps; method (\"cached\" or \"full\") is for "
                f"autoregressive priors. Received: method={method!r}. Leave it out."
            )
        if num_steps is not None:
            require_positive_int(owner, "num_steps", num_steps)
        return None

    def masked_after(self, step, num_steps, length, unknown):
        """How many codes stay masked after decoding step `step` (0-based) of `num_steps`,
        given `unknown` (batch,) masked codes before it: floor(gamma((step + 1) / T) * length),
        at least one while two or more are unknown, at most unknown - 1 (a step commits at
        least one new code), and none after the last step."""
        ratio = ops.cast(step + 1, "float32") / ops.cast(num_steps, "float32")
        # 1e-3: the float32 gamma of an exact fraction (cos(pi / 3) * 24 = 12) may fall just below it.
        scheduled = ops.floor(mask_ratio(self.schedule, ratio) * float(length) + 1e-3)
        kept = ops.minimum(ops.maximum(scheduled, 1.0), ops.cast(unknown, "float32") - 1.0)
        return ops.where(step + 1 >= num_steps, 0.0, ops.maximum(kept, 0.0))

    def decode_step(
        self, codes, step, num_steps, labels, condition, temperature, key, top_k=None, top_p=None, guidance=None
    ):
        """One step of iterative decoding: int32 (batch, height, width) codes with mask
        tokens -> the same grid with some masked codes committed (see the class docstring)."""
        shape = ops.shape(codes)
        batch, length = shape[0], codes.shape[1] * codes.shape[2]
        logits = ops.reshape(self.guided_call(codes, labels, condition, guidance), (batch, length, -1))
        flat = ops.reshape(codes, (batch, length))
        sample_key, choice_key = split_seed(key)
        unknown = ops.equal(flat, self.mask_token)
        drawn = ops.where(unknown, self.draw_codes(logits, temperature, top_k, top_p, sample_key), flat)
        confidence = ops.take_along_axis(ops.log_softmax(logits), drawn[..., None], axis=-1)[..., 0]
        ratio = ops.cast(step + 1, "float32") / ops.cast(num_steps, "float32")
        uniform = ops.maximum(stateless_uniform((batch, length), choice_key), 1e-20)
        noise = -ops.log(-ops.log(uniform))  # Gumbel(0, 1)
        confidence = confidence + self.choice_temperature * (1.0 - ratio) * noise
        confidence = ops.where(unknown, confidence, math.inf)  # committed codes are never masked again
        count = self.masked_after(step, num_steps, length, ops.sum(ops.cast(unknown, "int32"), axis=1))
        ranks = stable_argsort(stable_argsort(confidence, axis=1), axis=1)
        masked = ops.cast(ranks, "float32") < count[:, None]
        return ops.reshape(ops.where(masked, self.mask_token, drawn), shape)

    def draw(
        self, num, grid_shape, labels, condition, temperature, key, method=None, top_k=None, top_p=None,
        num_steps=None, guidance=None,
    ):
        """Iterative decoding from an all-masked grid in num_steps steps (see `Prior.draw`);
        step t uses the stateless RNG key folded from (key, t). num_steps None (or a tensor
        0, as the generate signature passes it) stands for the prior's own. `method` does not apply."""
        num_steps = self.num_steps if num_steps is None else ops.where(num_steps > 0, num_steps, self.num_steps)
        num_steps = ops.cast(num_steps, "int32")
        codes = ops.full((num, *grid_shape), self.mask_token, dtype="int32")

        def body(step, codes):
            return step + 1, self.decode_step(
                codes, step, num_steps, labels, condition, temperature, fold_seed(key, step), top_k, top_p, guidance
            )

        _, codes = ops.while_loop(lambda step, _: step < num_steps, body, (ops.convert_to_tensor(0, "int32"), codes))
        return codes

    # ------------------------------------------------------------ serialising

    def get_config(self):
        return {
            **super().get_config(),
            **self.transformer_config(),
            "num_steps": self.num_steps,
            "schedule": self.schedule,
            "choice_temperature": self.choice_temperature,
        }
