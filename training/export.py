"""Export a trained autoencoder, and optionally its prior, for TF Serving.

    python -m training.export --autoencoder=runs/cifar10/model.keras --export_base=exports/vqvae
    python -m training.export --autoencoder=runs/cifar10/model.keras \
        --prior=runs/cifar10_prior/prior.keras --export_base=exports/vqvae

Loads the `.keras` files written by `training.fit` and writes a SavedModel to
`<export_base>/<version>` (the next free version by default), which TF Serving
picks up when it serves `<export_base>`. Signatures: serving_default (=
reconstruct), reconstruct_uint8, encode and decode, and with --prior generate
(new images from num, seed, temperature and, for class-conditional priors,
labels); see `vq_keras.export`. Prints the written folder. `--model` is the
old name of `--autoencoder`.
"""

import errno
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if __name__ == "__main__":  # the tool as a user runs it: before TensorFlow is imported
    from training.console import quiet_native_logs

    quiet_native_logs()

import sys  # noqa: E402

import tensorflow as tf  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from training.data.images import parse_image_size  # noqa: E402
from training.errors import UsageError  # noqa: E402
from training.flags import define_pairing_flag  # noqa: E402
from training.model_files import load_autoencoder, load_prior_for  # noqa: E402
from vq_keras.atomic import why_not_writable  # noqa: E402
from vq_keras.export import export_saved_model  # noqa: E402

FLAGS = flags.FLAGS


def define_flags():
    """Defined only when run as a program, so that tests can import this module beside training.fit."""
    flags.DEFINE_string("autoencoder", None, "The autoencoder's .keras file (as written by training.fit).")
    flags.DEFINE_alias("model", "autoencoder")
    flags.DEFINE_string(
        "prior", None, "Optional: the prior.keras of stage 2 (--stage=prior), to add the generate signature."
    )
    flags.DEFINE_string(
        "export_base", None, "The folder TF Serving serves; the SavedModel goes to <export_base>/<version>."
    )
    flags.DEFINE_integer("version", None, "Version folder name (default: one more than the highest existing, or 1).")
    flags.DEFINE_boolean("overwrite", False, "Replace an existing version folder.")
    flags.DEFINE_string(
        "image_size", None,
        "Fix the signatures' image size: N (square) or HxW. Default: any multiple of the model's downsampling.",
    )
    define_pairing_flag()


def export(model_path, export_base, version=None, overwrite=False, image_size=None, prior_path=None,
           any_autoencoder=False):
    """Loads the autoencoder at `model_path` (and the prior at `prior_path`) and
    exports it; returns the version folder."""
    if not model_path:
        raise UsageError(
            "Pass --autoencoder=PATH.keras, the autoencoder written by training.fit (e.g. runs/latest/model.keras)."
        )
    if not export_base:
        raise UsageError("Pass --export_base=DIR, the folder TF Serving serves (e.g. exports/vqvae).")
    if version is not None and version < 1:
        raise UsageError(f"--version must be a positive integer. Received: --version={version}")
    if version is not None and not overwrite and os.path.isdir(os.path.join(export_base, str(version))):
        raise UsageError(
            f"Version {version} already exists at {os.path.join(export_base, str(version))}. Pass --overwrite "
            "to replace it, or leave out --version to write the next free version."
        )
    problem = why_not_writable(export_base, folder=True)
    if problem:
        raise UsageError(
            f"--export_base={export_base}: {problem}. Pass a folder you can write to (TF Serving serves it), "
            "e.g. --export_base=exports/vqvae."
        )
    if version is not None and os.path.isfile(os.path.join(export_base, str(version))):
        raise UsageError(
            f"--version={version}: {os.path.join(export_base, str(version))} is a file, not a version folder. "
            "Remove it, or pass another --version (or none for the next free version)."
        )
    size = parse_image_size(image_size)
    model = load_autoencoder(model_path, "--autoencoder")
    prior = None if prior_path is None else load_prior_for(model, prior_path, any_autoencoder)
    factor = model.downsampling
    if size is not None and any(s % factor for s in size):
        raise UsageError(
            f"--image_size={image_size}: {type(model).__name__} downsamples images by {factor}, so height and "
            f"width must be positive multiples of {factor} (e.g. {factor * 4} or {factor * 4}x{factor * 8}). "
            f"Leave out --image_size to accept any multiple of {factor}."
        )
    try:
        return export_saved_model(
            model, export_base, version=version, overwrite=overwrite, image_size=size, prior=prior
        )
    except (TypeError, ValueError) as error:
        raise UsageError(str(error)) from None
    except OSError as error:
        if error.errno == errno.ENOSPC:  # export_saved_model's own message
            raise UsageError(error.strerror) from None
        raise


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    # TF's SavedModel writer logs at INFO a line per signature naming every captured
    # variable (thousands of characters for generate's loop); warnings stay visible.
    logging.set_verbosity(logging.WARNING)
    tf.get_logger().setLevel("WARNING")
    try:
        path = export(
            FLAGS.autoencoder, FLAGS.export_base, FLAGS.version, FLAGS.overwrite, FLAGS.image_size, FLAGS.prior,
            FLAGS.any_autoencoder,
        )
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(f"SavedModel written: {path}")
    signatures = "serving_default (= reconstruct), reconstruct_uint8, encode, decode"
    if FLAGS.prior:
        signatures += ", generate"
    print(
        f"Signatures: {signatures}. Serve the folder with TF Serving: "
        f"--model_base_path={os.path.abspath(FLAGS.export_base)}"
    )


if __name__ == "__main__":
    define_flags()
    app.run(main)
