"""One image, brought to the model: its channels, its size (resize the shorter side, then crop) and the
training augmentation. Every data source's images go through these functions (training/data/pipeline.py).

- Channels: grayscale (and grayscale + alpha), RGB and RGBA images are brought to 1 or 3 channels; an
  alpha channel is dropped (not composited onto a background), RGB becomes gray by
  `tf.image.rgb_to_grayscale` (ITU-R 601 luma), gray becomes RGB by repeating it.
- Size (`--image_size=N` or `HxW`): the image is resized, antialiased, so that it just covers HxW
  (for N: its shorter side becomes N), then cropped to HxW: in the centre, or for training with
  `random_crop` at a random offset. An image already of that size passes unchanged.
- `random_crop` and `random_flip` draw from a stateless RNG seeded by (seed, the element's position in
  the training stream), so a resumed run sees the same crops and flips as an uninterrupted one.
"""

import os
import re

import tensorflow as tf

from training.errors import UsageError

CHANNELS = (1, 3)


def parse_image_size(text):
    """`--image_size` ("N" or "HxW"; or N, or (H, W)) as (height, width), or None when not given."""
    if text is None or text == "":
        return None
    if isinstance(text, (tuple, list)) and len(text) == 2:
        text = "x".join(map(str, text))
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?", str(text))
    height, width = (int(match.group(1)), int(match.group(2) or match.group(1))) if match else (0, 0)
    if height < 1 or width < 1:
        raise UsageError(
            f"--image_size expects N or HxW with positive whole numbers (e.g. 64 or 64x48). Received: {text!r}."
        )
    return height, width


def check_batch_fits_memory(size, channels, batch_size, memory_bytes=None):
    """A UsageError if one batch of `size` = (H, W) float32 images alone would take more than a quarter of
    the machine's memory (`memory_bytes`; default: its physical memory): the run would die out of memory
    with a traceback, after decoding and resizing, instead of saying so."""
    if size is None:
        return
    memory_bytes = memory_bytes or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    needed = batch_size * size[0] * size[1] * (channels or 3) * 4
    if needed > memory_bytes / 4:
        raise UsageError(
            f"--image_size={format_size(size)} with --batch_size={batch_size}: one batch of images alone takes "
            f"{needed / 2**30:,.1f} GiB as float32, more than a quarter of this machine's {memory_bytes / 2**30:.0f} "
            "GiB of memory (the model's activations need several times more). Pass a smaller --image_size "
            "(e.g. 64 or 256) or --batch_size."
        )


def format_size(size):
    height, width = size
    return str(height) if height == width else f"{height}x{width}"


def check_channels(channels):
    """A UsageError unless image files can be brought to `channels` (1 or 3)."""
    if channels not in CHANNELS:
        raise UsageError(
            f"Image files can be brought to 1 (grayscale) or 3 (RGB) channels; the model takes {channels}. "
            "Pass --num_channels=1 or 3."
        )


def to_channels(image, channels):
    """A uint8 (h, w, 1|2|3|4) image as (h, w, `channels`): alpha dropped, then gray <-> RGB."""
    check_channels(channels)
    found = tf.shape(image)[-1]
    color = tf.cond(found >= 3, lambda: image[..., :3], lambda: tf.tile(image[..., :1], [1, 1, 3]))
    if channels == 3:
        return tf.ensure_shape(color, (None, None, 3))
    gray = tf.cond(found >= 3, lambda: tf.image.rgb_to_grayscale(color), lambda: image[..., :1])
    return tf.ensure_shape(gray, (None, None, 1))


def cover(image, size):
    """Resizes a uint8 image (antialiased) to the smallest size that covers `size` = (H, W) at its aspect
    ratio (for a square size: its shorter side becomes H); unchanged if it has that size already."""
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    scale = tf.maximum(size[0] / tf.cast(height, tf.float64), size[1] / tf.cast(width, tf.float64))
    new = (
        tf.maximum(size[0], tf.cast(tf.round(tf.cast(height, tf.float64) * scale), tf.int32)),
        tf.maximum(size[1], tf.cast(tf.round(tf.cast(width, tf.float64) * scale), tf.int32)),
    )

    def resize():
        resized = tf.image.resize(tf.cast(image, tf.float32), tf.stack(new), antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)

    unchanged = tf.logical_and(tf.equal(height, new[0]), tf.equal(width, new[1]))
    return tf.cond(unchanged, lambda: image, resize)


def crop(image, size, offset_seed=None):
    """The (H, W) = `size` window of `image`: centred, or with `offset_seed` (a stateless seed) at a random
    offset."""
    spare = tf.shape(image)[:2] - tf.constant(size, tf.int32)
    if offset_seed is None:
        offset = spare // 2
    else:
        offset = tf.random.stateless_uniform((2,), offset_seed, maxval=tf.int32.max, dtype=tf.int32) % (spare + 1)
    return tf.ensure_shape(
        tf.slice(image, tf.concat([offset, [0]], 0), [size[0], size[1], -1]), (size[0], size[1], image.shape[-1])
    )


def shape_image(image, size, augment=None):
    """`image` resized to cover `size` and cropped to it (no size: unchanged). `augment` = (seed, index,
    random_crop, random_flip) for a training element, or None (validation, encoding: a centre crop)."""
    seeds = None
    if augment is not None:
        seed, index, random_crop, random_flip = augment
        seeds = tf.random.experimental.stateless_split(tf.stack([tf.cast(seed, tf.int64), index]), 2)
    if size is not None:
        image = crop(cover(image, size), size, seeds[0] if seeds is not None and augment[2] else None)
    if seeds is not None and augment[3]:
        image = tf.image.stateless_random_flip_left_right(image, seeds[1])
    return image


def decoded_or_flag(decode, encoded, channels):
    """(uint8 image, True) = `decode(encoded)`, or (an empty (0, 0, `channels`) image, False) where TF's
    decoder fails on it: in the pipeline, so the caller names the file instead of the run stopping
    with a traceback."""
    attempt = tf.data.Dataset.from_tensors(encoded).map(lambda x: (decode(x), True)).ignore_errors()
    failed = tf.data.Dataset.from_tensors((tf.zeros((0, 0, channels or 1), tf.uint8), False))
    return attempt.concatenate(failed).take(1).get_single_element()
