"""A folder run's split is recorded and held to on resume (training/data/split_record.py)."""

import json

import numpy as np
import pytest
import tensorflow as tf

from training.data import load_image_data
from training.data.split_record import SPLIT_FILE, keep_split
from training.errors import UsageError


def _folder(path, count):
    path.mkdir()
    for i in range(count):
        tf.io.write_file(str(path / f"{i:02d}.png"), tf.io.encode_png(np.full((8, 8, 3), 5 * i, np.uint8)))
    return path


def test_a_folder_split_is_recorded_and_a_resume_holds_to_it(tmp_path):
    images, logdir = _folder(tmp_path / "images", 20), tmp_path / "run"
    files = load_image_data(f"folder:{images}", batch_size=2).split_files
    assert files == ([f"{i:02d}.png" for i in range(20) if i % 10 != 9], ["09.png", "19.png"])
    keep_split(logdir, files, resuming=False)
    assert json.loads((logdir / SPLIT_FILE).read_text()) == {"train": files[0], "validation": files[1]}
    keep_split(logdir, files, resuming=True)  # the same files: resumes

    (images / "03.png").unlink()  # every later file moves: 10.png would now be held out
    (images / "zz.png").write_bytes((images / "04.png").read_bytes())
    moved = load_image_data(f"folder:{images}", batch_size=2).split_files
    assert moved[1] == ["10.png", "zz.png"]
    with pytest.raises(UsageError) as error:
        keep_split(logdir, moved, resuming=True)
    assert str(error.value).startswith(
        f"The image folder of the run in {logdir} changed since it started: 1 removed (03.png); 1 added "
        "(zz.png). Its validation split and pixel variance were drawn from the files it started with"
    )
    assert "--overwrite" in str(error.value)
    assert json.loads((logdir / SPLIT_FILE).read_text())["validation"] == ["09.png", "19.png"]  # kept
    keep_split(logdir, moved, resuming=False)  # a run started again records the folder as it is now
    assert json.loads((logdir / SPLIT_FILE).read_text())["validation"] == ["10.png", "zz.png"]


def test_sources_with_named_splits_record_nothing(tmp_path):
    assert load_image_data("cifar10_sample", batch_size=2).split_files is None
    keep_split(tmp_path, None, resuming=True)
    assert not (tmp_path / SPLIT_FILE).exists()
