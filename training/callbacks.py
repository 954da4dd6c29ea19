"""TensorBoard monitoring beyond scalars: reconstructions, code usage, hyperparameters."""

import math
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tensorboard.plugins.histogram import metadata as histogram_metadata
from tensorboard.plugins.hparams import api as hparams_api

from training.data.folder import printable


def image_grid(rows):
    """(rows, N, H, W, C) -> one (1, rows*H, N*W, C) image: each row side by side."""
    rows = np.asarray(rows)
    num_rows, count, height, width, channels = rows.shape
    grid = rows.transpose(0, 2, 1, 3, 4).reshape(num_rows * height, count * width, channels)
    return grid[None]


def tile(images, columns=None, scale=1):
    """(N, H, W, C) images -> one (1, rows*H, columns*W, C) grid, row by row, white
    where the last row is short. `columns` defaults to ceil(sqrt(N)). With `scale`, each
    pixel is repeated scale x scale times (nearest neighbour: the pixels stay visible)."""
    images = np.asarray(images, np.float32)
    images = np.repeat(np.repeat(images, scale, axis=1), scale, axis=2)
    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    blank = np.ones((rows * columns - len(images), *images.shape[1:]), np.float32)
    return image_grid(np.concatenate([images, blank]).reshape(rows, columns, *images.shape[1:]))


def code_histogram(counts, max_buckets=128):
    """TensorBoard's histogram tensor ((buckets, 3) float64 rows [left, right, count]) of code indices
    from their `counts` (one per code): min(codes, max_buckets) equal buckets over [0, codes), each
    counting the codes in [left, right)."""
    counts = np.asarray(counts, np.float64)
    buckets = min(counts.size, max_buckets)
    edges = np.linspace(0.0, counts.size, buckets + 1)
    bucket_of_code = np.arange(counts.size) * buckets // counts.size
    return np.stack([edges[:-1], edges[1:], np.bincount(bucket_of_code, counts, minlength=buckets)], axis=1)


def write_code_histogram(name, counts, step):
    """Writes `code_histogram(counts)` as the histogram `name` to the default summary writer."""
    # tf.summary.histogram takes the values, not their counts, and buckets them
    # through a one-hot matrix of (values x buckets) float64: for one epoch of
    # 5,400 64x64 images (1.4 million codes) 1.4 GB of memory at every epoch end,
    # growing with the epoch. The counts are already known; no value is expanded.
    tf.summary.write(
        name, tf.constant(code_histogram(counts)), step=step,
        metadata=histogram_metadata.create_summary_metadata(display_name=None, description=None),
    )


class _SummaryWriter(keras.callbacks.Callback):
    """Owns one summary writer per run under `logdir` and writes the hparams once."""

    def __init__(self, logdir, hparams=None):
        super().__init__()
        self.logdir = Path(logdir)
        self.hparams = {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in (hparams or {}).items()}
        self._writers = {}

    def _writer(self, run):
        if run not in self._writers:
            self._writers[run] = tf.summary.create_file_writer(str(self.logdir / run))
        return self._writers[run]

    def on_train_begin(self, logs=None):
        if self.hparams:
            with self._writer(".").as_default():
                hparams_api.hparams(self.hparams)

    def _flush(self):
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}


class VQMonitor(_SummaryWriter):
    """Writes, for a `VQModel`, what scalars cannot show.

    Every epoch: a fixed batch of validation images above their reconstructions
    as one image (run "validation", tag "reconstructions"); per level a
    histogram of code indices over all of the epoch's training batches (run
    "train", tag "<level>_code_usage" or "code_usage") and, when the epoch is
    validated, over the whole validation run (run "validation"). The counts are
    the model's `code_usage` metrics (also logged as scalars,
    `<level>_epoch_codebook_usage` and `<level>_epoch_dead_codes`); the training
    counts are read when validation begins, before evaluate resets the metrics.
    Once: the hyperparameters, through the HParams plugin.

    Args:
        logdir: the log directory (the same one as `keras.callbacks.TensorBoard`).
        validation_images: float32 images in [0, 1] to reconstruct every epoch.
        hparams: dict of hyperparameters (str, bool, int or float values).
    """

    def __init__(self, logdir, validation_images, hparams=None):
        super().__init__(logdir, hparams)
        self.validation_images = np.asarray(validation_images, np.float32)
        self._training_counts = None

    def on_epoch_begin(self, epoch, logs=None):
        self._training_counts = None

    def on_test_begin(self, logs=None):
        if self._training_counts is None:  # the first evaluate of the epoch: fit's validation
            self._training_counts = self._counts()

    def _counts(self):
        return {usage.name: np.asarray(usage.counts()).astype(np.int64) for usage in self.model.code_usage}

    def on_epoch_end(self, epoch, logs=None):
        current = self._counts()
        validated = self._training_counts is not None
        runs = {"train": self._training_counts, "validation": current} if validated else {"train": current}
        for run, counts in runs.items():
            with self._writer(run).as_default():
                for name, level_counts in counts.items():
                    write_code_histogram(name, level_counts, epoch)
        self._training_counts = None
        reconstructions = np.asarray(self.model.reconstruct(self.validation_images))
        with self._writer("validation").as_default(step=epoch):
            tf.summary.image("reconstructions", image_grid([self.validation_images, reconstructions]), max_outputs=1)
        self._flush()


class SampleMonitor(_SummaryWriter):
    """Writes, while a prior trains, new images drawn from it (run "samples",
    tag "samples", one grid per epoch, the same seed every epoch) and once the
    hyperparameters.

    Args:
        logdir: the log directory (the same one as `keras.callbacks.TensorBoard`).
        sample: a function returning float32 images in [0, 1] (N, H, W, C), or
            None to write only the hyperparameters (e.g. while a VQ-VAE-2's top
            prior trains and the bottom one cannot draw yet).
        hparams: dict of hyperparameters (str, bool, int or float values).
    """

    def __init__(self, logdir, sample, hparams=None):
        super().__init__(logdir, hparams)
        self.sample = sample

    def on_epoch_end(self, epoch, logs=None):
        if self.sample is None:
            return
        with self._writer("samples").as_default(step=epoch):
            tf.summary.image("samples", tile(self.sample()), max_outputs=1)
        self._flush()


class SkippedImagesLog(keras.callbacks.Callback):
    """Names the image files a run leaves out (`--skip_bad_images`) in TensorBoard text (run "train",
    tag "skipped_images"): those found at the start when training begins, and at each epoch end the
    ones the pipeline could not decode since (`skipped_files` grows while the data is read).

    Args:
        logdir: the log directory.
        skipped_files: the list of skipped paths (ImageData.skipped_files).
    """

    def __init__(self, logdir, skipped_files):
        super().__init__()
        self.logdir = Path(logdir)
        self.skipped_files = skipped_files
        self._written = 0

    def _write(self, step):
        new = self.skipped_files[self._written:]
        if not new:
            return
        self._written += len(new)
        writer = tf.summary.create_file_writer(str(self.logdir / "train"))
        with writer.as_default(step=step):
            lines = "\n".join(f"- {printable(path)}" for path in new)
            tf.summary.text("skipped_images", f"{len(new)} image files left out (--skip_bad_images):\n\n{lines}")
        writer.close()

    def on_train_begin(self, logs=None):
        self._write(0)

    def on_epoch_end(self, epoch, logs=None):
        self._write(epoch + 1)
