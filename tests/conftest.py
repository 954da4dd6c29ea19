import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path  # noqa: E402

import keras  # noqa: E402
import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# The sample's 300 test images are real CIFAR-10 test images, so their reconstruction error lies
# near the full split's: measured within 4% (vqvae_cifar10 0.0523 against 0.0543); 10% leaves room
# for other entries without hiding a model that is not the card's.
SAMPLE_MSE_MARGIN = 0.10
SAMPLE_BITS_MARGIN = 0.3  # bits per code (measured within 0.17)
SHARED_TFDS = REPO.parent / "shared" / "tfds"


@pytest.fixture(autouse=True)
def _seeded():
    keras.utils.set_random_seed(0)
    yield
    keras.config.set_dtype_policy("float32")


@pytest.fixture
def cifar10_data_dir():
    """The real CIFAR-10 prepared for TFDS beside the repository (../shared/tfds)."""
    if not (SHARED_TFDS / "cifar10").is_dir():
        pytest.skip(f"real CIFAR-10 for TFDS not found at {SHARED_TFDS}/cifar10 (see its README)")
    return str(SHARED_TFDS)


def pytest_addoption(parser):
    parser.addoption(
        "--fault-points", type=int, default=1, dest="fault_points",
        help="kill -9 points per stage in tests/training/test_faults.py (default 1; the full check is 10)",
    )
    parser.addoption(
        "--run_large", action="store_true", default=False,
        help="also run the tests marked large (they train, start subprocesses or build wheels; CI runs them)",
    )


def pytest_collection_modifyitems(config, items):
    import keras

    backend = keras.backend.backend()
    if backend != "tensorflow":
        skip_other = pytest.mark.skip(reason=f"runs on TensorFlow only so far, not on KERAS_BACKEND={backend} (issue #25)")
        for item in items:
            if not item.get_closest_marker("backends"):
                item.add_marker(skip_other)
    if config.getoption("run_large"):
        return
    skip_large = pytest.mark.skip(reason="large test: run with --run_large (CI does)")
    for item in items:
        if item.get_closest_marker("large"):
            item.add_marker(skip_large)


@pytest.fixture
def read_only_folder(tmp_path):
    """An empty folder nobody may add to: mode 0555, or for root (whom modes do not stop)
    the immutable attribute (chattr +i); skipped where neither is possible."""
    import subprocess

    folder = tmp_path / "read_only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("running as root where chattr +i is not possible: no read-only folder to test with")
    yield folder
    subprocess.run(["chattr", "-i", str(folder)], check=True)


@pytest.fixture
def small_disk(tmp_path):
    """A folder on its own 1 MiB file system (a tmpfs): writes beyond it fail with ENOSPC, as on a
    full disk. Skipped where mounting is not permitted."""
    import subprocess

    folder = tmp_path / "small_disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.decode().strip()}): no full disk to test with")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=True)
