"""The autoencoder's signatures: reconstruct, reconstruct_uint8, encode and decode, with the
request checks in the graph (see `vq_keras.export`)."""

import keras
import tensorflow as tf

from vq_keras._image_checks import unit_interval_assertion
from vq_keras.export.requests import graph_assert, rank_of, shape_of

SINGLE_GRID_NAME = "codes"  # the signature name of a VQVAE's one code grid


def code_grid_names(model):
    """The signature names of the model's code grids, top first ("codes" for one grid)."""
    names = tuple(model.level_names)
    return (SINGLE_GRID_NAME,) if len(names) == 1 else names


class Endpoints:
    """The signature functions of one model, with the request checks in the graph."""

    def __init__(self, model, image_size):
        self.model = model
        self.image_size = image_size
        self.downsampling = int(model.downsampling)
        self.channels = int(model.num_channels)
        self.num_embeddings = int(model.num_embeddings)
        # A residual quantizer's codes have a last axis of one code per stage.
        depth = getattr(model.quantizers[0], "code_depth", None)
        self.code_axes = (int(depth),) if depth else ()
        self.code_layout = ", ".join(("batch", "height", "width", *map(str, self.code_axes)))
        self.grid_names = code_grid_names(model)
        self.grid_sizes = model.code_shapes(image_size) if image_size else None
        # Each grid's size is a fixed multiple of the top grid's (VQVAE2: bottom = 2 x top).
        unit = model.code_shapes((self.downsampling, self.downsampling))
        self.grid_factors = [(h // unit[0][0], w // unit[0][1]) for h, w in unit]

    # Specs.

    def image_spec(self, dtype):
        height, width = self.image_size or (None, None)
        return tf.TensorSpec((None, height, width, self.channels), dtype, name="images")

    def code_specs(self):
        sizes = self.grid_sizes or [(None, None)] * len(self.grid_names)
        return [
            tf.TensorSpec((None, *size, *self.code_axes), tf.int32, name=name)
            for name, size in zip(self.grid_names, sizes)
        ]

    # Signature functions (traced by ExportArchive with the specs above).

    def reconstruct(self, images):
        images = self._checked_images(images, "reconstruct")
        with keras.StatelessScope():  # inference only: no codebook update, no add_loss
            return {"images": tf.cast(self.model.reconstruct(images), tf.float32)}

    def reconstruct_uint8(self, images):
        images = self._checked_images(images, "reconstruct_uint8")
        images = tf.cast(images, tf.float32) / 255.0
        with keras.StatelessScope():
            return {"images": tf.cast(self.model.reconstruct(images), tf.float32)}

    def encode(self, images):
        images = self._checked_images(images, "encode")
        with keras.StatelessScope():
            grids = self.model.encode_levels(images)
        return {name: tf.cast(codes, tf.int32) for name, codes in zip(self.grid_names, grids)}

    def decode(self, *grids):
        grids = self._checked_codes(list(grids))
        with keras.StatelessScope():
            return {"images": tf.cast(self.model.decode_levels(grids), tf.float32)}

    # Request checks. Rank and shape are read from the request at run time
    # (`_rank_and_shape`), never from the signature's static shape: a session fed
    # with the request (as TF Serving runs a signature) need not check it against
    # that, and a function call is optimized for it.

    def _checked_images(self, images, signature):
        height_width = "height, width" if self.image_size is None else "{}, {}".format(*self.image_size)
        layout = f"(batch, {height_width}, {self.channels})"
        rank = rank_of(images)
        rank_ok = graph_assert(
            tf.equal(rank, 4), f"{signature} expects images of shape {layout}. Received rank:", rank
        )
        # Every later check (reductions use the static rank) runs only once the rank is right.
        with tf.control_dependencies([rank_ok]):
            return self._checked_image_values(images, signature, layout)

    def _checked_image_values(self, images, signature, layout):
        shape = shape_of(images)
        batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
        checks = [
            graph_assert(
                tf.greater(batch, 0),
                f"{signature} expects at least one image: {layout} with batch at least 1. Received shape:",
                shape,
            ),
            graph_assert(
                tf.equal(channels, self.channels),
                f"{signature} expects {self.channels}-channel images {layout}. Received shape:",
                shape,
            ),
        ]
        if self.image_size:
            checks.append(
                graph_assert(
                    tf.logical_and(tf.equal(height, self.image_size[0]), tf.equal(width, self.image_size[1])),
                    f"{signature} expects {self.image_size[0]}x{self.image_size[1]} images (exported with "
                    f"image_size={self.image_size}). Resize the images, or export with image_size=None "
                    f"to accept any multiple of {self.downsampling}. Received shape:",
                    shape,
                )
            )
        else:
            factor = self.downsampling
            checks.append(
                graph_assert(
                    tf.reduce_all(
                        tf.stack([height >= factor, width >= factor, height % factor == 0, width % factor == 0])
                    ),
                    f"{signature} expects image height and width to be positive multiples of {factor} "
                    f"(the model downsamples by {factor}; e.g. {factor * 4}x{factor * 4}). Crop or resize the "
                    "images. Received shape:",
                    shape,
                )
            )
        if images.dtype.is_floating:
            checks.append(
                unit_interval_assertion(
                    images,
                    f"{signature} expects float32 images scaled to [0, 1] (values are never clipped). "
                    "Divide uint8 images by 255, or send them as uint8 to reconstruct_uint8. "
                    "Received min and max:",
                )
            )
        with tf.control_dependencies(checks):
            return tf.identity(images)

    def _checked_codes(self, grids):
        ranks_ok = []
        for name, codes in zip(self.grid_names, grids):
            rank = rank_of(codes)
            ranks_ok.append(
                graph_assert(
                    tf.equal(rank, 3 + len(self.code_axes)),
                    f"decode expects {name} of shape ({self.code_layout}). Received rank:",
                    rank,
                )
            )
        # Every later check (reductions use the static rank) runs only once the ranks are right.
        with tf.control_dependencies(ranks_ok):
            return self._checked_code_values(grids)

    def _checked_code_values(self, grids):
        shapes = [shape_of(codes) for codes in grids]
        # The other grids must have the top grid's batch size (checked below).
        checks = [
            graph_assert(
                tf.greater(shapes[0][0], 0),
                f"decode expects at least one code grid: {self.grid_names[0]} of shape (batch, height, width) "
                "with batch at least 1. Received shape:",
                shapes[0],
            )
        ]
        for name, codes in zip(self.grid_names, grids):
            checks.append(
                graph_assert(
                    tf.reduce_all(tf.logical_and(codes >= 0, codes < self.num_embeddings)),
                    f"decode expects {name} (int32 code indices) in [0, {self.num_embeddings}) "
                    f"(num_embeddings={self.num_embeddings}). Received min and max:",
                    tf.reduce_min(codes),
                    tf.reduce_max(codes),
                )
            )
        if self.grid_sizes:
            for name, size, shape in zip(self.grid_names, self.grid_sizes, shapes):
                checks.append(
                    graph_assert(
                        tf.logical_and(tf.equal(shape[1], size[0]), tf.equal(shape[2], size[1])),
                        f"decode expects {name} of shape (batch, {size[0]}, {size[1]}) (exported with "
                        f"image_size={self.image_size}). Received shape:",
                        shape,
                    )
                )
        else:
            top = shapes[0]
            checks.append(
                graph_assert(
                    tf.logical_and(top[1] >= 1, top[2] >= 1),
                    f"decode expects {self.grid_names[0]} of shape (batch, height, width) with height and width "
                    "at least 1. Received shape:",
                    top,
                )
            )
        example = self.model.code_shapes((self.downsampling * 4, self.downsampling * 4))
        for name, (fh, fw), shape in zip(self.grid_names[1:], self.grid_factors[1:], shapes[1:]):
            top = shapes[0]
            fits = tf.stack([
                tf.equal(shape[0], top[0]), tf.equal(shape[1], fh * top[1]), tf.equal(shape[2], fw * top[2]),
            ])
            checks.append(
                graph_assert(
                    tf.reduce_all(fits),
                    f"decode expects code grids of one batch of images: {name} must have the batch size "
                    f"of {self.grid_names[0]} and {fh}x its height and {fw}x its width (e.g. "
                    + ", ".join(f"{n} {h}x{w}" for n, (h, w) in zip(self.grid_names, example))
                    + f" for {self.downsampling * 4}x{self.downsampling * 4} images). Received shapes of "
                    f"{self.grid_names[0]} and {name}:",
                    top,
                    shape,
                )
            )
        with tf.control_dependencies(checks):
            return [tf.identity(codes) for codes in grids]
