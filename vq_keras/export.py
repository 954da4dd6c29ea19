"""SavedModels for TF Serving: `export_saved_model(model, export_base)`.

The exported SavedModel has these signatures (endpoints), every one with a
dynamic batch axis. C is `model.num_channels`, H x W the image size (fixed by
`image_size`, or any positive multiple of `model.downsampling` by default), and
the code grid names are `model.level_names` ("top", "bottom", ... for VQVAE2,
top first) or "codes" for VQVAE's single grid.

    serving_default     float32 images in [0, 1]    -> float32 images in [0, 1]
      (= reconstruct)   input "images" (N, H, W, C)    output "images" (N, H, W, C)
    reconstruct_uint8   uint8 images in [0, 255]    -> float32 images in [0, 1]
                        input "images" (N, H, W, C)    output "images" (N, H, W, C)
    encode              float32 images in [0, 1]    -> int32 code grids
                        input "images" (N, H, W, C)    one output per grid ("codes", or
                                                       "top", "bottom", ...)
    decode              int32 code grids            -> float32 images in [0, 1]
                        one input per grid ("codes",   output "images" (N, H, W, C)
                        or "top", "bottom", ...)
    generate            int32 scalars "num", "seed"; -> float32 images in [0, 1]
      (with a prior)    float32 scalar "temperature";  "images" (num, H, W, C), and the
                        int32 scalar "top_k" (0: off), int32 code grids of every level
                        float32 scalar "top_p" (1: off); ("codes", or "top", "bottom", ...)
                        int32 scalar "num_steps" (0:
                        the prior's; masked priors);
                        int32 "labels" (num,) for a
                        class-conditional prior;
                        float32 scalar "guidance"
                        (1: off) for a prior trained
                        with label_dropout

`generate` (exported when a prior is given) draws new images: the prior's
cached sampling loop, every level top-down, then the decoder, all in the
graph. For the same num, seed, temperature, top_k, top_p, num_steps and labels
it returns the images of `vq_keras.zoo.generate(model, prior, num, seed=seed,
...)` (top_k 0, top_p 1, num_steps 0 and guidance 1 stand for None). Its image size is
`image_size`, else the one the prior's grid_shape implies. num must be in
[1, MAX_GENERATE_NUM], seed in [0, 2**31), temperature > 0 and finite, top_k
in [0, num_embeddings], top_p in (0, 1], num_steps >= 0 (and 0 unless a level
is a masked prior: autoregressive priors draw one code per step), labels
in [0, num_classes), one per image, and guidance >= 0 and finite.

Bad requests fail inside the graph (`InvalidArgumentError`) however the
signature is run (`tf.saved_model.load`, or a session fed with the request as
TF Serving runs it, which need not check the request's shape against the
signature's), with a message that names the signature and what it expected:
a tensor of the wrong rank (read from the request itself: a signature called
as a function is optimized for its declared shape), an empty batch, a wrong
channel count, an image size that is not
the exported one (or not a multiple of `model.downsampling`), float images
outside [0, 1] or NaN (never clipped), codes outside [0, num_embeddings) (a
plain gather on a GPU would silently return zeros), and code grids whose sizes
do not fit one image size (e.g. VQVAE2's bottom grid must be twice the top
grid) or whose batch sizes differ.

An empty batch (N = 0 images or code grids) is refused, not answered with an
empty result: there is nothing to compute, TF Serving's batching never sends
one, so it is a client bug that an empty answer would hide (and the CPU
convolutions fail on it with an unrelated message).

The graph holds only TensorFlow ops: TF Serving (or any TensorFlow program)
loads it without vq_keras. It is for inference only: the quantizer's
straight-through gradient (`tf.custom_gradient`) is not saved, so a reloaded
SavedModel cannot be trained; keep `.keras` files for that.
"""

import numbers
import os

import keras
import tensorflow as tf

from vq_keras._image_checks import unit_interval_assertion
from vq_keras.atomic import atomic_directory, why_not_writable
from vq_keras.models.autoregressive_prior import AutoregressivePrior
from vq_keras.models.vq_model import VQModel
from vq_keras.zoo.generation import generation_grids

# What an autoencoder needs for export (VQVAE and VQVAE2 have all of it).
SINGLE_GRID_NAME = "codes"
MAX_GENERATE_NUM = 1024  # images per generate request: one batch, as training.sample draws
RANK_SCOPE = "rank_of_request"  # the only ops that read a request before its rank is checked


