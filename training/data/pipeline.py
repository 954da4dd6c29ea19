"""The one image pipeline every data source feeds: read, decode, bring to size, shuffle, batch.

A source (the bundled sample, a folder: training/data/folder.py, a TFDS data set:
training/data/tfds_reader.py) gives its splits as items (an image, a file path or an encoded record)
and a `load` function decoding one item; this module shuffles the items, decodes them in parallel
after the shuffle (so neither a folder nor a TFDS data set is ever held in memory), checks every
image decoded, brings it to `--image_size` (training/data/images.py), and batches.

The data variance (the loss normaliser) is estimated from a fixed sample of the training split: up to
VARIANCE_SAMPLE images, all of them when there are no more, else for a folder VARIANCE_SAMPLE files
evenly spaced in sorted order and for a TFDS data set its first VARIANCE_SAMPLE records (TFDS shuffled
them when it wrote them); the bundled sample (1,200 images) is used whole.
"""

import dataclasses
import os
import re
import threading
from pathlib import Path
from typing import Callable

import numpy as np
import tensorflow as tf

from training.data import folder, tfds_reader
from training.data.images import format_size, parse_image_size, shape_image
from training.errors import UsageError

SAMPLE_DATASET = "cifar10_sample"
SAMPLE_PATH = Path(__file__).with_name("cifar10_sample.npz")
FOLDER_PREFIX = "folder:"
SAMPLE_NUM_CLASSES = 10  # CIFAR-10's
VARIANCE_SAMPLE = 1_000
SHUFFLE_BUFFER = 10_000
BAD_IMAGE_MARKER = "vq_keras: undecodable image:"
VALIDATION_EVERY = folder.VALIDATION_EVERY
KNOWN_DATASETS = tfds_reader.KNOWN_DATASETS


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


@dataclasses.dataclass
class _Source:
    """A data set's splits as items, before decoding, and how to decode one."""

    train: tf.data.Dataset  # items, or (item, label) pairs; one pass in a fixed order
    validation: tf.data.Dataset
    load: Callable  # item -> (uint8 image (h, w, c), decoded: bool, name: string)
    num_train: int
    num_validation: int
    variance_items: tf.data.Dataset  # the training items the data variance is estimated from
    image_shape: tuple  # (h, w, c) every image has as read, with None where they differ
    num_classes: int = None
    skipped: list = dataclasses.field(default_factory=list)


def describe_source(name, data_dir):
    return f"{name!r} (data_dir={data_dir or os.environ.get('TFDS_DATA_DIR') or 'TFDS default'})"


