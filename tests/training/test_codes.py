import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO
from training.data import codes as code_cache
from training.data.pipeline import SAMPLE_PATH
from vq_keras.zoo import VQVAE, VQVAE2

TINY = dict(num_hiddens=8, num_residual_hiddens=4, num_residual_layers=1, embedding_dim=4, num_embeddings=16)


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
