"""The folder reader (`--dataset=folder:PATH`): its image files, found once, checked cheaply, split by file.

- Files: every file under PATH (recursively) whose suffix is an image format's, sorted by path. JPEG,
  PNG (8 and 16 bit; 16-bit values keep their top 8 bits), BMP, GIF (the first frame) and WebP are
  read by `tf.io.decode_image`, palette BMPs by their palette (training/data/bmp.py). Animated WebP,
  run-length-compressed, 16-bit and OS/2 BMPs are refused by the start check, by name.
  EXIF orientation is ignored: pixels are used as stored.
- The check at the start reads each file's first bytes and its last ones, not its pixels: a known
  format's signature, its width and height, and for PNG, JPEG and GIF the end marker and for BMP and
  WebP the declared length (a cut-off file is found here), so a bad file is named before training.
- Split: every VALIDATION_EVERY-th file (sorted) is held out for validation; the rest train.
- The pixels are decoded in the tf.data pipeline, never all held in memory (`decode_file`).
- The data variance is estimated from VARIANCE_SAMPLE training files evenly spaced in sorted order
  (all of them when there are no more).
"""

import os
import struct
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from training.data.bmp import PALETTE_BITS, decode_palette_bmp, is_palette_bmp
from training.data.images import check_channels, decoded_or_flag, to_channels
from training.data.source import VARIANCE_SAMPLE, DataSource, Splits, file_stamp
from training.errors import UsageError

FOLDER_PREFIX = "folder:"

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
VALIDATION_EVERY = 10  # every 10th file (sorted) is held out
PROGRESS_EVERY_SECONDS = 5.0
LARGE_FOLDER = 10_000  # files; the check of a larger folder ends with a line saying so
BMP_UNCOMPRESSED = (0, 3)  # BI_RGB, and BI_BITFIELDS (32-bit files)
BMP_RUN_LENGTH = (1, 2)
WEBP_ANIMATION_FLAG = 0x02  # in the VP8X chunk's flags byte
JPEG_RATIOS = (1, 2, 4, 8)  # the scales libjpeg decodes at: 1/r
BAD_FILE_HINT = "Replace or delete it, or pass --skip_bad_images to leave such files out."


class BadImageFile(ValueError):
    """An image file that cannot be read; the message names the file and why."""


def image_paths(folder, progress=print):
    """The image files under `folder` (recursively, into linked folders too), sorted: the order the
    splits follow. A linked folder already listed (a loop, or a second link to it) is listed once.
    Prints a progress line every few seconds while a large folder is listed."""
    found, started, shown = [], time.monotonic(), time.monotonic()
    if not Path(folder).is_dir():
        return found
    listed = {_identity(folder)}
    for root, names, files in os.walk(folder, followlinks=True):
        names[:] = _first_visits(root, sorted(names), listed)
        found.extend(Path(root) / name for name in files if Path(name).suffix.lower() in IMAGE_SUFFIXES)
        if time.monotonic() - shown > PROGRESS_EVERY_SECONDS:
            shown = time.monotonic()
            progress(f"Listing {folder}: {len(found)} image files so far ({shown - started:.0f} s)")
    return sorted(found)


def _first_visits(root, names, listed):
    """The folders `names` in `root` not listed yet, each added to `listed` (their (device, inode))."""
    kept = []
    for name in names:
        identity = _identity(Path(root) / name)
        if identity not in listed:
            listed.add(identity)
            kept.append(name)
    return kept


def _identity(directory):
    stat = os.stat(directory)
    return stat.st_dev, stat.st_ino


def split_by_file(paths):
    """(training paths, held-out paths): every VALIDATION_EVERY-th file held out, at least one."""
    held_out = [path for i, path in enumerate(paths) if i % VALIDATION_EVERY == VALIDATION_EVERY - 1]
    if not held_out:
        held_out = paths[-1:]
    held = set(held_out)
    return [path for path in paths if path not in held], held_out


def check_files(paths, progress=print):
    """Checks every file's header and end (`image_file_size`), one after the other (threads were 3x
    slower on a local disk: the check is a few microseconds of Python a file).

    Returns ({path: (height, width)} of the good files, {path: BadImageFile} of the bad ones)."""
    sizes, bad = {}, {}
    started = shown = time.monotonic()
    for done, path in enumerate(paths, 1):
        try:
            sizes[path] = image_file_size(path)
        except BadImageFile as error:
            bad[path] = error
        if done % 1000 == 0 and time.monotonic() - shown > PROGRESS_EVERY_SECONDS:
            shown = time.monotonic()
            progress(f"Checked {done} of {len(paths)} image files ({shown - started:.0f} s)")
    if len(paths) >= LARGE_FOLDER:
        progress(f"Checked {len(paths)} image files in {time.monotonic() - started:.1f} s: {len(bad)} bad.")
    return sizes, bad


