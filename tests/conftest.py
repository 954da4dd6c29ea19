import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path  # noqa: E402

import keras  # noqa: E402
import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
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
