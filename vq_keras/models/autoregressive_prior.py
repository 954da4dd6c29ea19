"""The base class of the priors that draw codes in raster order: `AutoregressivePrior`.

An autoregressive prior factorises p(codes) = prod_p p(code_p | codes before p)
in raster order p = i * width + j: its `call` gives, at every position, the
logits of the code there from the codes before it. It is trained on the
cross-entropy of every code, has an exact `log_prob`, and samples one position
per step. A network (one file, e.g. `PixelCNNPrior`, `TransformerPrior`)
supplies `call` and, for sampling, the logits of the next position through
two hooks:

- `full_sampler(num, height, width, labels, condition)`: the reference;
  by default it runs `call` on the whole grid at every position.
- `cached_sampler(...)`: the fast way, which computes only the new features
  of each position from a cache (no default: a network provides it).

Each hook returns `(state, step)`: `step(state, codes, position)` ->
`(logits, state)` gives the float32 (num, num_embeddings) logits of raster
position `position` from the codes drawn before it (later codes are zero) and
the state (a nest of tensors: the cache) carried to the next position. Both
methods draw with the same stateless RNG, so a cached sampler that computes the
same logits draws the same codes.
"""

from keras import ops

from vq_keras._backend import fold_seed
from vq_keras.models.prior import Prior, guide_logits

SAMPLING_METHODS = ("cached", "full")


def code_nll(codes, logits):
    """float32 (...) cross-entropy -log p(code) (nats) of int codes (...) under logits (..., K)."""
    return ops.sparse_categorical_crossentropy(codes, logits, from_logits=True)


def check_sampling_method(owner, method):
    if method not in SAMPLING_METHODS:
        raise ValueError(
            f'{owner} expects method to be "cached" (only the new position\'s features per step, the '
            f'default) or "full" (the whole network per step, the reference). Received: method={method!r}'
        )


class AutoregressivePrior(Prior):
    """Base class of the priors over codes in raster order (see the module docstring).

    Subclasses implement `call` (the logits of every position from the codes
    before it) and `cached_sampler`; training (the mean cross-entropy of every
    code: loss in nats, bits_per_code, accuracy), `log_prob` and `sample`
    (methods "cached" and "full", which draw the same codes) come from here and
    from `Prior`, whose arguments it takes.
    """

    def per_code_loss(self, codes, labels, condition, training):
        logits = self(codes, labels=labels, condition=condition, training=training)
        return logits, code_nll(codes, logits), None

    def log_prob(self, codes, labels=None, condition=None):
        """float32 (batch,) log-probability of each code grid, in nats."""
        codes = ops.convert_to_tensor(codes)
        logits = self(codes, labels=labels, condition=condition, training=False)
        return -ops.sum(code_nll(codes, logits), axis=(1, 2))

    def full_sampler(self, num, height, width, labels, condition):
        """The reference sampler's `(state, step)`: `call` on the whole grid at
        every position (see the module docstring). Subclasses may narrow it to
        the part of the grid the position depends on."""

        def step(state, codes, position):
            logits = self.call(codes, labels=labels, condition=condition, training=False)
            return logits[:, position // width, position % width], state

        return (), step

    def cached_sampler(self, num, height, width, labels, condition):
        """The fast sampler's `(state, step)`: only the new position's features
        per step, from a cache carried in `state` (see the module docstring)."""
        raise NotImplementedError(
            f'{type(self).__name__} has no cached sampler; sample with method="full".'
        )

    def guided_sampler(self, sampler, guidance):
        """`sampler` (a hook above), or with classifier-free guidance (`Prior.guided_call`)
        the same hook run on the grids with and without their labels in one batch of
        2 * num, its logits mixed by `guide_logits`."""
        if guidance is None:
            return sampler

        def guided(num, height, width, labels, condition):
            labels, condition = self.guidance_inputs(labels, condition)
            state, step = sampler(2 * num, height, width, labels, condition)

            def guided_step(state, codes, position):
                logits, state = step(state, ops.concatenate([codes, codes], axis=0), position)
                return guide_logits(logits, guidance), state

            return state, guided_step

        return guided

    def check_sampling_options(self, owner, method, num_steps):
        method = "cached" if method is None else method
        check_sampling_method(owner, method)
        if num_steps is not None:
            raise ValueError(
                f"{owner} draws one code per step in raster order (height x width steps), so it takes no "
                f"num_steps; that is the number of parallel steps of a masked prior (MaskGITPrior). "
                f"Received: num_steps={num_steps!r}"
            )
        return method

    def draw(
        self, num, grid_shape, labels, condition, temperature, key, method=None, top_k=None, top_p=None,
        num_steps=None, guidance=None,
    ):
        """The raster-order loop (see `Prior.draw`): a compiled while loop over the
        height * width positions; the method's step gives the logits of
        position p, and p is drawn with the stateless RNG key folded from (key, p).
        `num_steps` does not apply (`sample` refuses it)."""
        method = "cached" if method is None else method
        check_sampling_method(f"{type(self).__name__}.sample", method)
        height, width = grid_shape
        sampler = self.cached_sampler if method == "cached" else self.full_sampler
        state, step = self.guided_sampler(sampler, guidance)(num, height, width, labels, condition)

        def draw_one(position, codes, state):
            logits, state = step(state, codes, position)
            drawn = self.draw_codes(logits, temperature, top_k, top_p, fold_seed(key, position))
            start = (0, position // width, position % width)
            return position + 1, ops.slice_update(codes, start, ops.reshape(drawn, (-1, 1, 1))), state

        _, codes, _ = ops.while_loop(
            lambda position, *_: position < height * width,
            draw_one,
            (ops.convert_to_tensor(0, "int32"), ops.zeros((num, height, width), "int32"), state),
        )
        return codes