def image_file_size(path):
    """(height, width) of an image file from its first bytes; raises BadImageFile for an empty file, an
    unknown format, one whose end shows it was cut off, or a name TensorFlow cannot take."""
    if printable(path) != str(path):
        raise BadImageFile(
            f"Image file {printable(path)}: its name is not valid UTF-8 (the bytes shown as \\x..), and "
            f"TensorFlow takes file names as UTF-8 text. Rename it. {BAD_FILE_HINT}"
        )
    try:
        handle = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(handle).st_size
            head, tail = os.pread(handle, 64, 0), os.pread(handle, 1024, max(0, size - 1024))
            if not head:
                raise BadImageFile(f"Image file {path} is empty (0 bytes). {BAD_FILE_HINT}")
            dimensions, problem = _read_header(head, tail, size, handle)
        finally:
            os.close(handle)
    except OSError as error:
        raise BadImageFile(f"Cannot read image file {path}: {error.strerror or error}. {BAD_FILE_HINT}") from None
    if problem is None and (dimensions is None or min(dimensions) < 1):
        problem = "its header gives no width and height"
    if problem:
        raise BadImageFile(f"Cannot decode image file {path} ({size} bytes; corrupt or truncated?): {problem}. {BAD_FILE_HINT}")
    return dimensions


def printable(path):
    """`path` as text that can be printed: bytes of a name that are not UTF-8 shown as \\xNN."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _read_header(head, tail, size, handle):
    """((height, width) or None, problem or None) for the file's first bytes `head` and last ones `tail`."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        if head[12:16] != b"IHDR":
            return None, "a PNG signature without the IHDR header chunk"
        width, height = struct.unpack(">II", head[16:24])
        ended = tail.endswith(b"IEND\xaeB`\x82")
        return (height, width), None if ended else "the PNG ends before its IEND chunk (cut off?)"
    if head.startswith(b"\xff\xd8"):
        ended = b"\xff\xd9" in tail  # the end-of-image marker (data may follow it)
        return _jpeg_size(handle), None if ended else "the JPEG has no end-of-image marker (cut off?)"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        width, height = struct.unpack("<HH", head[6:10])
        ended = tail.rstrip(b"\0").endswith(b";")
        return (height, width), None if ended else "the GIF has no trailer byte (cut off?)"
    if head.startswith(b"BM") and len(head) >= 34:
        return _bmp_size(head, size)
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        declared = struct.unpack("<I", head[4:8])[0] + 8
        if head[12:16] == b"VP8X" and head[20] & WEBP_ANIMATION_FLAG:
            return None, ("an animated WebP: TensorFlow's WebP decoder crashes the whole process on animations. "
                          "Save one frame as a still image (e.g. PNG)")
        short = size < declared
        return _webp_size(head), f"the WebP declares {declared} bytes (cut off?)" if short else None
    return None, "not a JPEG, PNG, BMP, GIF or WebP file (unknown signature)"


def _bmp_size(head, size):
    """((height, width), problem or None) of a BMP: the ones TensorFlow or `bmp.decode_palette_bmp` read
    (uncompressed 1, 4, 8, 24 or 32 bits per pixel with a Windows info header) or the reason not."""
    declared, header_bytes = struct.unpack("<I", head[2:6])[0], struct.unpack("<I", head[14:18])[0]
    width, height = struct.unpack("<ii", head[18:26])
    bits, compression = struct.unpack("<HI", head[28:34])
    if header_bytes < 40:
        return None, f"an OS/2 BMP ({header_bytes}-byte header), which no decoder here reads. Save it as PNG"
    if bits not in (*PALETTE_BITS, 24, 32) or compression not in BMP_UNCOMPRESSED:
        kind = "run-length-compressed" if compression in BMP_RUN_LENGTH else f"{bits}-bit (compression {compression})"
        return None, f"a {kind} BMP, which no decoder here reads. Save it as an uncompressed 24-bit BMP or as PNG"
    short = size < declared
    return (abs(height), width), f"the BMP declares {declared} bytes (cut off?)" if short else None


def _jpeg_size(handle):
    """(height, width) from a JPEG's start-of-frame segment, found by following the segment lengths."""
    offset = 2
    while True:
        segment = os.pread(handle, 16, offset)
        fill = len(segment) - len(segment.lstrip(b"\xff"))  # a marker is 0xFF bytes, then its kind
        if fill < 1 or len(segment) < fill + 1:
            return None
        kind, offset = segment[fill], offset + fill + 1
        if kind in (0xD8, 0x01) or 0xD0 <= kind <= 0xD7:
            continue
        header = os.pread(handle, 7, offset)
        if len(header) < 7:
            return None
        if 0xC0 <= kind <= 0xCF and kind not in (0xC4, 0xC8, 0xCC):
            return struct.unpack(">HH", header[3:7])
        offset += struct.unpack(">H", header[:2])[0]


def _webp_size(head):
    chunk = head[12:16]
    if chunk == b"VP8X":
        return int.from_bytes(head[27:30], "little") + 1, int.from_bytes(head[24:27], "little") + 1
    if chunk == b"VP8L":
        bits = int.from_bytes(head[21:25], "little")
        return ((bits >> 14) & 0x3FFF) + 1, (bits & 0x3FFF) + 1
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", head[26:30])
        return height & 0x3FFF, width & 0x3FFF
    return None


