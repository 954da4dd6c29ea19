"""Trained presets: the zoo entries shipped with the package, and local entry folders.

An entry is a folder holding the weights (`model.keras` for an autoencoder,
`prior.keras` for a prior, `classifier.keras` for the sample-quality classifier), `results.json`
(written by `training.evaluate`, or `training.fit_classifier`),
`recipe.flags` and the card. setup.py installs the repository's `zoo/` folder as the
package data `vq_keras/trained/`; a source checkout reads `zoo/` where it is. Nothing
is downloaded.
"""

import json
import os
import zipfile
from pathlib import Path

import keras

WEIGHT_FILES = ("model.keras", "prior.keras", "classifier.keras")


class OtherKindOfEntry(ValueError):
    """A name or folder that holds another kind's weights (e.g. a prior's where a model's is asked)."""


def entries_root():
    """The folder of the shipped entries: the installed package data, else a checkout's zoo/."""
    package = Path(__file__).resolve().parents[1]
    installed = package / "trained"
    if installed.is_dir():
        return installed
    checkout = package.parent
    return checkout / "zoo" if (checkout / "setup.py").is_file() else installed


def saved_class_name(path):
    """The class name recorded in a `.keras` file's config, without loading the weights."""
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("config.json"))["class_name"]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path} is not a readable .keras file ({error}).") from None


def weights_of(folder):
    """The weights file of an entry folder, or None."""
    return next((folder / name for name in WEIGHT_FILES if (folder / name).is_file()), None)


def trained_entries(class_name=None):
    """{name: folder} of the shipped entries (those of `class_name` only, if given)."""
    root = entries_root()
    if not root.is_dir():
        return {}
    entries = {}
    for folder in sorted(path for path in root.iterdir() if path.is_dir()):
        weights = weights_of(folder)
        if weights is not None and (class_name is None or saved_class_name(weights) == class_name):
            entries[folder.name] = folder
    return entries


def results_of(folder):
    """The entry's results.json as a dict ({} when it has none)."""
    path = Path(folder) / "results.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def headline(folder):
    """One line of an entry's measured figures, from its results.json."""
    results = results_of(folder)
    if not results:
        return "trained (no results.json)"
    where = f"{results.get('dataset', '?')} {results.get('split', '?')}"
    if "test_accuracy" in results:  # the sample-quality classifier
        return f"trained: accuracy {results['test_accuracy']:.1%} on {where}"
    levels = results.get("levels", {})
    # A single level ("codes") needs no name.
    named = lambda level, text: text if len(levels) == 1 else f"{level} {text}"  # noqa: E731
    samples = results.get("samples")
    drawn = "" if not samples else (
        f"; {samples['num_samples']} samples at Frechet distance {samples['frechet_distance']:.2f} "
        f"(held-out images {samples['real_frechet_distance']:.2f}) on {samples['classifier']}'s features"
    )
    if any(values.get("bits_per_code") is not None for values in levels.values()):
        bits = ", ".join(named(level, f"{values['bits_per_code']:.2f}") for level, values in levels.items())
        return f"trained: {bits} bits per code on {where}{drawn}"
    if any("masked_token_loss" in values for values in levels.values()):  # a masked prior: no exact likelihood
        loss = ", ".join(named(level, f"{values['masked_token_loss']:.3f}") for level, values in levels.items())
        return f"trained: masked-token loss {loss} nats per masked code on {where}{drawn}"
    usage = ", ".join(named(level, f"{values['codebook_usage']:.0%}") for level, values in levels.items())
    return (
        f"trained: MSE/variance {results['mse_over_variance']:.4f}, PSNR {results['psnr']:.2f} dB, "
        f"SSIM {results['ssim']:.3f}, codes used {usage} on {where}"
    )


def looks_like_path(value):
    return isinstance(value, os.PathLike) or os.sep in value or value.endswith(".keras") or Path(value).exists()


def resolve(name_or_path, file_name, class_name=None):
    """The weights file `file_name` named by a shipped entry's name, an entry folder, a run
    folder written by training.fit, or a `.keras` file; raises ValueError listing the
    shipped entries when it names none."""
    entries = trained_entries()
    if not isinstance(name_or_path, os.PathLike) and name_or_path in entries:
        path = entries[name_or_path] / file_name
    elif looks_like_path(name_or_path):
        path = Path(name_or_path)
        path = path / file_name if path.is_dir() else path
    else:
        raise ValueError(
            f"Unknown trained preset {name_or_path!r}. Shipped entries: {', '.join(entries) or 'none'}; "
            f"or give a folder holding {file_name} or a .keras file."
        )
    if not path.is_file():
        other = next((name for name in WEIGHT_FILES if name != file_name and (path.parent / name).is_file()), None)
        if other and path.name == file_name:  # an entry of another kind, e.g. a prior's name given for a model
            holds = saved_class_name(path.parent / other)
            raise OtherKindOfEntry(
                f"{path.parent} holds {other} (a {holds}), not {file_name}. Load it with "
                f"{holds}.from_preset({str(name_or_path)!r}), or pass it where a {holds} is expected."
            )
        missing = f"No {file_name} at {path}" if path.name == file_name else f"No such file: {path}"
        raise ValueError(f"{missing}: expected a zoo entry folder, a training run folder or a .keras file.")
    if class_name is not None and saved_class_name(path) != class_name:
        raise ValueError(
            f"{path} holds a {saved_class_name(path)}, not a {class_name}. "
            f"Load it with {saved_class_name(path)}.from_preset, or pick a {class_name} entry."
        )
    return path


def load(name_or_path, file_name, class_name=None):
    """The trained model `resolve` finds, loaded."""
    return keras.saving.load_model(resolve(name_or_path, file_name, class_name))
