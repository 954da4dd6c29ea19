"""The zoo autoencoders across Keras backends: a .keras file written on one loads on the other with
equal outputs, and both compute the same outputs, gradients, EMA state and loss curve from the
same file (`benchmarks/backends.py` at a small size, each backend in its own process); a trained
zoo entry gives its card's figures on the backend the tests run on."""

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.backend import BACKEND, to_numpy
from tests.conftest import REPO, SAMPLE_MSE_MARGIN

pytestmark = pytest.mark.backends


@pytest.mark.large
@pytest.mark.parametrize("other", ["jax", "torch"])
def test_tensorflow_and_another_backend_read_each_others_files_and_train_alike(other, tmp_path):
    # Run where the other backend is the one under test (CI's JAX and PyTorch runs), each once.
    if BACKEND != other:
        pytest.skip(f"compares TensorFlow with {other}: runs under KERAS_BACKEND={other}")
    from benchmarks.backends import equality_figures

    command = [sys.executable, "-m", "benchmarks.backends", "--task=equality", "--models=vqvae,vqvae2",
               "--size=tiny", "--steps=30", f"--other={other}", f"--workdir={tmp_path}"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("vqvae", "vqvae2"):
        figures = equality_figures(tmp_path, name, other)
        assert figures["codes_equal"] == 1.0, name
        assert figures["reconstruction"] < 1e-5 and figures["other_file_on_tensorflow"] < 1e-5, figures
        assert figures["gradient_relative"] < 1e-4, figures
        assert figures["quantizer_state_after_one_step"] < 1e-5 and figures["weights_after_one_step"] < 1e-5, figures
        # The curves agree far inside the noise of another batch order.
        assert figures["loss_curve_mean_difference"] < 0.01 * figures["noise_curve_mean_difference"], figures


@pytest.mark.parametrize("name", ["vqvae_cifar10", "vqvae2_cifar10", "vqvae_cifar10_fsq", "vqvae_cifar10_rvq"])
def test_a_trained_zoo_autoencoder_gives_its_card_figures_on_the_bundled_sample(name):
    from training.data.pipeline import SAMPLE_PATH
    from vq_keras import metrics
    from vq_keras.zoo import VQVAE, VQVAE2

    card = json.loads((REPO / "zoo" / name / "results.json").read_text())
    model = (VQVAE2 if name.startswith("vqvae2") else VQVAE).from_preset(name)
    with np.load(SAMPLE_PATH) as arrays:
        images = (arrays["test_images"] / np.float32(255)).astype("float32")
    outputs, codes = [], []
    for start in range(0, len(images), 100):
        output, level_codes = model(images[start:start + 100], training=False, return_codes=True)
        outputs.append(to_numpy(output))
        codes.append([to_numpy(c) for c in level_codes])
    mse = np.mean((np.concatenate(outputs) - images) ** 2) / card["training_pixel_variance"]
    assert mse == pytest.approx(card["mse_over_variance"], rel=SAMPLE_MSE_MARGIN)
    for level, (label, figures) in enumerate(card["levels"].items()):
        level_codes = np.concatenate([batch[level] for batch in codes])
        if level_codes.size < 10 * figures["num_embeddings"]:
            continue  # too few codes to estimate the perplexity of so large a codebook (FSQ's 15,360)
        counts = np.bincount(level_codes.ravel(), minlength=figures["num_embeddings"])
        # 300 images use fewer codes than the 10,000 of the card (measured within 7%).
        perplexity = float(to_numpy(metrics.perplexity_of_counts(counts.astype("float32"))))
        assert perplexity == pytest.approx(figures["perplexity"], rel=0.1), label
