"""The one image pipeline every data source feeds: read, decode, bring to size, shuffle, batch.

A source (training/data/registry.py: the bundled sample, a folder, a TFDS data set) gives its splits
as items (an image, a file path or an encoded record) and a `load` function decoding one item
(training/data/source.py); this module shuffles the items, decodes them in parallel after the
shuffle (so neither a folder nor a TFDS data set is ever held in memory), checks every image
decoded, brings it to `--image_size` (training/data/images.py), and batches.

The data variance (the loss normaliser) is estimated from the source's fixed sample of the training
split (`Splits.variance_items`, up to VARIANCE_SAMPLE images).
"""

import dataclasses
import os
import re
import threading
from pathlib import Path
from typing import Callable

import tensorflow as tf

from training.data import folder
from training.data.images import check_batch_fits_memory, format_size, parse_image_size, shape_image
from training.data.registry import data_source
from training.data.sample_reader import SAMPLE_DATASET, SAMPLE_PATH  # noqa: F401  (the pipeline's public names)
from training.data.source import VARIANCE_SAMPLE  # noqa: F401
from training.errors import UsageError

SHUFFLE_BUFFER = 10_000
SHUFFLE_BUFFER_BYTES = 256 << 20  # encoded records a shuffle holds at most (10,000 ImageNet JPEGs: 1.1 GB)
# bytes tf.data's autotuning may buffer ahead (prefetch and parallel maps; its default is half the
# machine's memory): 1 GiB holds over 600 batches of 32 64x64 images, 40 of 256x256 ones
PIPELINE_RAM_BUDGET = 1 << 30
BAD_IMAGE_MARKER = "vq_keras: undecodable image:"


@dataclasses.dataclass
class ImageData:
    """Batched float32 images in [0, 1] and what the model needs to know of them."""

    train: tf.data.Dataset  # repeats forever, shuffled
    validation: tf.data.Dataset  # one pass
    image_shape: tuple
    data_variance: float  # pixel variance of the training split (a fixed sample of it), [0, 1] scale
    num_train: int
    num_validation: int
    # train_from_step(n): `train` without its first n batches, for an exact resume
    train_from_step: Callable[[int], tf.data.Dataset]
    # image files left out (skip_bad_images): found by the check at the start, then any that fail to
    # decode in the pipeline, appended while it runs
    skipped_files: list = dataclasses.field(default_factory=list)
    split_files: tuple = None  # (training names, validation names) of a folder: `Splits.files`


def image_spec_or_none(name, data_dir=None, image_size=None):
    """The (height, width, channels) the pipeline will give for a data set, if known before reading
    any image (a folder's channels are the model's, so its spec is None)."""
    shape = data_source(name, data_dir).image_shape()
    if shape is None:
        return None
    size = parse_image_size(image_size)
    return shape if size is None else (*size, shape[-1])


def read_splits(name, data_dir=None, with_labels=False, skip_bad_images=False, image_size=None, channels=None):
    """The training and held-out splits of a data set as uint8 images of one shape (brought to
    `image_size` by a centre crop), unbatched, one pass: (train, validation, num_classes, skipped_files).

    With `with_labels`, elements are (image, int64 class label) pairs and num_classes is the number of
    classes (else None). `channels` is what a folder's images are brought to (default 3). An image file
    that cannot be decoded raises a UsageError naming it (when the pipeline reaches it: wrap the
    iteration in `naming_bad_images()`), or with `skip_bad_images` is left out and listed in
    skipped_files.
    """
    size = parse_image_size(image_size)
    source = _open(name, data_dir, with_labels, skip_bad_images, channels, size)
    _fixed_shape(name, source, size, None)
    shaped = lambda items: _decoded(items, source, skip_bad_images, size)  # noqa: E731
    return shaped(source.train), shaped(source.validation), source.num_classes, source.skipped


