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
    with pytest.raises(UsageError, match="--prior does not fit --autoencoder.*num_embeddings=32.*num_embeddings=16"):
        evaluate.run(tiny_model_files, tmp_path / "prior.keras", "cifar10_sample")


def test_images_the_model_cannot_take_are_refused_with_the_fix(tiny_model_files):
    with pytest.raises(UsageError, match="multiples of 4.*Received: image size 30x30.*--image_size=28"):
        evaluate.run(tiny_model_files, None, "cifar10_sample", image_size="30")


@pytest.mark.large
def test_the_cli_names_unknown_presets_and_lists_the_shipped_ones():
    result = run_module("training.evaluate", "--model=no_such_entry", "--dataset=cifar10_sample")
    assert result.returncode == 2
    assert "--autoencoder=no_such_entry: no such file or trained preset (shipped: " in result.stderr
    assert "vqvae_cifar10" in result.stderr and "Traceback" not in result.stderr


def test_samples_are_measured_on_the_classifier_against_the_training_images(tiny_model_files, sample, tmp_path):
    from vq_keras.sample_quality import sample_quality

    results = evaluate.run(
        tiny_model_files, tiny_model_files / "prior.keras", "cifar10_sample", samples=20, seed=4,
        classifier=tiny_model_files / "classifier.keras", card=tmp_path / "README.md",
        sampling={"temperature": 0.5, "top_k": None},
    )
    train, test = ((images / np.float32(255)).astype(np.float32) for images in sample)
    load = lambda name: keras.saving.load_model(tiny_model_files / name)  # noqa: E731
    expected = sample_quality(
        load("model.keras"), load("prior.keras"), load("classifier.keras"), [train], [test], 20, 4, temperature=0.5
    )
    figures = results["samples"]
    assert figures["sampling"] == {"temperature": 0.5}
    assert figures["classifier"] == str(tiny_model_files / "classifier.keras")
    assert {key: figures[key] for key in expected} == pytest.approx(expected, rel=1e-4)
    assert figures["num_reference_images"] == len(train) and "class_accuracy" not in figures  # an unconditional prior
    assert evaluate.sample_table(figures)[-3].startswith(f"| samples | {figures['frechet_distance']:.4g} | - |")
    assert "\n".join(evaluate.sample_table(figures)) in (tmp_path / "README.md").read_text()


@pytest.mark.parametrize(
    "prior, samples, sampling, message",
    [
        (None, 10, {}, "--samples=10 draws images from a prior: pass --prior too"),
        ("prior.keras", 1, {}, "--samples must be 0 .* or at least 2. Received: --samples=1"),
        ("prior.keras", 10, {"temperature": 0.0}, "--temperature must be a finite number > 0.*Received: --temperature=0.0"),
        ("prior.keras", 10, {"num_steps": 4}, "num_steps"),  # a PixelCNN prior has no decoding steps
    ],
)
def test_bad_sampling_flags_are_refused(tiny_model_files, prior, samples, sampling, message):
    with pytest.raises(UsageError, match=message):
        evaluate.run(tiny_model_files, prior and tiny_model_files / prior, "cifar10_sample", samples=samples,
                     classifier=tiny_model_files / "classifier.keras", sampling=sampling)


def test_a_classifier_flag_that_names_no_classifier_is_refused(tiny_model_files):
    with pytest.raises(UsageError, match="--classifier=.*holds a VQVAE, not a ImageClassifier"):
        evaluate.run(tiny_model_files, tiny_model_files / "prior.keras", "cifar10_sample", samples=10,
                     classifier=tiny_model_files / "model.keras")