def decode_file(path, channels, covering=None):
    """(uint8 image (h, w, `channels`), decoded) for one file path, in the pipeline (see `decoded_or_flag`);
    `covering`: see `decode_image`."""
    decode = lambda name: to_channels(decode_image(tf.io.read_file(name), covering), channels)  # noqa: E731
    return decoded_or_flag(decode, path, channels)


def decode_image(data, covering=None):
    """The uint8 pixels of an encoded image: palette BMPs by their palette, the rest by TensorFlow.

    With `covering` = (H, W), a JPEG is decoded at the smallest of libjpeg's scales (1, 1/2, 1/4, 1/8)
    that still covers H x W (`decode_jpeg_covering`)."""
    if covering is None:
        decode = lambda: tf.io.decode_image(data, expand_animations=False)  # noqa: E731
    else:
        decode = lambda: tf.cond(  # noqa: E731
            tf.io.is_jpeg(data),
            lambda: decode_jpeg_covering(data, covering),
            lambda: tf.io.decode_image(data, expand_animations=False),
        )
    return tf.cond(is_palette_bmp(data), lambda: decode_palette_bmp(data), decode)


def decode_jpeg_covering(data, size):
    """A JPEG's pixels at the smallest of libjpeg's scales 1/r (r = 1, 2, 4 or 8) at which both sides are
    still at least `size` = (H, W): a 2048x1536 photo for a 64x64 model is decoded at 256x192, 64 times
    fewer pixels to decode and resize (the scaled inverse DCT keeps the low frequencies the resize keeps)."""
    height, width = tf.unstack(tf.cast(tf.image.extract_jpeg_shape(data)[:2], tf.int32))
    covers = [
        tf.logical_and(-(-height // ratio) >= size[0], -(-width // ratio) >= size[1]) for ratio in JPEG_RATIOS[1:]
    ]
    index = tf.reduce_sum(tf.cast(tf.stack(covers), tf.int32))  # scales cover in order: 1/2 before 1/4
    branches = [lambda ratio=ratio: tf.io.decode_jpeg(data, ratio=ratio) for ratio in JPEG_RATIOS]
    return tf.switch_case(index, branches)


class FolderSource(DataSource):
    """`folder:PATH`: the image files under PATH, checked, split by file (no class labels)."""

    @classmethod
    def accepts(cls, name):
        return name.startswith(FOLDER_PREFIX)

    @property
    def root(self):
        return Path(self.name[len(FOLDER_PREFIX):])

    def held_out_split(self):
        return f"every {VALIDATION_EVERY}th file"

    def fingerprint(self):
        """The folder's resolved path, the split rule and each image file's relative name, size and
        modification time."""
        files = [f"{printable(path.relative_to(self.root))}\0{file_stamp(path)}" for path in image_paths(self.root)]
        return "\n".join([f"folder\0{self.root.resolve()}\0validation_every={VALIDATION_EVERY}", *files])

    def open(self, with_labels, skip_bad_images, channels, covering=None):
        root, channels = self.root, channels or 3
        check_channels(channels)  # before the pipeline, where the error would come as a traceback
        if not root.is_dir():
            what = "a file, not a folder" if root.exists() else "no such folder"
            raise UsageError(
                f"--dataset=folder:{root}: {what}. Pass --dataset=folder:PATH with PATH the folder that holds "
                "the images (sub-folders are searched too)."
            )
        if with_labels:
            raise UsageError(
                f"Data set {self.name!r} is a folder of images without class labels, so it cannot train a "
                "class-conditional prior. Drop --class_conditional or use a labelled TFDS data set."
            )
        paths = image_paths(root)
        if len(paths) < 2:
            raise UsageError(
                f"--dataset=folder:{root} needs a folder with at least two images "
                f"({', '.join(IMAGE_SUFFIXES)}); found {len(paths)} there."
            )
        sizes, bad = check_files(paths)
        if bad and not skip_bad_images:
            raise UsageError(str(bad[min(bad)]))
        paths = [path for path in paths if path in sizes]
        if len(paths) < 2:
            raise UsageError(
                f"--dataset=folder:{root} needs at least two readable images; {len(bad)} of "
                f"{len(bad) + len(paths)} files could not be read."
            )
        train, validation = split_by_file(paths)
        evenly = np.unique(np.linspace(0, len(train) - 1, min(len(train), VARIANCE_SAMPLE)).round().astype(int))
        names = lambda chosen: tf.data.Dataset.from_tensor_slices([str(path) for path in chosen])  # noqa: E731
        distinct = {}
        for path in paths:
            distinct.setdefault(sizes[path], path)
        one_size = next(iter(distinct)) if len(distinct) == 1 else (None, None)
        return Splits(
            train=names(train),
            validation=names(validation),
            load=lambda path: (*decode_file(path, channels, covering), path),
            num_train=len(train),
            num_validation=len(validation),
            variance_items=names([train[i] for i in evenly]),
            image_shape=(*one_size, channels),
            skipped=sorted(bad),
            sizes=distinct,
            files=tuple([path.relative_to(root).as_posix() for path in part] for part in (train, validation)),
        )
