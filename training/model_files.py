"""The one loader of `.keras` files for the command-line tools.

Keras reports a `.keras` file it cannot open as "File not found", whether the
file is missing, empty, cut short or not a zip archive at all, and a damaged
member as whatever its reader raises. `load_model_file` tells these apart
before Keras reads the file and names the flag, the path and the fix: no such
file, a folder, not a `.keras` name, unreadable, empty, a zip archive cut short
(a copy or a save that did not finish), not a zip archive, a zip archive
without a Keras config, a damaged member (Keras checks each member's CRC-32),
a model Keras cannot rebuild, and a model of another kind than the tool needs.
"""

import zipfile
from pathlib import Path

import keras

from training.errors import UsageError
from training.run_dir import is_unfinished_run
from vq_keras.models import MismatchedAutoencoder, Prior, check_trained_on
from vq_keras.zoo import VQVAE, VQVAE2, HierarchicalPrior, ImageClassifier, PixelCNNPrior
from vq_keras.zoo._trained import OtherKindOfEntry, looks_like_path, resolve, trained_entries

AUTOENCODER_FILE = (
    "the autoencoder's .keras file written by training.fit (<logdir>/model.keras, e.g. runs/latest/model.keras)"
)
PRIOR_FILE = "the prior's .keras file written by training.fit --stage=prior (<logdir>/prior.keras)"

_ZIP_START = b"PK\x03\x04"  # a zip archive's first local file header
_HDF5_START = b"\x89HDF\r\n\x1a\n"


def load_autoencoder(path, flag):
    """The VQVAE or VQVAE2 in the `.keras` file `path` (given as `flag`; or a shipped zoo entry's
    name, or a folder holding model.keras), without its training state."""
    return load_model_file(located(path, VQVAE.PRESET_FILE, flag), flag, (VQVAE, VQVAE2), AUTOENCODER_FILE)


def load_prior(path, flag):
    """The prior (a `vq_keras.models.Prior` such as PixelCNNPrior, or a HierarchicalPrior)
    in the `.keras` file `path` (given as `flag`; or a shipped zoo entry's name, or a folder
    holding prior.keras)."""
    return load_model_file(located(path, PixelCNNPrior.PRESET_FILE, flag), flag, (Prior, HierarchicalPrior), PRIOR_FILE)


def load_prior_for(autoencoder, path, any_autoencoder=False, flag="--prior"):
    """The prior in `path` (as `load_prior`), checked to be trained on `autoencoder`'s codes
    (`check_trained_on`): a UsageError if not, or with `any_autoencoder` a warning."""
    prior = load_prior(path, flag)
    try:
        check_trained_on(autoencoder, prior)
    except MismatchedAutoencoder as error:
        if not any_autoencoder:
            raise UsageError(f"{flag}={path}: {error} (--any_autoencoder uses them together anyway.)") from None
        print(f"Warning: {flag}={path}: {error} Going on as asked (--any_autoencoder).")
    return prior


def load_classifier(path, flag):
    """The ImageClassifier in the `.keras` file `path` (given as `flag`; or a shipped zoo entry's
    name, or a folder holding classifier.keras)."""
    return load_model_file(
        located(path, ImageClassifier.PRESET_FILE, flag), flag, (ImageClassifier,),
        "an ImageClassifier's classifier.keras (written by training.fit_classifier), e.g. classifier_cifar10",
    )


def check_images_fit(model, image_shape, dataset, built, channels_fix):
    """A UsageError unless `model` takes the data set's images (when their shape is known before
    reading any): for other channels it names `built` (what fixed them: "preset 'cifar10'",
    "--autoencoder") and `channels_fix`; for sizes it names the --image_size that fits."""
    if image_shape is None:
        return
    try:
        model.check_image_shape(image_shape)
    except ValueError as error:
        if image_shape[-1] != model.num_channels:
            raise UsageError(
                f"Data set {dataset!r} has {image_shape[-1]}-channel images of shape {image_shape}, "
                f"but {built} is built for {model.num_channels}-channel images. {channels_fix}"
            ) from None
        size = fitting_size(model, image_shape[0] or 64, image_shape[1] or 64)
        raise UsageError(
            f"Data set {dataset!r}: {error} Pass --image_size={size} to resize the images (shorter side "
            f"{size}, centre-cropped to {size}x{size}), or --image_size=HxW with multiples of {model.downsampling}."
        ) from None


