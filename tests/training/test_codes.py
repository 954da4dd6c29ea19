import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO, SHARED_TFDS
from tests.presets import TINY_AUTOENCODER as TINY
from training.data import codes as code_cache
from training.data import folder as folder_reader
from training.data import pipeline
from training.data.pipeline import SAMPLE_PATH
from vq_keras.zoo import VQVAE, VQVAE2


def saved(model, path):
    model.build_if_needed()
    model.save(path)
    return model, path


@pytest.fixture
def tiny_vqvae(tmp_path):
    return saved(VQVAE(**TINY), tmp_path / "vqvae.keras")


def sample_arrays():
    with np.load(SAMPLE_PATH) as arrays:
        return dict(arrays)


def test_codes_and_labels_equal_a_direct_encoding(tmp_path):
    model, path = saved(VQVAE2(**TINY), tmp_path / "vqvae2.keras")
    data = code_cache.load_or_encode(model, path, "cifar10_sample", None, tmp_path / "cache", with_labels=True)
    arrays = sample_arrays()
    for split, key in (("train", "train"), ("validation", "test")):
        expected = model.encode(arrays[f"{key}_images"].astype(np.float32) / 255.0)
        assert [c.shape[1:] for c in data.codes[split]] == [(4, 4), (8, 8)]
        for level in range(2):
            np.testing.assert_array_equal(data.codes[split][level], np.asarray(expected[level]))
        np.testing.assert_array_equal(data.labels[split], arrays[f"{key}_labels"])
    assert data.num_classes == 10
    example = data.examples("validation", 1)
    assert sorted(example) == ["codes", "condition", "labels"]
    np.testing.assert_array_equal(example["condition"], data.codes["validation"][0])
    assert sorted(data.examples("train", 0)) == ["codes", "labels"]


def test_the_second_run_reads_the_cache_without_the_data(tiny_vqvae, tmp_path, monkeypatch, capsys):
    model, path = tiny_vqvae
    first = code_cache.load_or_encode(model, path, "cifar10_sample", None, tmp_path / "cache")
    monkeypatch.setattr(code_cache, "read_splits", lambda *a, **k: pytest.fail("the data set was read again"))
    second = code_cache.load_or_encode(model, path, "cifar10_sample", None, tmp_path / "cache")
    assert "read from the cache" in capsys.readouterr().out
    for split in code_cache.SPLITS:
        np.testing.assert_array_equal(first.codes[split][0], second.codes[split][0])
        assert second.labels[split] is None
    assert second.num_classes is None


def test_the_cache_key_follows_the_autoencoder_bytes_and_the_data(tiny_vqvae, tmp_path):
    model, path = tiny_vqvae
    key = lambda p, dataset="cifar10_sample", labels=False: code_cache.cache_path(  # noqa: E731
        tmp_path, p, dataset, None, labels
    )
    _, other = saved(VQVAE(**TINY), tmp_path / "other.keras")  # other random weights
    assert key(path) == key(path)
    assert len({key(path), key(other), key(path, "mnist"), key(path, labels=True)}) == 4


def test_an_unreadable_cache_is_reported_and_encoded_again(tiny_vqvae, tmp_path, capsys):
    model, path = tiny_vqvae
    cache = code_cache.cache_path(tmp_path / "cache", path, "cifar10_sample", None, False)
    cache.parent.mkdir()
    cache.write_bytes(b"PK\x03\x04 not a whole zip file")
    data = code_cache.load_or_encode(model, path, "cifar10_sample", None, tmp_path / "cache")
    assert "unreadable" in capsys.readouterr().out
    expected = model.encode(sample_arrays()["test_images"].astype(np.float32) / 255.0)
    np.testing.assert_array_equal(data.codes["validation"][0], np.asarray(expected))


KILLED_WHILE_WRITING = """
import os, signal, sys
import numpy as np
import keras, vq_keras
from training.data import codes

def savez_then_die(path, **arrays):
    with open(path, "wb") as file:
        file.write(b"PK\\x03\\x04" + b"half an archive" * 100)
    os.kill(os.getpid(), signal.SIGKILL)

codes.np.savez = savez_then_die
model = keras.saving.load_model(sys.argv[1])
codes.load_or_encode(model, sys.argv[1], "cifar10_sample", None, sys.argv[2])
"""