def load_image_data(
    name, data_dir=None, batch_size=32, seed=0, skip_bad_images=False, image_size=None, channels=None,
    random_crop=False, random_flip=False, fit_size=None,
):
    """Loads a data set by name into an `ImageData`; raises UsageError if it cannot.

    Args:
        image_size: (height, width), "N" or "HxW", or None: resize every image to cover it and crop
            (training/data/images.py). Without it every image must have one size.
        channels: the channels a folder's images are brought to (default 3).
        random_crop, random_flip: training augmentation, seeded by (seed, position in the stream).
        fit_size: function (height, width) -> a size the model takes, named in the error for images of
            several sizes.
    See `read_splits` for undecodable files and `skip_bad_images`.
    """
    size = parse_image_size(image_size)
    if random_crop and size is None:
        raise UsageError(
            "--random_crop crops the training images to --image_size, which is not given. Pass "
            "--image_size=N (or HxW) with it, or drop --random_crop."
        )
    check_batch_fits_memory(size, channels, batch_size)
    source = _open(name, data_dir, False, skip_bad_images, channels, size)
    image_shape = _fixed_shape(name, source, size, fit_size)
    if source.num_train < batch_size:
        raise UsageError(
            f"The training split of {name!r} has {source.num_train} images, fewer than one batch "
            f"(--batch_size={batch_size}). Use a smaller --batch_size or more images."
        )
    centred = lambda items: _decoded(items, source, skip_bad_images, size)  # noqa: E731
    skipped_before = len(source.skipped)
    with naming_bad_images():
        variance = pixel_variance(centred(source.variance_items))
    # the variance sample is training files: those it found undecodable are not training images
    num_train = source.num_train - (len(source.skipped) - skipped_before)

    def train_from_step(step):
        augment = lambda index: (seed, index, random_crop, random_flip)  # noqa: E731
        numbered = shuffled_stream(
            source.train, batch_size, seed, source.num_train, step, numbered=True, item_bytes=source.item_bytes
        )
        batches = _decoded(numbered, source, skip_bad_images, size, augment).batch(batch_size, drop_remainder=True)
        return _bounded(batches.map(_to_float, tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE))

    validation = centred(source.validation).batch(batch_size)
    return ImageData(
        train=train_from_step(0),
        validation=_bounded(validation.map(_to_float, tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)),
        image_shape=image_shape,
        data_variance=variance,
        num_train=num_train,
        num_validation=source.num_validation,
        train_from_step=train_from_step,
        skipped_files=source.skipped,
        split_files=source.files,
    )


def _to_float(images):
    return tf.cast(images, tf.float32) / 255.0


