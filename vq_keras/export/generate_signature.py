"""The generate signature: a prior's sampling loop, every level top-down, and the decoder in
one graph, with the request checks (see `vq_keras.export`)."""

import keras
import tensorflow as tf

from vq_keras.export.endpoints import code_grid_names
from vq_keras.export.requests import graph_assert, rank_of, shape_of
from vq_keras.models.autoregressive_prior import AutoregressivePrior
from vq_keras.zoo.generation import generation_grids

MAX_GENERATE_NUM = 1024  # images per generate request: one batch, as training.sample draws


class Generator:
    """The generate signature: the prior's sampling loop and the decoder in one graph."""

    def __init__(self, model, prior, image_size):
        try:
            self.grid_shapes = generation_grids(model, prior, image_size)
        except (TypeError, ValueError) as error:
            raise type(error)(f"export_saved_model cannot add a generate signature: {error}") from None
        self.model = model
        self.prior = prior
        self.num_classes = prior.num_classes
        self.grid_names = code_grid_names(model)
        levels = getattr(prior, "priors", [prior])
        # top_k may not exceed any level's number of codes; num_steps needs a masked level.
        self.max_top_k = min(level.num_embeddings for level in levels)
        self.takes_num_steps = not all(isinstance(level, AutoregressivePrior) for level in levels)
        self.takes_guidance = any(level.label_dropout for level in levels)

    def specs(self):
        specs = [
            tf.TensorSpec((), tf.int32, name="num"),
            tf.TensorSpec((), tf.int32, name="seed"),
            tf.TensorSpec((), tf.float32, name="temperature"),
            tf.TensorSpec((), tf.int32, name="top_k"),
            tf.TensorSpec((), tf.float32, name="top_p"),
            tf.TensorSpec((), tf.int32, name="num_steps"),
        ]
        if self.num_classes:
            specs.append(tf.TensorSpec((None,), tf.int32, name="labels"))
        if self.takes_guidance:
            specs.append(tf.TensorSpec((), tf.float32, name="guidance"))
        return specs

    def generate(self, num, seed, temperature, top_k, top_p, num_steps, labels=None, guidance=None):
        num, seed, temperature, top_k, top_p, num_steps, labels, guidance = self._checked(
            num, seed, temperature, top_k, top_p, num_steps, labels, guidance
        )

        def draw(guidance):
            return self.prior.draw_levels(
                num, self.grid_shapes, labels, temperature, seed, top_k=top_k, top_p=top_p, num_steps=num_steps,
                guidance=guidance,
            )

        with keras.StatelessScope():
            if guidance is None:
                grids = draw(None)
            else:  # guidance 1 draws what the library's guidance=None draws, at the cost of one batch
                grids = tf.cond(tf.equal(guidance, 1.0), lambda: draw(None), lambda: draw(guidance))
            images = tf.cast(self.model.decode_levels(grids), tf.float32)
        return {"images": images, **dict(zip(self.grid_names, grids))}

    def _checked(self, num, seed, temperature, top_k, top_p, num_steps, labels, guidance):
        ranks_ok = []
        scalars = (
            ("num", num), ("seed", seed), ("temperature", temperature), ("top_k", top_k), ("top_p", top_p),
            ("num_steps", num_steps),
            *((("guidance", guidance),) if guidance is not None else ()),
        )
        for name, value in scalars:
            rank = rank_of(value)
            ranks_ok.append(graph_assert(tf.equal(rank, 0), f"generate expects {name} to be a scalar. Received rank:", rank))
        if labels is not None:
            rank = rank_of(labels)
            ranks_ok.append(
                graph_assert(tf.equal(rank, 1), "generate expects labels of shape (num,), one class per image. Received rank:", rank)
            )
        with tf.control_dependencies(ranks_ok):
            checks = [
                graph_assert(
                    tf.logical_and(num >= 1, num <= MAX_GENERATE_NUM),
                    f"generate expects num (images to draw) in [1, {MAX_GENERATE_NUM}]; draw more with "
                    "several requests and other seeds. Received num:",
                    num,
                ),
                graph_assert(seed >= 0, "generate expects seed in [0, 2**31). Received seed:", seed),
                graph_assert(
                    tf.logical_and(temperature > 0, tf.math.is_finite(temperature)),
                    "generate expects temperature > 0 and finite (1 samples the prior as trained). "
                    "Received temperature:",
                    temperature,
                ),
                graph_assert(
                    tf.logical_and(top_k >= 0, top_k <= self.max_top_k),
                    f"generate expects top_k in [0, {self.max_top_k}] (0: no filter; else draw among the top_k "
                    "most probable codes). Received top_k:",
                    top_k,
                ),
                graph_assert(
                    tf.logical_and(top_p > 0, top_p <= 1),
                    "generate expects top_p in (0, 1] (1: no filter; else nucleus sampling). Received top_p:",
                    top_p,
                ),
                graph_assert(
                    num_steps >= 0 if self.takes_num_steps else tf.equal(num_steps, 0),
                    "generate expects num_steps >= 0 (0: the num_steps the prior was built with). Received num_steps:"
                    if self.takes_num_steps else
                    "generate expects num_steps 0: this prior draws one code per step in raster order; num_steps is "
                    "the number of parallel steps of a masked prior (MaskGITPrior). Received num_steps:",
                    num_steps,
                ),
            ]
            if labels is not None:
                checks += [
                    graph_assert(
                        tf.equal(tf.size(labels), num),
                        "generate expects one label per image: labels of shape (num,). Received num and labels "
                        "shape:",
                        num,
                        shape_of(labels),
                    ),
                    graph_assert(
                        tf.reduce_all(tf.logical_and(labels >= 0, labels < self.num_classes)),
                        f"generate expects labels in [0, {self.num_classes}) (the classes of the prior). Received labels:",
                        labels,
                    ),
                ]
            if guidance is not None:
                checks.append(
                    graph_assert(
                        tf.logical_and(guidance >= 0, tf.math.is_finite(guidance)),
                        "generate expects guidance >= 0 and finite (1: no guidance; above 1 steers each image "
                        "towards its label). Received guidance:",
                        guidance,
                    )
                )
        with tf.control_dependencies(checks):
            identity = lambda value: None if value is None else tf.identity(value)  # noqa: E731
            values = (num, seed, temperature, top_k, top_p, num_steps, labels, guidance)
            return tuple(identity(value) for value in values)
