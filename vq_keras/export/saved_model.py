"""`export_saved_model`: the version folder, written atomically, and the archive of signatures."""

import errno
import numbers
import os

import keras
import tensorflow as tf

from vq_keras.atomic import atomic_directory, is_out_of_space, remove_abandoned_temporaries, why_not_writable
from vq_keras.export.endpoints import Endpoints
from vq_keras.export.generate_signature import Generator
from vq_keras.models.vq_model import VQModel


def export_saved_model(model, export_base, version=None, overwrite=False, image_size=None, prior=None):
    """Writes `model` as a SavedModel for TF Serving to `<export_base>/<version>`.

    The version folder appears at once and complete: the SavedModel is written
    to a hidden temporary folder beside it (`<export_base>/.tmp-<pid>@<host>-...`,
    a name TF Serving ignores) and then renamed (`vq_keras.atomic`); its files
    get the permissions of the user's umask, so a server running as another
    user can read them. If anything fails, neither the
    version folder nor the temporary folder is left behind; the temporary folder
    of an export that was killed is deleted by the next export into `export_base`. `export_base` must
    be on a local file system. See the module docstring for the signatures.

    Args:
        model: a built or unbuilt zoo autoencoder (`VQVAE` or `VQVAE2`, e.g.
            from `keras.saving.load_model("model.keras")`).
        export_base: the folder TF Serving watches (its `--model_base_path`);
            created if missing.
        version: positive integer, the version folder's name. Default: one more
            than the highest existing version, or 1.
        overwrite: replace an existing `<export_base>/<version>`. A running TF
            Serving does not reload a version it has already loaded; export a
            new version to update a served model.
        image_size: `None` (any height and width that are positive multiples of
            `model.downsampling`), an int for square images, or (height, width)
            to fix the signatures' image and code grid sizes (and the size of
            the images `generate` draws).
        prior: optional, a prior over the model's codes (a `PixelCNNPrior` or
            other `vq_keras.models.Prior` for a VQVAE, a `HierarchicalPrior`
            for a VQVAE2), to add the `generate` signature.

    Returns:
        The path of the written version folder, `<export_base>/<version>` (str).

    Raises:
        TypeError: `model` is not a zoo autoencoder.
        ValueError: a bad argument, an export_base it cannot write (a file, under a
            file, read-only), the version exists and `overwrite` is False, or a
            prior that does not model the model's codes.

    Example:
        >>> model = keras.saving.load_model("runs/cifar10/model.keras")
        >>> export_saved_model(model, "exports/vqvae")
        'exports/vqvae/1'
    """
    _check_model(model)
    image_size = _standardize_image_size(model, image_size)
    generator = None if prior is None else Generator(model, prior, image_size)
    if not isinstance(overwrite, bool):
        raise ValueError(
            f"export_saved_model expects overwrite to be True or False. Received: overwrite={overwrite!r}"
        )
    if version is not None and (
        isinstance(version, bool) or not isinstance(version, numbers.Integral) or version < 1
    ):
        raise ValueError(
            "export_saved_model expects version to be a positive integer (TF Serving's version "
            f"folder name) or None for the next free version. Received: version={version!r}"
        )
    export_base = os.fspath(export_base)
    if not export_base:
        raise ValueError(
            "export_saved_model expects export_base to be a folder path (TF Serving's model base path), "
            "e.g. 'exports/vqvae'. Received: export_base=''"
        )
    problem = why_not_writable(export_base, folder=True)
    if problem:
        raise ValueError(
            f"export_saved_model expects export_base to be a folder it can write (TF Serving's model base "
            f"path). Received: export_base={export_base!r}: {problem}. Pass a folder you can write to."
        )
    version = _next_version(export_base) if version is None else int(version)
    target = os.path.join(export_base, str(version))
    if os.path.lexists(target):
        if not os.path.isdir(target):
            raise ValueError(
                f"export_saved_model cannot write version {version}: {target!r} exists and is not a "
                "folder. Remove it or pass another version."
            )
        if not overwrite:
            raise ValueError(
                f"Version {version} already exists at {target!r}; export_saved_model never replaces a "
                "version unless asked. Pass version=None for the next free version, another version, "
                "or overwrite=True to replace it."
            )

    model.build_if_needed()
    archive = _build_archive(model, image_size, generator)
    remove_abandoned_temporaries(export_base)

    created_base = not os.path.isdir(export_base)
    try:
        with atomic_directory(target, replace=overwrite) as temporary:
            archive.write_out(
                str(temporary),
                options=tf.saved_model.SaveOptions(experimental_custom_gradients=False),
                verbose=False,
            )
    except BaseException as error:
        if created_base:
            _remove_if_empty(export_base)
        if isinstance(error, OSError) and os.path.isdir(target) and not overwrite:
            raise ValueError(
                f"Version {version} appeared at {target!r} while export_saved_model was writing it "
                "(another export?). Nothing was written; export again for the next free version."
            ) from error
        if is_out_of_space(error):
            raise OSError(
                errno.ENOSPC,
                f"No space left on the disk of {export_base!r} while the SavedModel was written: nothing was "
                "published (the partial copy was removed) and the existing versions are as they were. Free "
                "space there (the SavedModel needs a few times the .keras file's size), then export again.",
            ) from None
        raise
    return target


