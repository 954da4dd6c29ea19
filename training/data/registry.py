"""The data sources `--dataset` names, tried in order; TFDS reads any name none of them accepts.

A new source: a `DataSource` subclass (training/data/source.py) in its own module and one line here.
"""

from training.data.folder import FolderSource
from training.data.sample_reader import SampleSource
from training.data.tfds_reader import TFDSSource

DATA_SOURCES = {"sample": SampleSource, "folder": FolderSource}
FALLBACK_SOURCE = TFDSSource


def data_source(name, data_dir=None):
    """The reader of the data set `name` (a --dataset value)."""
    kind = next((source for source in DATA_SOURCES.values() if source.accepts(name)), FALLBACK_SOURCE)
    return kind(name, data_dir)
