"""The TFDS reader: a TFDS image data set by name, prepared (downloaded) the way TFDS does when missing.

`prepared_builder(name, data_dir)` returns the data set's builder once its files are prepared under
`data_dir` (or $TFDS_DATA_DIR, or TFDS's default folder). A data set not prepared there is prepared by
the builder's own `download_and_prepare` (with TFDS's progress bars), after two quick checks that end
with an error saying what to do instead of a download that cannot work:

- a manual-download data set (its builder has MANUAL_DOWNLOAD_INSTRUCTIONS) whose manual folder
  `<data_dir>/downloads/manual` is empty: the error quotes the instructions;
- a data set whose download hosts (the URLs of its checksums file) cannot be reached within
  CONNECT_TIMEOUT seconds, e.g. on a machine without a network: TFDS itself would retry each
  download for minutes first.

The records are read with the images still encoded (`tfds.decode.SkipDecoding`): the pipeline
decodes them after shuffling, as it does a folder's files. The data variance is estimated from the
first VARIANCE_SAMPLE training records (TFDS shuffled them when it wrote them).
"""

import os
import socket
import urllib.parse
from pathlib import Path

import tensorflow as tf

from training.data.images import decoded_or_flag
from training.data.source import VARIANCE_SAMPLE, DataSource, Splits, file_stamp
from training.errors import UsageError

CONNECT_TIMEOUT = 10  # seconds per download host
KNOWN_DATASETS = (
    "cifar10_sample (bundled, offline), folder:PATH (a folder of images), "
    "or any TFDS image data set such as cifar10, mnist, svhn_cropped, celeb_a"
)


def tfds_builder(name, data_dir):
    """The TFDS builder of `name` (not prepared yet, perhaps), checked to have images."""
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise UsageError(_unknown(name)) from None
    except ValueError as error:  # not of the form dataset[/config][:version]
        raise UsageError(_unknown(name, f" ({str(error).splitlines()[0]})")) from None
    if "image" not in builder.info.features:
        raise UsageError(
            f"TFDS data set {name!r} has no 'image' feature (it has: "
            f"{', '.join(builder.info.features)}); pick an image data set."
        )
    return builder


def _unknown(name, reason=""):
    if os.path.exists(name) or name.startswith((".", "/", "~")):
        kind = "folder" if os.path.isdir(name) else "file" if os.path.exists(name) else "path"
        return (
            f"--dataset={name} looks like a {kind}, not a TFDS name. For a folder of images pass "
            f"--dataset=folder:{name}. Known data sets: {KNOWN_DATASETS}."
        )
    return f"Unknown data set {name!r}{reason}. Known data sets: {KNOWN_DATASETS}."


def prepared_builder(name, data_dir):
    """The builder of `name` with its files prepared, downloading and preparing them if needed."""
    builder = tfds_builder(name, data_dir)
    if builder.is_prepared():
        return builder
    where = builder.data_dir_root
    instead = (
        f"Pass --data_dir=DIR (or set TFDS_DATA_DIR=DIR) to a folder holding {name}/<version>/ as "
        "`tfds build` writes it (for CIFAR-10 on machines of this project: --data_dir=../shared/tfds), "
        "or use --dataset=cifar10_sample to train offline on the bundled sample."
    )
    instructions = type(builder).MANUAL_DOWNLOAD_INSTRUCTIONS
    manual_dir = Path(where) / "downloads" / "manual"
    if instructions and not (manual_dir.is_dir() and any(manual_dir.iterdir())):
        raise UsageError(
            f"TFDS data set {name!r} is not prepared under {where}, and TFDS cannot download it: its files "
            f"must be downloaded by hand into {manual_dir}, then the same command prepares it. TFDS's "
            f"instructions: {' '.join(instructions.split())} {instead}"
        )
    unreachable = unreachable_hosts(builder)
    if unreachable:
        raise UsageError(
            f"TFDS data set {name!r} is not prepared under {where}, and it cannot be downloaded from here: "
            f"{'; '.join(unreachable)}. {instead}"
        )
    print(f"TFDS data set {name!r} is not prepared under {where}: downloading and preparing it there.")
    try:
        builder.download_and_prepare()
    except Exception as error:  # a download or preparation failure of any kind: say what to do
        raise UsageError(
            f"TFDS could not download and prepare {name!r} under {where}: {type(error).__name__}: "
            f"{' '.join(str(error).split())[:500]} {instead}"
        ) from None
    return builder