def _remove_if_empty(folder):
    try:
        os.rmdir(folder)
    except OSError:
        pass


def _check_model(model):
    if not isinstance(model, VQModel):  # its contract: encode_levels, decode_levels, code_shapes, ...
        raise TypeError(
            "export_saved_model expects a vq_keras autoencoder (a VQModel such as VQVAE or VQVAE2, e.g. "
            "keras.saving.load_model('model.keras')). "
            f"Received: model of type {type(model).__name__}."
            " A prior is exported beside its autoencoder: export_saved_model(autoencoder, base, prior=prior)."
        )


def _standardize_image_size(model, image_size):
    """None or (height, width), checked against the model's downsampling."""
    if image_size is None:
        return None
    size = (image_size, image_size) if isinstance(image_size, numbers.Integral) else image_size
    factor = model.downsampling
    valid = (
        isinstance(size, (tuple, list))
        and len(size) == 2
        and all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in size)
    )
    if not valid or not all(s >= factor and s % factor == 0 for s in size):
        raise ValueError(
            f"export_saved_model expects image_size to be None, an int or (height, width), with height "
            f"and width positive multiples of {factor} ({type(model).__name__} downsamples images by "
            f"{factor}; e.g. {factor * 4} or ({factor * 4}, {factor * 8})). Received: image_size={image_size!r}. "
            f"Pass image_size=None to accept any multiple of {factor}."
        )
    return tuple(int(s) for s in size)


def _next_version(export_base):
    """One more than the highest numeric folder name in `export_base`, or 1."""
    if not os.path.isdir(export_base):
        return 1
    versions = [
        int(entry.name)
        for entry in os.scandir(export_base)
        if entry.name.isascii() and entry.name.isdigit() and entry.is_dir()
    ]
    return max(versions, default=0) + 1


def _build_archive(model, image_size, generator=None):
    endpoints = Endpoints(model, image_size)
    archive = keras.export.ExportArchive()
    archive.track(model)
    # The first endpoint is also written as "serving_default" (TF Serving's default signature).
    archive.add_endpoint("reconstruct", endpoints.reconstruct, [endpoints.image_spec(tf.float32)])
    archive.add_endpoint("reconstruct_uint8", endpoints.reconstruct_uint8, [endpoints.image_spec(tf.uint8)])
    archive.add_endpoint("encode", endpoints.encode, [endpoints.image_spec(tf.float32)])
    archive.add_endpoint("decode", endpoints.decode, endpoints.code_specs())
    if generator is not None:
        generator.prior.build_if_needed()
        archive.track(generator.prior)
        archive.add_endpoint("generate", generator.generate, generator.specs())
    return archive