def code_grid_names(model):
    """The signature names of the model's code grids, top first ("codes" for one grid)."""
    names = tuple(model.level_names)
    return (SINGLE_GRID_NAME,) if len(names) == 1 else names


def export_saved_model(model, export_base, version=None, overwrite=False, image_size=None, prior=None):
    """Writes `model` as a SavedModel for TF Serving to `<export_base>/<version>`.

    The version folder appears at once and complete: the SavedModel is written
    to a hidden temporary folder beside it (`<export_base>/.tmp-<version>-...`,
    a name TF Serving ignores) and then renamed (`vq_keras.atomic`); its files
    get the permissions of the user's umask, so a server running as another
    user can read them. If anything fails, neither the
    version folder nor the temporary folder is left behind. `export_base` must
    be on a local file system. See the module docstring for the signatures.

    Args:
        model: a built or unbuilt zoo autoencoder (`VQVAE` or `VQVAE2`, e.g.
            from `keras.saving.load_model("model.keras")`).
        export_base: the folder TF Serving watches (its `--model_base_path`);
            created if missing.
        version: positive integer, the version folder's name. Default: one more
            than the highest existing version, or 1.
        overwrite: replace an existing `<export_base>/<version>`. A running TF
            Serving does not reload a version it has already loaded; export a
            new version to update a served model.
        image_size: `None` (any height and width that are positive multiples of
            `model.downsampling`), an int for square images, or (height, width)
            to fix the signatures' image and code grid sizes (and the size of
            the images `generate` draws).
        prior: optional, a prior over the model's codes (a `PixelCNNPrior` or
            other `vq_keras.models.Prior` for a VQVAE, a `HierarchicalPrior`
            for a VQVAE2), to add the `generate` signature.

    Returns:
        The path of the written version folder, `<export_base>/<version>` (str).

    Raises:
        TypeError: `model` is not a zoo autoencoder.
        ValueError: a bad argument, an export_base it cannot write (a file, under a
            file, read-only), the version exists and `overwrite` is False, or a
            prior that does not model the model's codes.

    Example:
        >>> model = keras.saving.load_model("runs/cifar10/model.keras")
        >>> export_saved_model(model, "exports/vqvae")
        'exports/vqvae/1'
    """
    _check_model(model)
    image_size = _standardize_image_size(model, image_size)
    generator = None if prior is None else _Generator(model, prior, image_size)
    if not isinstance(overwrite, bool):
        raise ValueError(
            f"export_saved_model expects overwrite to be True or False. Received: overwrite={overwrite!r}"
        )
    if version is not None and (
        isinstance(version, bool) or not isinstance(version, numbers.Integral) or version < 1
    ):
        raise ValueError(
            "export_saved_model expects version to be a positive integer (TF Serving's version "
            f"folder name) or None for the next free version. Received: version={version!r}"
        )
    export_base = os.fspath(export_base)
    if not export_base:
        raise ValueError(
            "export_saved_model expects export_base to be a folder path (TF Serving's model base path), "
            "e.g. 'exports/vqvae'. Received: export_base=''"
        )
    problem = why_not_writable(export_base, folder=True)
    if problem:
        raise ValueError(
            f"export_saved_model expects export_base to be a folder it can write (TF Serving's model base "
            f"path). Received: export_base={export_base!r}: {problem}. Pass a folder you can write to."
        )
    version = _next_version(export_base) if version is None else int(version)
    target = os.path.join(export_base, str(version))
    if os.path.lexists(target):
        if not os.path.isdir(target):
            raise ValueError(
                f"export_saved_model cannot write version {version}: {target!r} exists and is not a "
                "folder. Remove it or pass another version."
            )
        if not overwrite:
            raise ValueError(
                f"Version {version} already exists at {target!r}; export_saved_model never replaces a "
                "version unless asked. Pass version=None for the next free version, another version, "
                "or overwrite=True to replace it."
            )

    model.build_if_needed()
    archive = _build_archive(model, image_size, generator)

    created_base = not os.path.isdir(export_base)
    try:
        with atomic_directory(target, replace=overwrite) as temporary:
            archive.write_out(
                str(temporary),
                options=tf.saved_model.SaveOptions(experimental_custom_gradients=False),
                verbose=False,
            )
    except BaseException as error:
        if created_base:
            _remove_if_empty(export_base)
        if isinstance(error, OSError) and os.path.isdir(target) and not overwrite:
            raise ValueError(
                f"Version {version} appeared at {target!r} while export_saved_model was writing it "
                "(another export?). Nothing was written; export again for the next free version."
            ) from error
        raise
    return target


