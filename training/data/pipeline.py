import dataclasses
import os
import re
from pathlib import Path
from typing import Callable

import numpy as np
import tensorflow as tf

from training.errors import UsageError

SAMPLE_DATASET = "cifar10_sample"
SAMPLE_PATH = Path(__file__).with_name("cifar10_sample.npz")
FOLDER_PREFIX = "folder:"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
SAMPLE_NUM_CLASSES = 10  # CIFAR-10's
VALIDATION_EVERY = 10  # folder data sets: every 10th file (sorted) is held out
KNOWN_DATASETS = (
    f"{SAMPLE_DATASET} (bundled, offline), folder:PATH (a folder of images), "
    "or any TFDS image data set such as cifar10, mnist, svhn_cropped, celeb_a"
)


@dataclasses.dataclass
class ImageData:
    """Batched float32 images in [0, 1] and what the model needs to know of them."""

    train: tf.data.Dataset  # repeats forever, shuffled
    validation: tf.data.Dataset  # one pass
    image_shape: tuple
    data_variance: float  # pixel variance of the training split, [0, 1] scale
    num_train: int
    num_validation: int
    # train_from_step(n): `train` without its first n batches, for an exact resume
    train_from_step: Callable[[int], tf.data.Dataset]
    skipped_files: tuple = ()  # undecodable image files left out (folder data sets, skip_bad_images)


def describe_source(name, data_dir):
    return f"{name!r} (data_dir={data_dir or os.environ.get('TFDS_DATA_DIR') or 'TFDS default'})"


def image_spec_or_none(name, data_dir=None):
    """The (height, width, channels) of a data set's images if known before reading any."""
    if name == SAMPLE_DATASET:
        return (32, 32, 3)
    if name.startswith(FOLDER_PREFIX):
        return None  # known once the files are read
    return tuple(_tfds_builder(name, data_dir).info.features["image"].shape)


def read_splits(name, data_dir=None, with_labels=False, skip_bad_images=False):
    """The training and held-out splits of a data set as uint8 images, unbatched:
    (train, validation, num_classes, skipped_files).

    With `with_labels`, elements are (image, int64 class label) pairs and
    num_classes is the number of classes (else None). Undecodable (corrupt,
    truncated, empty) files of a folder data set raise a UsageError naming the
    file, or with `skip_bad_images` are left out and listed in skipped_files.
    """
    if name == SAMPLE_DATASET:
        return (*_sample_splits(with_labels), ())
    if name.startswith(FOLDER_PREFIX):
        if with_labels:
            raise UsageError(
                f"Data set {name!r} is a folder of images without class labels, so it cannot train a "
                "class-conditional prior. Drop --class_conditional or use a labelled TFDS data set."
            )
        train, validation, skipped = _folder_splits(name[len(FOLDER_PREFIX):], skip_bad_images)
        return train, validation, None, skipped
    return (*_tfds_splits(name, data_dir, with_labels), ())


def load_image_data(name, data_dir=None, batch_size=32, seed=0, skip_bad_images=False):
    """Loads a data set by name into an `ImageData`; raises UsageError if it cannot
    (see `read_splits` for undecodable files and `skip_bad_images`)."""
    train, validation, _, skipped = read_splits(name, data_dir, skip_bad_images=skip_bad_images)
    train, validation = train.cache(), validation.cache()
    count, variance = _count_and_variance(train)
    num_validation = int(validation.reduce(0, lambda n, _: n + 1))
    if count < batch_size:
        raise UsageError(
            f"The training split of {name!r} has {count} images, fewer than one batch "
            f"(--batch_size={batch_size}). Use a smaller --batch_size or more images."
        )
    train_from_step = lambda step: _training_pipeline(train, batch_size, seed, count, step)  # noqa: E731
    return ImageData(
        train=train_from_step(0),
        validation=validation.batch(batch_size).map(_to_float, tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE),
        image_shape=tuple(train.element_spec.shape),
        data_variance=variance,
        num_train=count,
        num_validation=num_validation,
        train_from_step=train_from_step,
        skipped_files=skipped,
    )