def shuffled_stream(elements, batch_size, seed, count, start_step=0, numbered=False, item_bytes=0):
    """Endless seeded shuffled `elements` (`count` of them), positioned at batch `start_step`: exactly
    the elements a run from step 0 sees from that step on; with `numbered`, (position, element) pairs.
    The shuffle buffer holds SHUFFLE_BUFFER elements, fewer where they take `item_bytes` each and
    that many would exceed SHUFFLE_BUFFER_BYTES."""
    # Skipping elements before decoding them replays the seeded shuffle without
    # reading images: about 2 microseconds an element, so 6 s to resume at
    # step 100,000 of batch 32 on CPU, and nothing to save per backup.
    buffer = min(count, SHUFFLE_BUFFER, SHUFFLE_BUFFER_BYTES // max(1, item_bytes))
    stream = elements.shuffle(buffer, seed=seed, reshuffle_each_iteration=True).repeat()
    if numbered:
        stream = stream.enumerate()
    return stream.skip(start_step * batch_size)


def shuffled_batches(elements, batch_size, seed, count, start_step=0):
    """`shuffled_stream` in batches."""
    return shuffled_stream(elements, batch_size, seed, count, start_step).batch(batch_size, drop_remainder=True)


def _decoded(items, source, skip_bad_images, size, augment=None):
    """`items` decoded and brought to `size` in parallel (order kept), one map per image, so that no
    buffer of the pipeline holds an image at its size in the file. An undecodable one stops the
    iteration with an error naming it (`naming_bad_images` turns it into a UsageError), or with
    `skip_bad_images` is left out and appended to `source.skipped`.

    With `augment` (a function of the element's position giving `shape_image`'s augment), `items` are
    (position, item) pairs."""
    numbered = augment is not None

    def load(*element):  # -> (position?, image, decoded, name, label?)
        index, (item, *label) = (element[0], element[1:]) if numbered else (None, element)
        image, decoded, name = source.load(item)
        shaped = lambda: shape_image(image, size, None if index is None else augment(index))  # noqa: E731
        if size is not None:  # an undecodable file (dropped or named below) gets a blank image of that size
            blank = lambda: tf.zeros(tf.concat([size, tf.shape(image)[-1:]], 0), tf.uint8)  # noqa: E731
            image = tf.ensure_shape(tf.cond(decoded, shaped, blank), (*size, image.shape[-1]))
        else:
            image = tf.cond(decoded, shaped, lambda: image)
        return (*(() if index is None else (index,)), image, decoded, name, *label)

    def drop_flags(*element):  # (index?, image, decoded, name, label?) -> (image, label?)
        kept = (element[numbered], *element[3 + numbered:])
        return kept if len(kept) > 1 else kept[0]

    loaded = items.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    if skip_bad_images:
        def decoded_or_recorded(*element):
            decoded, name = element[1 + numbered], element[2 + numbered]
            return tf.cond(decoded, lambda: tf.constant(True), lambda: _record_skipped(source.skipped, name))

        loaded = loaded.filter(decoded_or_recorded)
    else:
        def asserted(*element):
            decoded, name = element[1 + numbered], element[2 + numbered]
            check = tf.debugging.Assert(decoded, [BAD_IMAGE_MARKER, name])
            with tf.control_dependencies([check]):
                image = tf.identity(element[numbered])
            return (*element[:numbered], image, *element[numbered + 1:])

        loaded = loaded.map(asserted)
    return loaded.map(drop_flags)


_RECORD_LOCK = threading.Lock()


def _record_skipped(skipped, name):
    def record(value):
        path = Path(value.numpy().decode())
        with _RECORD_LOCK:
            if path not in skipped:
                skipped.append(path)
                print(f"Skipped an undecodable image file (--skip_bad_images): {path}")
        return False

    return tf.ensure_shape(tf.py_function(record, [name], tf.bool), ())


def _undecodable(name):
    if Path(name).suffix.lower() in folder.IMAGE_SUFFIXES and not os.path.exists(name):  # removed while running
        return (
            f"Image file {name} is gone: it was there when the run started and was removed or renamed while it "
            "ran. Put it back and run the same command again (it resumes from the last backup); a resumed run "
            "refuses a folder whose files changed, as its split would."
        )
    return (
        f"Cannot decode image file {name}: TF's decoder failed on it when the pipeline reached it (the "
        f"check of its first and last bytes at the start passed: corrupt data inside?). {folder.BAD_FILE_HINT}"
    )


class naming_bad_images:
    """A context in which an image the pipeline could not decode raises a UsageError naming it."""

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if isinstance(error, tf.errors.InvalidArgumentError) and BAD_IMAGE_MARKER in str(error):
            found = re.search(re.escape(BAD_IMAGE_MARKER) + r"\]\s*\[(.*?)\]", str(error))
            name = found.group(1) if found else "(unnamed)"
            raise UsageError(_undecodable(name)) from None
        return False


def pixel_variance(images):
    """Pixel variance in [0, 1] scale of `images`, in one float64 pass."""
    total = tf.zeros((3,), tf.float64)
    for batch in images.batch(256).map(lambda x: tf.cast(x, tf.float64) / 255.0):
        total += tf.stack(
            [tf.cast(tf.size(batch), tf.float64), tf.reduce_sum(batch), tf.reduce_sum(tf.square(batch))]
        )
    pixels, first, second = total.numpy()
    if pixels == 0:
        raise UsageError("The training split holds no images.")
    mean = first / pixels
    return float(second / pixels - mean * mean)


def held_out_split(name, data_dir=None):
    """The name of the split `read_splits` returns as held out (validation)."""
    return data_source(name, data_dir).held_out_split()


def _fixed_shape(name, source, size, fit_size):
    """The (height, width, channels) of the pipeline's images; a UsageError naming --image_size for
    images of several or unknown sizes when it is not given."""
    height, width, channels = source.image_shape
    if size is not None:
        return (*size, channels)
    if height is not None and width is not None:
        return source.image_shape
    sizes = source.sizes
    if sizes:
        examples = ", ".join(f"{path} is {h}x{w}" for (h, w), path in list(sizes.items())[:3])
        found = f"differ in size: {examples} ({len(sizes)} sizes in all)"
        smallest = min(min(s) for s in sizes)
        hint = (fit_size(smallest, smallest) if fit_size else smallest)
    else:
        found = f"vary in size (TFDS gives their shape as {source.image_shape})"
        hint = fit_size(64, 64) if fit_size else 64
    hint = format_size(hint) if isinstance(hint, tuple) else hint
    raise UsageError(
        f"The images of {name!r} {found}, and --image_size is not given. Pass --image_size=N (or HxW) to "
        f"resize every image so that its shorter side is N and centre-crop it to NxN, e.g. --image_size={hint}."
    )


def _open(name, data_dir, with_labels, skip_bad_images, channels, size):
    return data_source(name, data_dir).open(with_labels, skip_bad_images, channels, covering=size)


def _bounded(dataset):
    """`dataset` with tf.data's autotuning held to PIPELINE_RAM_BUDGET for its buffers."""
    options = tf.data.Options()
    options.autotune.ram_budget = PIPELINE_RAM_BUDGET
    return dataset.with_options(options)


def data_fingerprint(name, data_dir=None):
    """A text that changes whenever the splits `read_splits(name, data_dir)` returns may change, read
    from file metadata only (no image bytes): the data source's `fingerprint`."""
    return data_source(name, data_dir).fingerprint()