def _remove_if_empty(folder):
    try:
        os.rmdir(folder)
    except OSError:
        pass


def _check_model(model):
    if not isinstance(model, VQModel):  # its contract: encode_levels, decode_levels, code_shapes, ...
        raise TypeError(
            "export_saved_model expects a vq_keras autoencoder (a VQModel such as VQVAE or VQVAE2, e.g. "
            "keras.saving.load_model('model.keras')). "
            f"Received: model of type {type(model).__name__}."
            " A prior is exported beside its autoencoder: export_saved_model(autoencoder, base, prior=prior)."
        )


def _standardize_image_size(model, image_size):
    """None or (height, width), checked against the model's downsampling."""
    if image_size is None:
        return None
    size = (image_size, image_size) if isinstance(image_size, numbers.Integral) else image_size
    factor = model.downsampling
    valid = (
        isinstance(size, (tuple, list))
        and len(size) == 2
        and all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in size)
    )
    if not valid or not all(s >= factor and s % factor == 0 for s in size):
        raise ValueError(
            f"export_saved_model expects image_size to be None, an int or (height, width), with height "
            f"and width positive multiples of {factor} ({type(model).__name__} downsamples images by "
            f"{factor}; e.g. {factor * 4} or ({factor * 4}, {factor * 8})). Received: image_size={image_size!r}. "
            f"Pass image_size=None to accept any multiple of {factor}."
        )
    return tuple(int(s) for s in size)


def _next_version(export_base):
    """One more than the highest numeric folder name in `export_base`, or 1."""
    if not os.path.isdir(export_base):
        return 1
    versions = [
        int(entry.name)
        for entry in os.scandir(export_base)
        if entry.name.isascii() and entry.name.isdigit() and entry.is_dir()
    ]
    return max(versions, default=0) + 1


def _shape_of(request):
    """The int32 shape vector of a request as it arrives, whatever the signature says.

    A signature called as a function (`tf.saved_model.load`) is optimized by
    Grappler for its traced input spec, which folds Rank(request) (and Size of
    Shape(request)) to the signature's rank: a rank-3 request would pass the rank
    check and then fail in an unrelated op ("slice index 3 of dimension 0 out of
    bounds"). A round trip through SerializeTensor/ParseTensor (a few bytes)
    hides the static shape, so the rank is read from the request at run time.
    """
    shape = tf.raw_ops.Shape(input=request, out_type=tf.int32)
    return tf.raw_ops.ParseTensor(serialized=tf.raw_ops.SerializeTensor(tensor=shape), out_type=tf.int32)


def _rank_of(request):
    with tf.name_scope(RANK_SCOPE):
        if request.shape.is_fully_defined():
            # Grappler folds the Shape of a fully known static shape (a scalar
            # signature input) too: the request itself goes through the round trip.
            request = tf.raw_ops.ParseTensor(
                serialized=tf.raw_ops.SerializeTensor(tensor=request), out_type=request.dtype
            )
        return tf.raw_ops.Size(input=_shape_of(request), out_type=tf.int32)


def _assert(condition, message, *values):
    """An Assert op: fails the request with `message` and `values` when `condition` is False."""
    return tf.debugging.Assert(condition, [message, *values], summarize=16)


