"""tf.data pipelines for image data sets: TFDS, a folder of images, the bundled sample."""

from training.data.pipeline import (
    SAMPLE_DATASET, ImageData, held_out_split, image_spec_or_none, load_image_data, naming_bad_images, pixel_variance,
    read_splits,
)

__all__ = [
    "SAMPLE_DATASET", "ImageData", "held_out_split", "image_spec_or_none", "load_image_data", "naming_bad_images",
    "pixel_variance", "read_splits",
]
