"""The data-source contract: what a reader gives the one image pipeline (training/data/pipeline.py).

A data source is a `DataSource` subclass in its own module of training/data/ and one line in
`DATA_SOURCES` (training/data/registry.py). It owns everything that depends on where the images
come from: which `--dataset` names it reads (`accepts`), the image shape known before reading
(`image_shape`), its training and held-out splits as items with a function decoding one item
(`open`), the name of the held-out split (`held_out_split`) and a fingerprint that changes when
its splits may change (`fingerprint`, which keys the code cache). The pipeline shuffles the items,
decodes them after the shuffle, checks, resizes, crops and batches; a reader never holds decoded
images.
"""

import dataclasses
from typing import Callable

import tensorflow as tf

VARIANCE_SAMPLE = 1_000  # training images the data variance (the loss normaliser) is estimated from


@dataclasses.dataclass
class Splits:
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
    sizes: dict = None  # {(h, w): an example file} of a source whose images differ in size
    item_bytes: int = 0  # bytes an item takes in the shuffle buffer, on average (0: a file name's few)
    # (training names, validation names) of a source whose split is drawn from a list of files: a
    # resumed run holds to it (training/data/split_record.py)
    files: tuple = None


class DataSource:
    """A reader of one kind of data set, named by `--dataset` (and located by `--data_dir`)."""

    def __init__(self, name, data_dir=None):
        self.name = name
        self.data_dir = data_dir

    @classmethod
    def accepts(cls, name):
        """Whether `name` (the --dataset value) names a data set of this kind."""
        raise NotImplementedError

    def image_shape(self):
        """(height, width, channels) of the images as read, if known before reading any; else None."""
        return None

    def open(self, with_labels, skip_bad_images, channels, covering=None):
        """The `Splits` (with (item, label) pairs when `with_labels`); a UsageError if it cannot.
        `covering` = (H, W), the size the pipeline brings every image to (or None): `load` may decode
        an image at a reduced scale at which it still covers that size."""
        raise NotImplementedError

    def held_out_split(self):
        """The name of the split `open` gives as held out (validation)."""
        raise NotImplementedError

    def fingerprint(self):
        """A text that changes whenever the splits `open` gives may change, from metadata only."""
        raise NotImplementedError


def file_stamp(path):
    stat = path.stat()
    return f"{stat.st_size}\0{stat.st_mtime_ns}"
