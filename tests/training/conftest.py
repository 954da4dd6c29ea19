import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


def run_module(module, *args, timeout=300):
    """Runs `python -m module args...` from the repository root, as a user would."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


FIT_RUN_ARGS = ("--epochs=2", "--steps_per_epoch=3", "--validation_steps=2", "--batch_size=8", "--jit_compile=false")


@pytest.fixture(scope="session")
def fit_run(tmp_path_factory):
    """One short `python -m training.fit` run on the bundled sample: (logdir, CompletedProcess)."""
    logdir = tmp_path_factory.mktemp("fit") / "run"
    result = run_module("training.fit", *FIT_RUN_ARGS, f"--logdir={logdir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return logdir, result
