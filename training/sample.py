"""New images from a trained autoencoder and its prior, as one PNG grid.

    python -m training.sample --autoencoder=runs/ae/model.keras \
        --prior=runs/prior/prior.keras --num=64 --seed=0 --out=grid.png

Draws the codes of every level with the prior (one compiled sampling loop per
level that computes only the new position's features at each step, a
stateless seeded RNG: the same seed gives the same grid), decodes them and
writes the images row by row; prints the images drawn per second. With a class-conditional prior, each
row holds one class of --labels (default: every class).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if __name__ == "__main__":  # the tool as a user runs it: before TensorFlow is imported
    from training.console import quiet_native_logs

    quiet_native_logs()

import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from training import model_files  # noqa: E402
from training.callbacks import tile  # noqa: E402
from training.errors import UsageError  # noqa: E402
from training.flags import check_sampling, define_pairing_flag, define_sampling_flags, sampling_arguments  # noqa: E402
from vq_keras.atomic import atomic_file, why_not_writable  # noqa: E402
from vq_keras.zoo import generate  # noqa: E402

MAX_NUM = 1024  # one batch, one grid: more images need more runs (other --seed values)
MAX_SCALE = 16


def define_flags():
    flags.DEFINE_string("autoencoder", None, "The model.keras of stage 1 (a VQVAE or VQVAE2).")
    flags.DEFINE_string("prior", None, "The prior.keras of stage 2 (--stage=prior).")
    flags.DEFINE_integer("num", 64, f"Number of images, at most {MAX_NUM} (one batch, one grid).")
    define_sampling_flags("Sampling seed in [0, 2**31); the same seed gives the same images.")
    define_pairing_flag()
    flags.DEFINE_list("labels", None, "Class-conditional priors: the classes, one row each (default: all).")
    flags.DEFINE_integer("columns", None, "Images per row, 1 to --num (default: a square grid, or --num / classes).")
    flags.DEFINE_integer("scale", 1, "Screen pixels per image pixel across and down (nearest neighbour), 1 to 16.")
    flags.DEFINE_string("out", "samples.png", "The PNG file to write (written atomically; checked before sampling).")


def sample_grid(
    autoencoder_path, prior_path, num, seed, out, labels=None, columns=None, scale=1, any_autoencoder=False, **sampling
):
    """Writes `num` new images as a PNG grid at `out`; returns its path and the
    seconds sampling and decoding took (tracing included). `sampling`: `generate`'s
    sampling arguments (the SAMPLING_FLAGS: temperature, top_k, ...)."""
    check_flags(num, seed, columns, out, scale, **sampling)
    autoencoder = model_files.load_autoencoder(autoencoder_path, "--autoencoder")
    prior = model_files.load_prior_for(autoencoder, prior_path, any_autoencoder)
    row_labels, columns = _rows(prior.num_classes, labels, num, columns)
    started = time.perf_counter()
    try:
        images = generate(
            autoencoder, prior, num, seed=seed, labels=None if row_labels is None else np.repeat(row_labels, columns),
            **sampling,
        )
    except (ValueError, TypeError) as error:
        raise UsageError(str(error)) from None
    images = np.asarray(images)
    seconds = time.perf_counter() - started
    grid = tile(images, columns, scale)[0]
    png = tf.io.encode_png(np.round(grid * 255).astype(np.uint8))
    with atomic_file(out) as temporary:
        tf.io.write_file(str(temporary), png)
    return Path(out), seconds


def check_flags(num, seed, columns, out, scale=1, **sampling):
    """UsageErrors for the flags that need no model, before minutes of sampling."""
    if not 1 <= scale <= MAX_SCALE:
        raise UsageError(
            f"--scale must be an integer in [1, {MAX_SCALE}] (screen pixels per image pixel). Received: --scale={scale}"
        )
    if not 1 <= num <= MAX_NUM:
        raise UsageError(
            f"--num must be in [1, {MAX_NUM}]: the images are sampled as one batch and written as one grid. "
            f"Received: --num={num}. For more images, run again with other --seed values."
        )
    check_sampling(seed, **sampling)
    if columns is not None and not 1 <= columns <= num:
        raise UsageError(
            f"--columns must be in [1, --num={num}] (images per row), or left out for a square grid. "
            f"Received: --columns={columns}"
        )
    problem = why_not_writable(out) if out else None
    if problem:
        raise UsageError(f"--out={out}: {problem}. Pass a .png path in a folder you can write to.")
    if not out or Path(out).suffix.lower() != ".png":
        raise UsageError(f"--out names the PNG file to write, ending in .png (e.g. --out=grid.png). Received: --out={out}")


def _rows(num_classes, labels, num, columns):
    """(labels of the rows or None, images per row)."""
    if num_classes is None:
        if labels:
            raise UsageError(f"--labels={','.join(labels)} needs a class-conditional prior; this prior has no classes.")
        return None, columns
    try:
        rows = np.array([int(label) for label in labels], np.int32) if labels else np.arange(num_classes, dtype=np.int32)
    except ValueError:
        raise UsageError(f"--labels expects integer classes. Received: --labels={','.join(labels)}") from None
    if rows.min() < 0 or rows.max() >= num_classes:
        raise UsageError(f"--labels must lie in [0, {num_classes}) for this prior. Received: {rows.tolist()}")
    if num % len(rows):
        raise UsageError(
            f"A class-conditional grid has one row per class: --num={num} is not a multiple of the "
            f"{len(rows)} classes. Use e.g. --num={len(rows) * 8}, or pick classes with --labels."
        )
    if columns is not None and columns != num // len(rows):
        raise UsageError(
            f"A class-conditional grid has one row per class: --num={num} over {len(rows)} classes makes "
            f"{num // len(rows)} columns, not --columns={columns}. Leave out --columns."
        )
    return rows, num // len(rows)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    FLAGS = flags.FLAGS
    try:
        path, seconds = sample_grid(
            FLAGS.autoencoder, FLAGS.prior, FLAGS.num, FLAGS.seed, FLAGS.out, FLAGS.labels, FLAGS.columns,
            FLAGS.scale, FLAGS.any_autoencoder, **sampling_arguments(FLAGS),
        )
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(
        f"Wrote {FLAGS.num} images: {path} ({FLAGS.num / seconds:.1f} images/s: {seconds:.2f} s to sample and "
        "decode, compilation included)"
    )


if __name__ == "__main__":
    define_flags()
    app.run(main)
