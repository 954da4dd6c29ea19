"""The bundled sample (`--dataset=cifar10_sample`): 1,200 + 300 real CIFAR-10 images in one file."""

from pathlib import Path

import numpy as np
import tensorflow as tf

from training.data.source import DataSource, Splits, file_stamp

SAMPLE_DATASET = "cifar10_sample"
SAMPLE_PATH = Path(__file__).with_name("cifar10_sample.npz")
SAMPLE_NUM_CLASSES = 10  # CIFAR-10's


class SampleSource(DataSource):
    """The bundled sample: its train and test arrays, used whole (the data variance from all 1,200)."""

    @classmethod
    def accepts(cls, name):
        return name == SAMPLE_DATASET

    def image_shape(self):
        return (32, 32, 3)

    def held_out_split(self):
        return "test"

    def fingerprint(self):
        return f"sample\0{file_stamp(SAMPLE_PATH)}"

    def open(self, with_labels, skip_bad_images, channels, covering=None):
        with np.load(SAMPLE_PATH) as arrays:
            arrays = dict(arrays)
        items = lambda split: (  # noqa: E731
            (arrays[f"{split}_images"], arrays[f"{split}_labels"]) if with_labels else arrays[f"{split}_images"]
        )
        return Splits(
            train=tf.data.Dataset.from_tensor_slices(items("train")),
            validation=tf.data.Dataset.from_tensor_slices(items("test")),
            load=lambda image: (image, tf.constant(True), tf.constant(SAMPLE_DATASET)),
            num_train=len(arrays["train_images"]),
            num_validation=len(arrays["test_images"]),
            variance_items=tf.data.Dataset.from_tensor_slices(arrays["train_images"]),
            image_shape=self.image_shape(),
            num_classes=SAMPLE_NUM_CLASSES if with_labels else None,
        )