def fitting_size(model, height, width):
    """The largest square size, at most the images' shorter side, that `model` takes."""
    factor = model.downsampling
    return max(factor, min(height, width) // factor * factor)


def located(path, file_name, flag="--model"):
    """The file `file_name` of a shipped zoo entry named `path` or of a folder `path` holding it;
    any other `path` as it is (check_model_file explains what is wrong with it)."""
    if not path:
        return path
    try:
        return str(resolve(path, file_name))
    except OtherKindOfEntry as error:  # say which kind it is, rather than "no such file"
        raise UsageError(f"{flag}={path} names no {file_name}: {error}") from None
    except ValueError:
        return path


def load_model_file(path, flag, kinds, what):
    """The model in the `.keras` file `path`, one of the classes `kinds`, loaded without its
    training state (compile=False). Raises UsageError naming `flag`, the path and the fix;
    `what` describes the file to pass instead."""
    check_model_file(path, flag, what)
    try:
        model = keras.saving.load_model(path, compile=False)
    except TypeError as error:  # Keras: "Could not locate class ..."
        raise UsageError(
            f"{flag}={path} holds a model that this vq_keras cannot rebuild ({_first_line(error)}). It was "
            f"saved by other code or another version of vq_keras. Pass {what}."
        ) from None
    except Exception as error:  # a config or weights file that its reader rejects
        raise UsageError(
            f"{flag}={path} is a damaged .keras file: Keras could not load it ({type(error).__name__}: "
            f"{_first_line(error)}). Save or copy it again, or pass {what}."
        ) from None
    if not isinstance(model, kinds):
        names = " or ".join("prior (e.g. PixelCNNPrior)" if kind is Prior else kind.__name__ for kind in kinds)
        raise UsageError(f"{flag}={path} holds a {type(model).__name__}, not a {names}. Pass {what}.")
    return model


def check_model_file(path, flag, what):
    """Raises UsageError unless `path` is a complete `.keras` zip archive: the checks that need
    no model, cheap enough to run before any slow work."""
    if not path:
        raise UsageError(f"Pass {flag}=PATH.keras, {what}.")
    file = Path(path)
    if file.is_dir() and is_unfinished_run(file):
        raise UsageError(
            f"{flag}={path} is the log folder of a run that has not finished: it has no model yet (its backups "
            f"hold the training so far). Run its training.fit command again, with the same flags: it resumes "
            f"from the newest backup and saves the model there at the end. Or pass {what}."
        )
    if file.is_dir():
        inside = sorted(p.name for p in file.glob("*.keras"))
        hint = f" It holds {', '.join(inside)}: e.g. {flag}={file / inside[0]}." if inside else ""
        raise UsageError(f"{flag}={path} is a folder, not a .keras file. Pass {what}.{hint}")
    if not file.exists() and looks_like_path(str(path)):
        raise UsageError(f"{flag}={path}: no such file. Pass {what}.")
    if not file.exists():
        shipped = ", ".join(trained_entries()) or "none"
        raise UsageError(f"{flag}={path}: no such file or trained preset (shipped: {shipped}). Pass {what}.")
    if file.suffix != ".keras":
        raise UsageError(f"{flag}={path}: expected a .keras file (as training.fit and model.save write). Pass {what}.")
    try:
        with open(file, "rb") as stream:
            start = stream.read(len(_HDF5_START))
    except OSError as error:
        raise UsageError(f"{flag}={path} cannot be read ({error.strerror}). Check its permissions.") from None
    if not start:
        raise UsageError(
            f"{flag}={path} is empty (0 bytes): the save or copy that wrote it did not finish. "
            f"Save or copy it again, or pass {what}."
        )
    if not zipfile.is_zipfile(file):
        if start.startswith(_ZIP_START):
            raise UsageError(
                f"{flag}={path} is truncated: a zip archive whose end is missing ({file.stat().st_size} bytes), "
                "left by a copy or save that did not finish. Save or copy it again."
            )
        kind = "an HDF5 file (a Keras 2 .h5 model or a .weights.h5 file?)" if start == _HDF5_START else "not a zip archive"
        raise UsageError(f"{flag}={path} is not a .keras file (a .keras file is a zip archive; this is {kind}). Pass {what}.")
    _check_members(file, flag, path, what)


def _check_members(file, flag, path, what):
    try:
        with zipfile.ZipFile(file) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise UsageError(f"{flag}={path} is a damaged zip archive ({error}). Save or copy it again.") from None
    if "config.json" not in names:
        raise UsageError(
            f"{flag}={path} is a zip archive but not a Keras model: it has no config.json (it holds "
            f"{', '.join(names[:5]) or 'nothing'}). Pass {what}."
        )


def _first_line(error):
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
