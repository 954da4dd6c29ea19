"""Stage 2's data: a data set encoded to code grids once, cached atomically on disk.

The cache file's name holds a hash of the autoencoder file's bytes, of the
data (a folder's file names, sizes and modification times and its split rule;
a TFDS data set's prepared version and location) and of whether labels are
included, so a retrained autoencoder, changed files or another data set never
reuse stale codes. It is written to a temporary file in the same
folder and renamed into place, so a run killed while writing leaves no cache
file that the next run would read.
"""

import dataclasses
import hashlib
import re
import zipfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from training.data.pipeline import data_fingerprint, naming_bad_images, read_splits
from vq_keras.atomic import atomic_file

SPLITS = ("train", "validation")
ENCODE_BATCH_SIZE = 256
CACHE_VERSION = "2"


@dataclasses.dataclass
class CodeData:
    """A data set's code grids (int32, top level first) and class labels per split."""

    codes: dict  # split -> list of int32 arrays (N, h_i, w_i), top first
    labels: dict  # split -> int32 array (N,), or None without labels
    num_classes: int  # or None without labels

    def examples(self, split, level):
        """The dict examples a level's `PixelCNNPrior` trains on: codes, the level
        above as "condition" (lower levels), and "labels" (class-conditional)."""
        example = {"codes": self.codes[split][level]}
        if level > 0:
            example["condition"] = self.codes[split][level - 1]
        if self.labels[split] is not None:
            example["labels"] = self.labels[split]
        return example


def cache_path(cache_dir, autoencoder_path, dataset, data_dir, with_labels, image_size=None):
    """Where the codes of `dataset` under the autoencoder saved at `autoencoder_path` are cached.

    The key covers all the codes depend on: the autoencoder file's bytes, the data
    (`data_fingerprint`: a folder's file names, sizes and times and its split rule, or a
    TFDS data set's prepared version and location), the size images are brought to
    (`image_size`) and whether labels are included.
    """
    digest = hashlib.sha256()
    digest.update(Path(autoencoder_path).read_bytes())
    fingerprint = data_fingerprint(dataset, data_dir)
    size = "as stored" if image_size is None else "x".join(map(str, image_size))
    digest.update(f"\0{CACHE_VERSION}\0{dataset}\0{fingerprint}\0{with_labels}\0image_size={size}".encode())
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", dataset).strip("_")[:40]
    return Path(cache_dir) / f"codes_{slug}_{digest.hexdigest()[:16]}.npz"


def load_or_encode(autoencoder, autoencoder_path, dataset, data_dir, cache_dir, with_labels=False, image_size=None):
    """The `CodeData` of `dataset` (its images brought to `image_size`, (height, width) or None, and to
    the autoencoder's channels): read from the cache, or encoded once and cached."""
    path = cache_path(cache_dir, autoencoder_path, dataset, data_dir, with_labels, image_size)
    if path.exists():
        try:
            data = _read(path)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
            print(f"warning: the code cache {path} is unreadable ({error}); encoding the data set again.")
        else:
            print(f"Codes read from the cache {path}.")
            return data
    train, validation, num_classes, _ = read_splits(
        dataset, data_dir, with_labels=with_labels, image_size=image_size, channels=autoencoder.num_channels
    )
    encode = _encoder(autoencoder)
    codes, labels = {}, {}
    with naming_bad_images():
        for split, images in zip(SPLITS, (train, validation)):
            codes[split], labels[split] = _encode_split(encode, images, split, with_labels)
    data = CodeData(codes=codes, labels=labels, num_classes=num_classes)
    _write_atomically(path, data)
    print(f"Codes cached in {path}.")
    return data


def _encoder(autoencoder):
    @tf.function(reduce_retracing=True)
    def encode(images):
        return autoencoder.encode_levels(tf.cast(images, tf.float32) / 255.0)

    return encode


def _encode_split(encode, images, split, with_labels):
    """Encodes one split in batches with a progress bar: (list of level arrays, labels or None)."""
    count = int(images.cardinality())
    print(f"Encoding the {split} split ({count if count >= 0 else 'all'} images) to codes:")
    progress = keras.utils.Progbar(count if count >= 0 else None, unit_name="image")
    levels, labels = None, []
    for batch in images.batch(ENCODE_BATCH_SIZE).prefetch(tf.data.AUTOTUNE):
        if with_labels:
            batch, batch_labels = batch
            labels.append(batch_labels.numpy().astype(np.int32))
        batch_codes = [level.numpy() for level in encode(batch)]
        levels = [[] for _ in batch_codes] if levels is None else levels
        for store, level in zip(levels, batch_codes):
            store.append(level)
        progress.add(len(batch_codes[0]))
    return [np.concatenate(level) for level in levels], (np.concatenate(labels) if with_labels else None)


def _write_atomically(path, data):
    arrays = {"num_classes": np.array(-1 if data.num_classes is None else data.num_classes)}
    for split in SPLITS:
        for level, codes in enumerate(data.codes[split]):
            arrays[f"{split}_codes{level}"] = codes
        if data.labels[split] is not None:
            arrays[f"{split}_labels"] = data.labels[split]
    with atomic_file(path) as temporary:
        np.savez(temporary, **arrays)


def _read(path):
    with np.load(path) as archive:
        arrays = dict(archive)
    num_classes = int(arrays["num_classes"])
    codes, labels = {}, {}
    for split in SPLITS:
        levels = sorted(
            (int(key[len(f"{split}_codes"):]), key) for key in arrays if key.startswith(f"{split}_codes")
        )
        if not levels:
            raise KeyError(f"no {split} codes")
        codes[split] = [arrays[key].astype(np.int32) for _, key in levels]
        labels[split] = arrays[f"{split}_labels"].astype(np.int32) if num_classes >= 0 else None
    return CodeData(codes=codes, labels=labels, num_classes=None if num_classes < 0 else num_classes)