@pytest.mark.large
def test_a_run_killed_while_writing_the_cache_leaves_none_to_read(tiny_vqvae, tmp_path, capsys):
    model, path = tiny_vqvae
    cache_dir = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_WHILE_WRITING, str(path), str(cache_dir)],
        env=env, cwd=REPO, capture_output=True, timeout=300,
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    final = code_cache.cache_path(cache_dir, path, "cifar10_sample", None, False)
    assert not final.exists()
    torn = [p.name for p in cache_dir.iterdir()]
    assert len(torn) == 1 and torn[0].startswith(".tmp-") and torn[0].endswith(final.name), torn
    data = code_cache.load_or_encode(model, path, "cifar10_sample", None, cache_dir)
    assert "Encoding the train split" in capsys.readouterr().out
    assert final.exists()
    expected = model.encode(sample_arrays()["test_images"].astype(np.float32) / 255.0)
    np.testing.assert_array_equal(data.codes["validation"][0], np.asarray(expected))


def _write_png(path, seed):
    image = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), np.uint8)
    Image.fromarray(image).save(path)
    return image


def _fresh_codes(model, folder):
    """The reference: the folder's PNGs read with PIL, sorted, every 10th held out, encoded directly."""
    images = np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))]).astype(np.float32) / 255.0
    held_out = np.arange(len(images)) % 10 == 9
    return {split: np.asarray(model.encode(images[~held_out if split == "train" else held_out]))
            for split in code_cache.SPLITS}


def test_a_folder_whose_files_change_is_encoded_again_and_an_unchanged_one_is_read_from_the_cache(
    tiny_vqvae, tmp_path, monkeypatch, capsys
):
    model, path = tiny_vqvae
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(12):
        _write_png(folder / f"{i:02d}.png", seed=i)
    dataset, cache_dir = f"folder:{folder}", tmp_path / "cache"
    load = lambda: code_cache.load_or_encode(model, path, dataset, None, cache_dir)  # noqa: E731

    load()
    assert "Encoding the train split" in capsys.readouterr().out
    with monkeypatch.context() as patch:
        patch.setattr(code_cache, "read_splits", lambda *a, **k: pytest.fail("unchanged files were encoded again"))
        load()
    assert "read from the cache" in capsys.readouterr().out

    changed = folder / "03.png"
    stat = changed.stat()
    _write_png(changed, seed=100)  # same name, new content and a new modification time
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    _write_png(folder / "12.png", seed=12)  # a new file: the split of the later files moves
    data = load()
    assert "Encoding the train split" in capsys.readouterr().out
    expected = _fresh_codes(model, folder)
    for split in code_cache.SPLITS:
        np.testing.assert_array_equal(data.codes[split][0], expected[split])
    assert len(list(cache_dir.glob("codes_*.npz"))) == 2


def test_the_cache_key_follows_the_split_rule_and_the_tfds_preparation(tiny_vqvae, tmp_path, monkeypatch):
    _, path = tiny_vqvae
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        _write_png(folder / f"{i}.png", seed=i)
    key = lambda dataset=f"folder:{folder}", data_dir=None: code_cache.cache_path(  # noqa: E731
        tmp_path, path, dataset, data_dir, False
    )
    before = key()
    monkeypatch.setattr(folder_reader, "VALIDATION_EVERY", 5)
    assert key() != before
    shared, copy = SHARED_TFDS, tmp_path / "tfds"
    if not (shared / "cifar10").is_dir():
        pytest.skip(f"real CIFAR-10 for TFDS not found at {shared}/cifar10")
    fingerprint = pipeline.data_fingerprint("cifar10", str(shared))
    version = next(p.name for p in (shared / "cifar10").iterdir() if p.is_dir())
    assert f"{shared}/cifar10/{version}" in fingerprint
    (copy / "cifar10" / version).mkdir(parents=True)
    assert key("cifar10", str(shared)) != key("cifar10", str(copy))


def test_the_cache_key_follows_the_image_size(tiny_vqvae, tmp_path):
    _, path = tiny_vqvae
    key = lambda size: code_cache.cache_path(tmp_path, path, "cifar10_sample", None, False, size)  # noqa: E731
    assert len({key(None), key((16, 16)), key((16, 24))}) == 3 and key((16, 16)) == key((16, 16))