def _to_float(images):
    return tf.cast(images, tf.float32) / 255.0


def shuffled_batches(elements, batch_size, seed, count, start_step=0):
    """Endless seeded shuffled batches of `elements` (`count` of them), positioned at
    `start_step`: exactly the batches a run from step 0 sees from that step on."""
    # Skipping elements before batching replays the seeded shuffle without
    # building batches: about 2 microseconds an image, so 6 s to resume at
    # step 100,000 of batch 32 on CPU, and nothing to save per backup (a
    # checkpointed iterator of CIFAR-10 holds the cache: ~200 MB, ~2 s a save).
    return (
        elements.shuffle(min(count, 10_000), seed=seed, reshuffle_each_iteration=True)
        .repeat()
        .skip(start_step * batch_size)
        .batch(batch_size, drop_remainder=True)
    )


def _training_pipeline(images, batch_size, seed, count, start_step=0):
    return (
        shuffled_batches(images, batch_size, seed, count, start_step)
        .map(_to_float, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )


def _count_and_variance(images):
    """Number of images and pixel variance in [0, 1] scale, in one float64 pass."""
    total = tf.zeros((3,), tf.float64)
    for batch in images.batch(1024).map(lambda x: tf.cast(x, tf.float64) / 255.0):
        total += tf.stack(
            [tf.cast(tf.size(batch), tf.float64), tf.reduce_sum(batch), tf.reduce_sum(tf.square(batch))]
        )
    pixels, first, second = total.numpy()
    num_images = int(pixels / max(np.prod(images.element_spec.shape), 1))
    if num_images == 0:
        raise UsageError("The training split holds no images.")
    mean = first / pixels
    return num_images, float(second / pixels - mean * mean)


def _sample_splits(with_labels):
    with np.load(SAMPLE_PATH) as arrays:
        arrays = dict(arrays)
    if not with_labels:
        return _slices(arrays["train_images"]), _slices(arrays["test_images"]), None
    return (
        _slices((arrays["train_images"], arrays["train_labels"])),
        _slices((arrays["test_images"], arrays["test_labels"])),
        SAMPLE_NUM_CLASSES,
    )


def _slices(arrays):
    return tf.data.Dataset.from_tensor_slices(arrays)


def _tfds_builder(name, data_dir):
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise UsageError(f"Unknown data set {name!r}. Known data sets: {KNOWN_DATASETS}.") from None
    if "image" not in builder.info.features:
        raise UsageError(
            f"TFDS data set {name!r} has no 'image' feature (it has: "
            f"{', '.join(builder.info.features)}); pick an image data set."
        )
    return builder


def _tfds_splits(name, data_dir, with_labels):
    builder = _tfds_builder(name, data_dir)
    if not builder.is_prepared():
        raise UsageError(
            f"TFDS data set {name!r} is not prepared under {builder.data_dir_root}, and this "
            "machine cannot download it. Pass --data_dir=DIR (or set TFDS_DATA_DIR=DIR) to a "
            f"folder holding {name}/<version>/ as `tfds build` writes it (for CIFAR-10 here: "
            "--data_dir=../shared/tfds), or use --dataset=cifar10_sample to train offline."
        )
    num_classes = _tfds_num_classes(name, builder) if with_labels else None
    if with_labels:
        select = lambda example: (example["image"], example["label"])  # noqa: E731
    else:
        select = lambda example: example["image"]  # noqa: E731
    train_split, validation_split = _split_names(builder.info.splits)
    read = lambda split: builder.as_dataset(split=split, shuffle_files=False).map(  # noqa: E731
        select, num_parallel_calls=tf.data.AUTOTUNE
    )
    return read(train_split), read(validation_split), num_classes


def _tfds_num_classes(name, builder):
    import tensorflow_datasets as tfds

    label = builder.info.features["label"] if "label" in builder.info.features else None
    if not isinstance(label, tfds.features.ClassLabel):
        raise UsageError(
            f"TFDS data set {name!r} has no 'label' class feature (it has: "
            f"{', '.join(builder.info.features)}), so it cannot train a class-conditional prior. "
            "Drop --class_conditional."
        )
    return label.num_classes


def _split_names(splits):
    """The training split and the held-out split used for validation."""
    for held_out in ("test", "validation"):
        if held_out in splits:
            return "train", held_out
    return "train[:90%]", "train[90%:]"


def folder_image_paths(folder):
    """The image files under `folder` (recursively), sorted: the order the splits follow."""
    if not Path(folder).is_dir():
        return []
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


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
        files = [f"{path.relative_to(root).as_posix()}\0{_file_stamp(path)}" for path in folder_image_paths(root)]
        return "\n".join([f"folder\0{root.resolve()}\0validation_every={VALIDATION_EVERY}", *files])
    builder = _tfds_builder(name, data_dir)
    info_file = Path(builder.data_dir) / "dataset_info.json"
    stamp = _file_stamp(info_file) if info_file.is_file() else "not prepared"
    splits = _split_names(builder.info.splits)
    return f"tfds\0{builder.data_dir}\0{builder.info.version}\0{splits}\0{stamp}"


def _file_stamp(path):
    stat = path.stat()
    return f"{stat.st_size}\0{stat.st_mtime_ns}"


def _folder_splits(folder, skip_bad_images=False):
    paths = folder_image_paths(folder)
    if len(paths) < 2:
        raise UsageError(
            f"--dataset=folder:{folder} needs a folder with at least two images "
            f"({', '.join(IMAGE_SUFFIXES)}); found {len(paths)} there."
        )
    images, skipped = _read_same_size_images(paths, skip_bad_images)
    paths = [path for path in paths if path not in skipped]
    if len(paths) < 2:
        raise UsageError(
            f"--dataset=folder:{folder} needs at least two readable images; {len(skipped)} of "
            f"{len(skipped) + len(paths)} files could not be decoded."
        )
    images = np.stack(images)
    held_out = np.arange(len(paths)) % VALIDATION_EVERY == VALIDATION_EVERY - 1
    if not held_out.any():
        held_out[-1] = True
    return (
        tf.data.Dataset.from_tensor_slices(images[~held_out]),
        tf.data.Dataset.from_tensor_slices(images[held_out]),
        tuple(skipped),
    )


def _read_same_size_images(paths, skip_bad_images=False):
    """Decoded images (all of one shape) and the undecodable files skipped."""
    images, kept, skipped = [], [], []
    for path in paths:
        try:
            image = _decode_image_file(path)
        except UsageError:
            if not skip_bad_images:
                raise
            skipped.append(path)
            continue
        if images and image.shape != images[0].shape:
            raise UsageError(
                f"All images of a folder data set must have one size; {kept[0]} is "
                f"{images[0].shape} but {path} is {image.shape}. Resize them first."
            )
        images.append(image)
        kept.append(path)
    return images, skipped


def _decode_image_file(path):
    data = tf.io.read_file(str(path))
    hint = "Replace or delete it, or pass --skip_bad_images to leave such files out."
    if int(tf.strings.length(data)) == 0:
        raise UsageError(f"Image file {path} is empty (0 bytes). {hint}")
    try:
        # TF's decoders reject truncated PNG, JPEG and GIF data instead of returning part of an image.
        return tf.io.decode_image(data, expand_animations=False).numpy()
    except tf.errors.OpError as error:
        reason = re.sub(r"\{\{.*?\}\}|\[Op:\w+\]", "", error.message).strip()
        raise UsageError(
            f"Cannot decode image file {path} ({int(tf.strings.length(data))} bytes; corrupt or "
            f"truncated?): {reason}. {hint}"
        ) from None