def unreachable_hosts(builder):
    """The data set's download hosts (from its checksums file) that cannot be connected to, each with
    the reason; empty when all can be, or when the builder lists no URLs."""
    problems = {}
    for url in sorted(getattr(builder, "url_infos", None) or {}):
        parts = urllib.parse.urlsplit(url)
        if not parts.hostname or parts.hostname in problems:
            continue
        port = parts.port or (80 if parts.scheme == "http" else 443)
        try:
            socket.create_connection((parts.hostname, port), timeout=CONNECT_TIMEOUT).close()
        except OSError as error:
            problems[parts.hostname] = f"{parts.hostname}:{port} is unreachable ({error})"
    return list(problems.values())


def split_names(splits):
    """The training split and the held-out split used for validation."""
    for held_out in ("test", "validation"):
        if held_out in splits:
            return "train", held_out
    return "train[:90%]", "train[90%:]"


def read_split(builder, split, with_labels):
    """The split's examples, images still encoded: encoded bytes, or (bytes, label) pairs."""
    import tensorflow_datasets as tfds

    examples = builder.as_dataset(
        split=split, shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()}
    )
    if with_labels:
        return examples.map(lambda example: (example["image"], example["label"]))
    return examples.map(lambda example: example["image"])


def split_size(builder, split):
    return int(builder.info.splits[split].num_examples)


def decode(encoded, channels):
    """(uint8 image, decoded) of one record's encoded image (see `decoded_or_flag`)."""
    return decoded_or_flag(
        lambda data: tf.io.decode_image(data, channels=channels or 0, expand_animations=False), encoded, channels
    )


def record_bytes(builder, split):
    """The average size of a record of `split` (its encoded image and features), in bytes."""
    info = builder.info.splits[split]
    return -(-int(info.num_bytes) // max(1, int(info.num_examples)))


def num_classes(name, builder):
    import tensorflow_datasets as tfds

    label = builder.info.features["label"] if "label" in builder.info.features else None
    if not isinstance(label, tfds.features.ClassLabel):
        raise UsageError(
            f"TFDS data set {name!r} has no 'label' class feature (it has: "
            f"{', '.join(builder.info.features)}), so it cannot train a class-conditional prior. "
            "Drop --class_conditional."
        )
    return label.num_classes


class TFDSSource(DataSource):
    """A TFDS image data set by name: the source of every name no other source accepts."""

    @classmethod
    def accepts(cls, name):
        return True

    def image_shape(self):
        return tuple(tfds_builder(self.name, self.data_dir).info.features["image"].shape)

    def held_out_split(self):
        return split_names(prepared_builder(self.name, self.data_dir).info.splits)[1]

    def fingerprint(self):
        """The prepared data set's folder (<data_dir>/<name>/<version>), its version, the split names
        used and the size and modification time of its dataset_info.json."""
        builder = tfds_builder(self.name, self.data_dir)
        info_file = Path(builder.data_dir) / "dataset_info.json"
        stamp = file_stamp(info_file) if info_file.is_file() else "not prepared"
        splits = split_names(builder.info.splits)
        return f"tfds\0{builder.data_dir}\0{builder.info.version}\0{splits}\0{stamp}"

    def open(self, with_labels, skip_bad_images, channels, covering=None):
        name, builder = self.name, prepared_builder(self.name, self.data_dir)
        train_split, validation_split = split_names(builder.info.splits)
        shape = tuple(builder.info.features["image"].shape)
        return Splits(
            train=read_split(builder, train_split, with_labels),
            validation=read_split(builder, validation_split, with_labels),
            load=lambda encoded: (*decode(encoded, shape[-1]), tf.constant(f"a record of TFDS {name}")),
            num_train=split_size(builder, train_split),
            num_validation=split_size(builder, validation_split),
            variance_items=read_split(builder, train_split, False).take(VARIANCE_SAMPLE),
            image_shape=shape,
            num_classes=num_classes(name, builder) if with_labels else None,
            item_bytes=record_bytes(builder, train_split),
        )