def image_spec_or_none(name, data_dir=None, image_size=None):
    """The (height, width, channels) the pipeline will give for a data set, if known before reading
    any image (a folder's channels are the model's, so its spec is None)."""
    if name.startswith(FOLDER_PREFIX):
        return None
    if name == SAMPLE_DATASET:
        shape = (32, 32, 3)
    else:
        shape = tuple(tfds_reader.tfds_builder(name, data_dir).info.features["image"].shape)
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
    source = _open(name, data_dir, with_labels, skip_bad_images, channels)
    _fixed_shape(name, source, size, None)
    shaped = lambda items: _decoded(items, source, skip_bad_images).map(  # noqa: E731
        _on_image(lambda image: shape_image(image, size)), num_parallel_calls=tf.data.AUTOTUNE
    )
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
    source = _open(name, data_dir, False, skip_bad_images, channels)
    image_shape = _fixed_shape(name, source, size, fit_size)
    if source.num_train < batch_size:
        raise UsageError(
            f"The training split of {name!r} has {source.num_train} images, fewer than one batch "
            f"(--batch_size={batch_size}). Use a smaller --batch_size or more images."
        )
    check = lambda items: _decoded(items, source, skip_bad_images)  # noqa: E731
    centred = lambda images: images.map(lambda image: shape_image(image, size), tf.data.AUTOTUNE)  # noqa: E731
    with naming_bad_images():
        variance = pixel_variance(centred(check(source.variance_items)))

    def train_from_step(step):
        augment = lambda index: (seed, index, random_crop, random_flip)  # noqa: E731
        numbered = shuffled_stream(source.train, batch_size, seed, source.num_train, step, numbered=True)
        images = _decoded(numbered, source, skip_bad_images, numbered=True).map(
            lambda index, image: shape_image(image, size, augment(index)), num_parallel_calls=tf.data.AUTOTUNE
        )
        return images.batch(batch_size, drop_remainder=True).map(_to_float, tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

    validation = centred(check(source.validation)).batch(batch_size)
    return ImageData(
        train=train_from_step(0),
        validation=validation.map(_to_float, tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE),
        image_shape=image_shape,
        data_variance=variance,
        num_train=source.num_train,
        num_validation=source.num_validation,
        train_from_step=train_from_step,
        skipped_files=source.skipped,
    )


def _to_float(images):
    return tf.cast(images, tf.float32) / 255.0


def shuffled_stream(elements, batch_size, seed, count, start_step=0, numbered=False):
    """Endless seeded shuffled `elements` (`count` of them), positioned at batch `start_step`: exactly
    the elements a run from step 0 sees from that step on; with `numbered`, (position, element) pairs."""
    # Skipping elements before decoding them replays the seeded shuffle without
    # reading images: about 2 microseconds an element, so 6 s to resume at
    # step 100,000 of batch 32 on CPU, and nothing to save per backup.
    stream = elements.shuffle(min(count, SHUFFLE_BUFFER), seed=seed, reshuffle_each_iteration=True).repeat()
    if numbered:
        stream = stream.enumerate()
    return stream.skip(start_step * batch_size)


def shuffled_batches(elements, batch_size, seed, count, start_step=0):
    """`shuffled_stream` in batches."""
    return shuffled_stream(elements, batch_size, seed, count, start_step).batch(batch_size, drop_remainder=True)


def _on_image(function):
    """`function` of an image, applied to an element that is an image or an (image, label) pair."""
    return lambda image, *label: (function(image), *label) if label else function(image)


def _decoded(items, source, skip_bad_images, numbered=False):
    """`items` decoded in parallel (order kept). An undecodable one stops the iteration with an error
    naming it (`naming_bad_images` turns it into a UsageError), or with `skip_bad_images` is left out
    and appended to `source.skipped`."""
    def load(*element):
        index, (item, *label) = (element[0], element[1:]) if numbered else (None, element)
        image, decoded, name = source.load(item)
        return (*(() if index is None else (index,)), image, decoded, name, *label)

    def drop_flags(*element):  # (index?, image, decoded, name, label?) -> (index?, image, label?)
        kept = (*element[: 1 + numbered], *element[3 + numbered:])
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


class naming_bad_images:
    """A context in which an image the pipeline could not decode raises a UsageError naming it."""

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if isinstance(error, tf.errors.InvalidArgumentError) and BAD_IMAGE_MARKER in str(error):
            found = re.search(re.escape(BAD_IMAGE_MARKER) + r"\]\s*\[(.*?)\]", str(error))
            name = found.group(1) if found else "(unnamed)"
            raise UsageError(
                f"Cannot decode image file {name}: TF's decoder failed on it when the pipeline reached it (the "
                f"check of its first and last bytes at the start passed: corrupt data inside?). "
                f"{folder.BAD_FILE_HINT}"
            ) from None
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
    if name == SAMPLE_DATASET:
        return "test"
    if name.startswith(FOLDER_PREFIX):
        return f"every {VALIDATION_EVERY}th file"
    return tfds_reader.split_names(tfds_reader.prepared_builder(name, data_dir).info.splits)[1]


def _fixed_shape(name, source, size, fit_size):
    """The (height, width, channels) of the pipeline's images; a UsageError naming --image_size for
    images of several or unknown sizes when it is not given."""
    height, width, channels = source.image_shape
    if size is not None:
        return (*size, channels)
    if height is not None and width is not None:
        return source.image_shape
    sizes = getattr(source, "sizes", None)
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


def _open(name, data_dir, with_labels, skip_bad_images, channels):
    if name == SAMPLE_DATASET:
        return _sample_source(with_labels)
    if name.startswith(FOLDER_PREFIX):
        if with_labels:
            raise UsageError(
                f"Data set {name!r} is a folder of images without class labels, so it cannot train a "
                "class-conditional prior. Drop --class_conditional or use a labelled TFDS data set."
            )
        return _folder_source(name[len(FOLDER_PREFIX):], skip_bad_images, channels or 3)
    return _tfds_source(name, data_dir, with_labels)


def _sample_source(with_labels):
    with np.load(SAMPLE_PATH) as arrays:
        arrays = dict(arrays)
    items = lambda split: (  # noqa: E731
        (arrays[f"{split}_images"], arrays[f"{split}_labels"]) if with_labels else arrays[f"{split}_images"]
    )
    train = tf.data.Dataset.from_tensor_slices(items("train"))
    return _Source(
        train=train,
        validation=tf.data.Dataset.from_tensor_slices(items("test")),
        load=lambda image: (image, tf.constant(True), tf.constant(SAMPLE_DATASET)),
        num_train=len(arrays["train_images"]),
        num_validation=len(arrays["test_images"]),
        variance_items=tf.data.Dataset.from_tensor_slices(arrays["train_images"]),
        image_shape=(32, 32, 3),
        num_classes=SAMPLE_NUM_CLASSES if with_labels else None,
    )


def _tfds_source(name, data_dir, with_labels):
    builder = tfds_reader.prepared_builder(name, data_dir)
    train_split, validation_split = tfds_reader.split_names(builder.info.splits)
    shape = tuple(builder.info.features["image"].shape)
    channels = shape[-1]
    return _Source(
        train=tfds_reader.read_split(builder, train_split, with_labels),
        validation=tfds_reader.read_split(builder, validation_split, with_labels),
        load=lambda encoded: (*tfds_reader.decode(encoded, channels), tf.constant(f"a record of TFDS {name}")),
        num_train=tfds_reader.split_size(builder, train_split),
        num_validation=tfds_reader.split_size(builder, validation_split),
        variance_items=tfds_reader.read_split(builder, train_split, False).take(VARIANCE_SAMPLE),
        image_shape=shape,
        num_classes=tfds_reader.num_classes(name, builder) if with_labels else None,
    )


def _folder_source(root, skip_bad_images, channels):
    paths = folder.image_paths(root)
    if len(paths) < 2:
        raise UsageError(
            f"--dataset=folder:{root} needs a folder with at least two images "
            f"({', '.join(folder.IMAGE_SUFFIXES)}); found {len(paths)} there."
        )
    sizes, bad = folder.check_files(paths)
    if bad and not skip_bad_images:
        raise UsageError(str(bad[min(bad)]))
    paths = [path for path in paths if path in sizes]
    if len(paths) < 2:
        raise UsageError(
            f"--dataset=folder:{root} needs at least two readable images; {len(bad)} of "
            f"{len(bad) + len(paths)} files could not be read."
        )
    train, validation = folder.split_by_file(paths)
    evenly = np.unique(np.linspace(0, len(train) - 1, min(len(train), VARIANCE_SAMPLE)).round().astype(int))
    names = lambda chosen: tf.data.Dataset.from_tensor_slices([str(path) for path in chosen])  # noqa: E731
    distinct = {}
    for path in paths:
        distinct.setdefault(sizes[path], path)
    one_size = next(iter(distinct)) if len(distinct) == 1 else (None, None)
    source = _Source(
        train=names(train),
        validation=names(validation),
        load=lambda path: (*folder.decode_file(path, channels), path),
        num_train=len(train),
        num_validation=len(validation),
        variance_items=names([train[i] for i in evenly]),
        image_shape=(*one_size, channels),
        skipped=sorted(bad),
    )
    source.sizes = distinct
    return source


def data_fingerprint(name, data_dir=None):
    """A text that changes whenever the splits `read_splits(name, data_dir)` returns may change,
    read from file metadata only (no image bytes):

    - folder:PATH: the folder's resolved path, the split rule (every VALIDATION_EVERY-th sorted
      file held out) and each image file's relative name, size and modification time;
    - a TFDS data set: the prepared data set's folder (<data_dir>/<name>/<version>), its
      version, the split names used and the size and modification time of its dataset_info.json;
    - the bundled sample: its file's size and modification time.
    """
    if name == SAMPLE_DATASET:
        return f"sample\0{_file_stamp(SAMPLE_PATH)}"
    if name.startswith(FOLDER_PREFIX):
        root = Path(name[len(FOLDER_PREFIX):])
        files = [f"{path.relative_to(root).as_posix()}\0{_file_stamp(path)}" for path in folder.image_paths(root)]
        return "\n".join([f"folder\0{root.resolve()}\0validation_every={VALIDATION_EVERY}", *files])
    builder = tfds_reader.tfds_builder(name, data_dir)
    info_file = Path(builder.data_dir) / "dataset_info.json"
    stamp = _file_stamp(info_file) if info_file.is_file() else "not prepared"
    splits = tfds_reader.split_names(builder.info.splits)
    return f"tfds\0{builder.data_dir}\0{builder.info.version}\0{splits}\0{stamp}"


def _file_stamp(path):
    stat = path.stat()
    return f"{stat.st_size}\0{stat.st_mtime_ns}"
