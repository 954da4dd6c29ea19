import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.training.conftest import run_module
from training import evaluate
from training.data.pipeline import SAMPLE_PATH
from training.errors import UsageError
from vq_keras import evaluation


@pytest.fixture(scope="module")
def sample():
    with np.load(SAMPLE_PATH) as arrays:
        return arrays["train_images"], arrays["test_images"]


def test_run_measures_the_held_out_split_against_the_training_variance(tiny_model_files, sample, tmp_path):
    train, test = sample
    results = evaluate.run(
        tiny_model_files / "model.keras", tiny_model_files / "prior.keras", "cifar10_sample", batch_size=64,
        output=tmp_path / "results.json",
    )
    assert json.loads((tmp_path / "results.json").read_text()) == results
    model = keras.saving.load_model(tiny_model_files / "model.keras")
    prior = keras.saving.load_model(tiny_model_files / "prior.keras")
    variance = (train.astype(np.float64) / 255.0).var()
    expected = evaluation.evaluate(model, [(test / 255.0).astype(np.float32)], variance, prior=prior)
    for key in ("mse_over_variance", "psnr", "ssim", "training_pixel_variance", "num_images"):
        assert results[key] == pytest.approx(expected[key], rel=1e-5), key
    assert results["levels"]["codes"] == pytest.approx(expected["levels"]["codes"], rel=1e-5)
    assert results["split"] == "test" and results["dataset"] == "cifar10_sample" and results["image_size"] is None
    assert results["commit"] is None or len(results["commit"].split("-")[0]) == 40


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


@pytest.mark.large
def test_the_cli_names_unknown_presets_and_lists_the_shipped_ones():
    result = run_module("training.evaluate", "--model=no_such_entry", "--dataset=cifar10_sample")
    assert result.returncode == 2
    assert "--model=no_such_entry: no such file or trained preset (shipped: " in result.stderr
    assert "vqvae_cifar10" in result.stderr and "Traceback" not in result.stderr
