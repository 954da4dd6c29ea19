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


TINY_AUTOENCODER = dict(num_hiddens=8, num_residual_hiddens=4, num_residual_layers=1, embedding_dim=4, num_embeddings=16)


@pytest.fixture(scope="session")
def tiny_model_files(tmp_path_factory):
    """A folder with an untrained tiny VQVAE (model.keras), a PixelCNNPrior over its 8x8 codes
    (prior.keras) and a class-conditional one with 3 classes (conditional_prior.keras)."""
    from vq_keras.zoo import VQVAE, PixelCNNPrior

    root = tmp_path_factory.mktemp("tiny_models")
    autoencoder = VQVAE(**TINY_AUTOENCODER)
    autoencoder.build_if_needed()
    autoencoder.save(root / "model.keras")
    for name, num_classes in (("prior.keras", None), ("conditional_prior.keras", 3)):
        prior = PixelCNNPrior(16, num_layers=1, num_filters=8, grid_shape=(8, 8), num_classes=num_classes)
        prior.build_if_needed()
        prior.save(root / name)
    return root
