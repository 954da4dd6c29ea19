import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.training.conftest import run_module
from training import evaluate
from training.data.pipeline import SAMPLE_PATH
from training.errors import UsageError


@pytest.fixture(scope="module")
def sample():
    with np.load(SAMPLE_PATH) as arrays:
        return arrays["train_images"], arrays["test_images"]


def test_figures_match_a_numpy_recomputation(tiny_model_files, sample, tmp_path):
    train, test = sample
    results = evaluate.run(
        tiny_model_files / "model.keras", tiny_model_files / "prior.keras", "cifar10_sample", batch_size=64,
        output=tmp_path / "results.json",
    )
    assert json.loads((tmp_path / "results.json").read_text()) == results
    model = keras.saving.load_model(tiny_model_files / "model.keras")
    prior = keras.saving.load_model(tiny_model_files / "prior.keras")
    images = test.astype(np.float64) / 255.0
    variance = (train.astype(np.float64) / 255.0).var()
    output = np.asarray(model(images.astype(np.float32)), np.float64)
    clipped = np.clip(output, 0.0, 1.0)
    psnr = 10 * np.log10(1.0 / ((clipped - images) ** 2).mean(axis=(1, 2, 3)))
    ssim = tf.image.ssim(tf.constant(images, tf.float32), tf.constant(clipped, tf.float32), max_val=1.0)
    codes = np.asarray(model.encode(images.astype(np.float32)))
    counts = np.bincount(codes.ravel(), minlength=model.num_embeddings)
    frequencies = counts[counts > 0] / counts.sum()
    nats = -np.asarray(prior.log_prob(codes)).sum() / codes.size

    assert results["mse_over_variance"] == pytest.approx(((output - images) ** 2).mean() / variance, rel=1e-4)
    assert results["training_pixel_variance"] == pytest.approx(variance, rel=1e-9)
    assert results["psnr"] == pytest.approx(psnr.mean(), rel=1e-4)
    assert results["ssim"] == pytest.approx(float(tf.reduce_mean(ssim)), rel=1e-4)
    level = results["levels"]["codes"]
    assert level["perplexity"] == pytest.approx(np.exp(-(frequencies * np.log(frequencies)).sum()), rel=1e-4)
    assert level["codebook_usage"] == pytest.approx((counts > 0).mean())
    assert level["bits_per_code"] == pytest.approx(nats / math.log(2), rel=1e-4)
    assert results["num_images"] == len(test) and results["split"] == "test" and results["dataset"] == "cifar10_sample"
    assert results["commit"] is None or len(results["commit"].split("-")[0]) == 40


def test_a_vqvae2_and_its_hierarchical_prior_give_bits_per_level(tmp_path):
    from vq_keras.zoo import VQVAE2, HierarchicalPrior

    model = VQVAE2(num_hiddens=8, num_residual_hiddens=4, num_residual_layers=1, embedding_dim=4, num_embeddings=16)
    model.build_if_needed()
    prior = HierarchicalPrior.from_autoencoder(model, num_layers=1, num_filters=8, num_attention_layers=0)
    prior.build_if_needed()
    model.save(tmp_path / "model.keras")
    prior.save(tmp_path / "prior.keras")
    results = evaluate.run(tmp_path, tmp_path, "cifar10_sample", batch_size=100)
    images = evaluate.read_splits("cifar10_sample")[1].batch(300).get_single_element().numpy() / 255.0
    top, bottom = model.encode(images.astype(np.float32))
    expected = [
        -np.asarray(prior.priors[0].log_prob(top)).sum() / np.size(top),
        -np.asarray(prior.priors[1].log_prob(bottom, condition=top)).sum() / np.size(bottom),
    ]
    assert list(results["levels"]) == ["top", "bottom"]
    for level, nats in zip(results["levels"].values(), expected):
        assert level["bits_per_code"] == pytest.approx(nats / math.log(2), rel=1e-4)


def test_card_table_is_written_between_its_markers(tiny_model_files, tmp_path):
    card = tmp_path / "README.md"
    card.write_text(f"# Card\n\nBefore.\n\n{evaluate.CARD_BEGIN}\nold table\n{evaluate.CARD_END}\n\nAfter.\n")
    results = evaluate.run(tiny_model_files, None, "cifar10_sample", card=card, picture=tmp_path / "r.png",
                           picture_scale=2)
    text = card.read_text()
    assert text == f"# Card\n\nBefore.\n\n{evaluate.CARD_BEGIN}\n{evaluate.table(results)}\n{evaluate.CARD_END}\n\nAfter.\n"
    picture = tf.io.decode_png(tf.io.read_file(str(tmp_path / "r.png"))).numpy()
    assert picture.shape == (2 * 32 * 2, 8 * 32 * 2, 3)
    assert (picture[::2, ::2] == picture[1::2, 1::2]).all()  # each pixel shown 2x2


def test_a_prior_over_other_codes_is_refused_before_reading_data(tiny_model_files, tmp_path, monkeypatch):
    from vq_keras.zoo import PixelCNNPrior

    prior = PixelCNNPrior(32, num_layers=1, num_filters=8)
    prior.build_if_needed()
    prior.save(tmp_path / "prior.keras")
    monkeypatch.setattr(evaluate, "read_splits", lambda *a, **k: pytest.fail("the data set was read"))
    with pytest.raises(UsageError, match="--prior does not fit --model.*num_embeddings=32.*num_embeddings=16"):
        evaluate.run(tiny_model_files, tmp_path / "prior.keras", "cifar10_sample")


def test_images_the_model_cannot_take_are_refused_with_the_fix(tiny_model_files):
    with pytest.raises(UsageError, match="multiples of 4.*Received: image size 30x30.*--image_size=28"):
        evaluate.run(tiny_model_files, None, "cifar10_sample", image_size="30")


def test_the_cli_names_unknown_presets_and_lists_the_shipped_ones():
    result = run_module("training.evaluate", "--model=no_such_entry", "--dataset=cifar10_sample")
    assert result.returncode == 2
    assert "--model=no_such_entry: no such file or trained preset (shipped: " in result.stderr
    assert "vqvae_cifar10" in result.stderr and "Traceback" not in result.stderr