class _Endpoints:
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
        rank = _rank_of(images)
        rank_ok = _assert(
            tf.equal(rank, 4), f"{signature} expects images of shape {layout}. Received rank:", rank
        )
        # Every later check (reductions use the static rank) runs only once the rank is right.
        with tf.control_dependencies([rank_ok]):
            return self._checked_image_values(images, signature, layout)

    def _checked_image_values(self, images, signature, layout):
        shape = _shape_of(images)
        batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
        checks = [
            _assert(
                tf.greater(batch, 0),
                f"{signature} expects at least one image: {layout} with batch at least 1. Received shape:",
                shape,
            ),
            _assert(
                tf.equal(channels, self.channels),
                f"{signature} expects {self.channels}-channel images {layout}. Received shape:",
                shape,
            ),
        ]
        if self.image_size:
            checks.append(
                _assert(
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
                _assert(
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
            rank = _rank_of(codes)
            ranks_ok.append(
                _assert(
                    tf.equal(rank, 3 + len(self.code_axes)),
                    f"decode expects {name} of shape ({self.code_layout}). Received rank:",
                    rank,
                )
            )
        # Every later check (reductions use the static rank) runs only once the ranks are right.
        with tf.control_dependencies(ranks_ok):
            return self._checked_code_values(grids)

    def _checked_code_values(self, grids):
        shapes = [_shape_of(codes) for codes in grids]
        # The other grids must have the top grid's batch size (checked below).
        checks = [
            _assert(
                tf.greater(shapes[0][0], 0),
                f"decode expects at least one code grid: {self.grid_names[0]} of shape (batch, height, width) "
                "with batch at least 1. Received shape:",
                shapes[0],
            )
        ]
        for name, codes in zip(self.grid_names, grids):
            checks.append(
                _assert(
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
                    _assert(
                        tf.logical_and(tf.equal(shape[1], size[0]), tf.equal(shape[2], size[1])),
                        f"decode expects {name} of shape (batch, {size[0]}, {size[1]}) (exported with "
                        f"image_size={self.image_size}). Received shape:",
                        shape,
                    )
                )
        else:
            top = shapes[0]
            checks.append(
                _assert(
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
                _assert(
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


class _Generator:
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
            rank = _rank_of(value)
            ranks_ok.append(_assert(tf.equal(rank, 0), f"generate expects {name} to be a scalar. Received rank:", rank))
        if labels is not None:
            rank = _rank_of(labels)
            ranks_ok.append(
                _assert(tf.equal(rank, 1), "generate expects labels of shape (num,), one class per image. Received rank:", rank)
            )
        with tf.control_dependencies(ranks_ok):
            checks = [
                _assert(
                    tf.logical_and(num >= 1, num <= MAX_GENERATE_NUM),
                    f"generate expects num (images to draw) in [1, {MAX_GENERATE_NUM}]; draw more with "
                    "several requests and other seeds. Received num:",
                    num,
                ),
                _assert(seed >= 0, "generate expects seed in [0, 2**31). Received seed:", seed),
                _assert(
                    tf.logical_and(temperature > 0, tf.math.is_finite(temperature)),
                    "generate expects temperature > 0 and finite (1 samples the prior as trained). "
                    "Received temperature:",
                    temperature,
                ),
                _assert(
                    tf.logical_and(top_k >= 0, top_k <= self.max_top_k),
                    f"generate expects top_k in [0, {self.max_top_k}] (0: no filter; else draw among the top_k "
                    "most probable codes). Received top_k:",
                    top_k,
                ),
                _assert(
                    tf.logical_and(top_p > 0, top_p <= 1),
                    "generate expects top_p in (0, 1] (1: no filter; else nucleus sampling). Received top_p:",
                    top_p,
                ),
                _assert(
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
                    _assert(
                        tf.equal(tf.size(labels), num),
                        "generate expects one label per image: labels of shape (num,). Received num and labels "
                        "shape:",
                        num,
                        _shape_of(labels),
                    ),
                    _assert(
                        tf.reduce_all(tf.logical_and(labels >= 0, labels < self.num_classes)),
                        f"generate expects labels in [0, {self.num_classes}) (the classes of the prior). Received labels:",
                        labels,
                    ),
                ]
            if guidance is not None:
                checks.append(
                    _assert(
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


def _build_archive(model, image_size, generator=None):
    endpoints = _Endpoints(model, image_size)
    archive = keras.export.ExportArchive()
    archive.track(model)
    # The first endpoint is also written as "serving_default" (TF Serving's default signature).
    archive.add_endpoint("reconstruct", endpoints.reconstruct, [endpoints.image_spec(tf.float32)])
    archive.add_endpoint("reconstruct_uint8", endpoints.reconstruct_uint8, [endpoints.image_spec(tf.uint8)])
    archive.add_endpoint("encode", endpoints.encode, [endpoints.image_spec(tf.float32)])
    archive.add_endpoint("decode", endpoints.decode, endpoints.code_specs())
    if generator is not None:
        generator.prior.build_if_needed()
        archive.track(generator.prior)
        archive.add_endpoint("generate", generator.generate, generator.specs())
    return archive
