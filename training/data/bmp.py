"""Palette BMPs (1, 4 or 8 bits per pixel) decoded to their colours, in TensorFlow ops.

TensorFlow's `decode_bmp` reads an 8-bit BMP's pixel values as gray levels: for a colour palette
those are the palette indices, so a folder of such files trained on near-black images without a
word. It refuses 1- and 4-bit files. Here the indices are looked up in the file's palette (BGRA
entries after the info header), rows padded to 4 bytes, stored bottom-up unless the height is negative.
Only uncompressed files take this path: the start check (training/data/folder.py) refuses
run-length-compressed ones by name.
"""

import tensorflow as tf

PALETTE_BITS = (1, 4, 8)
FILE_HEADER_BYTES = 14


def _field(data, offset, length, signed=False):
    """The little-endian integer of `length` bytes at `offset` of the encoded string `data`, as int64."""
    raw = tf.cast(tf.io.decode_raw(tf.strings.substr(data, offset, length), tf.uint8), tf.int64)
    value = tf.reduce_sum(raw * tf.bitwise.left_shift(tf.constant(1, tf.int64), 8 * tf.range(length, dtype=tf.int64)))
    if signed:
        value = tf.where(value >= 2 ** (8 * length - 1), value - 2 ** (8 * length), value)
    return value


def is_palette_bmp(data):
    """True where the encoded file `data` is a BMP with 1, 4 or 8 bits per pixel."""
    is_bmp = tf.strings.substr(data, 0, 2) == b"BM"
    bits = tf.cond(tf.strings.length(data) >= 30, lambda: _field(data, 28, 2), lambda: tf.constant(0, tf.int64))
    return tf.logical_and(is_bmp, tf.reduce_any(tf.equal(bits, PALETTE_BITS)))


def decode_palette_bmp(data):
    """The (height, width, 3) uint8 RGB image of an uncompressed palette BMP's encoded bytes `data`."""
    pixels_at, header_bytes = _field(data, 10, 4), _field(data, 14, 4)
    width, height = _field(data, 18, 4, signed=True), _field(data, 22, 4, signed=True)
    bits, colours = _field(data, 28, 2), _field(data, 46, 4)
    colours = tf.where(colours > 0, colours, tf.bitwise.left_shift(tf.constant(1, tf.int64), bits))
    palette = tf.io.decode_raw(tf.strings.substr(data, FILE_HEADER_BYTES + header_bytes, 4 * colours), tf.uint8)
    palette = tf.reverse(tf.reshape(palette, (-1, 4))[:, :3], axis=[1])  # BGRA -> RGB
    row_bytes = (width * bits + 31) // 32 * 4
    rows = tf.io.decode_raw(tf.strings.substr(data, pixels_at, row_bytes * tf.abs(height)), tf.uint8)
    rows = tf.reshape(rows, (tf.abs(height), row_bytes))
    per_byte = 8 // bits
    shifts = tf.cast(tf.range(per_byte - 1, -1, -1) * bits, tf.uint8)  # the first pixel is in the high bits
    mask = tf.cast(tf.bitwise.left_shift(tf.constant(1, tf.int64), bits) - 1, tf.uint8)
    indices = tf.bitwise.bitwise_and(tf.bitwise.right_shift(rows[..., None], shifts), mask)
    indices = tf.reshape(indices, (tf.abs(height), row_bytes * per_byte))[:, :width]
    indices = tf.cond(height > 0, lambda: tf.reverse(indices, axis=[0]), lambda: indices)
    return tf.gather(palette, tf.cast(indices, tf.int32))
