import os

import numpy as np
import pytest
import keras
import tensorflow as tf

from tests.training.conftest import run_module
from training.data import image_spec_or_none
from training.errors import UsageError
from training.fit import build_model, codebook_overrides


def _scalar_tags(event_dir):
    tags = set()
    for path in tf.io.gfile.glob(os.path.join(event_dir, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(value.tag for value in event.summary.value)
    return tags


def test_cli_trains_logs_saves_and_reloads(fit_run):
    logdir, result = fit_run
    assert "Training vqvae (cifar10) on cifar10_sample: 1200 training and 300 validation images" in result.stdout
    assert f"Saved model: {logdir / 'model.keras'}" in result.stdout
    assert f"TensorBoard logs: {logdir}" in result.stdout
    model = keras.saving.load_model(logdir / "model.keras")
    assert model.optimizer.iterations.numpy() == 6
    np.testing.assert_allclose(model.data_variance, 0.0635028, rtol=1e-5)
    expected = {"epoch_loss", "epoch_reconstruction_loss", "epoch_vq_loss", "epoch_perplexity", "epoch_codebook_usage"}
    assert expected <= _scalar_tags(logdir / "train")
    assert expected <= _scalar_tags(logdir / "validation")
    assert not (logdir / "backup").exists()  # removed once model.keras is saved


def test_cli_errors_are_one_paragraph_without_traceback():
    result = run_module("training.fit", "--dataset=no_such_set")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "error: Unknown data set 'no_such_set'. Known data sets: cifar10_sample (bundled, offline)" in result.stderr


def test_unknown_model_and_preset():
    with pytest.raises(UsageError, match=r"Unknown model 'vqgan'. Known models: vqvae, vqvae2."):
        build_model("vqgan", "cifar10", None, 1.0, (32, 32, 3), "cifar10")
    with pytest.raises(UsageError, match=r"Unknown preset 'ffhq' for --model=vqvae. Known presets: cifar10."):
        build_model("vqvae", "ffhq", None, 1.0, (32, 32, 3), "cifar10")


def test_grayscale_into_rgb_preset_says_what_to_change():
    shape = image_spec_or_none("mnist")  # known from the TFDS catalog without any data
    with pytest.raises(UsageError) as error:
        build_model("vqvae", "cifar10", None, 1.0, shape, "mnist")
    assert str(error.value) == (
        "Data set 'mnist' has 1-channel images of shape (28, 28, 1), but preset 'cifar10' is built "
        "for 3-channel images. Pass --num_channels=1 to build the preset for them."
    )
    assert build_model("vqvae", "cifar10", 1, 1.0, shape, "mnist").num_channels == 1


def test_image_size_the_model_cannot_take():
    shape = image_spec_or_none("celeb_a")  # 218 x 178
    with pytest.raises(UsageError, match=(
        r"Data set 'celeb_a': VQVAE downsamples images by 4, so height and width must be positive "
        r"multiples of 4 \(e.g. 28, 32, 64\). Received: image size 218x178."
    )):
        build_model("vqvae", "cifar10", None, 1.0, shape, "celeb_a")


def test_codebook_flags_override_the_preset_and_log_epoch_usage(tmp_path):
    logdir = tmp_path / "run"
    result = run_module(
        "training.fit", "--epochs=1", "--steps_per_epoch=2", "--validation_steps=2", "--batch_size=8",
        "--jit_compile=false", "--num_embeddings=64", "--dead_code_threshold=0.2", "--codebook_init=kmeans++",
        f"--logdir={logdir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    model = keras.saving.load_model(logdir / "model.keras")
    config = model.get_config()
    assert (config["num_embeddings"], config["dead_code_threshold"], config["codebook_init"]) == (64, 0.2, "kmeans++")
    assert model.quantizer.codebook_initialized.numpy() == 1 and model.quantizer.training_calls.numpy() == 2
    for run in ("train", "validation"):
        assert {"epoch_epoch_codebook_usage", "epoch_epoch_dead_codes"} <= _scalar_tags(logdir / run)


def test_codebook_flag_values_reach_the_model_and_zero_turns_restarts_off():
    flags = type("Flags", (), dict(num_embeddings=None, dead_code_threshold=0.0, codebook_init=None))
    assert codebook_overrides(flags) == {"dead_code_threshold": None}
    flags.num_embeddings, flags.codebook_init = 2048, "uniform"
    model = build_model("vqvae2", "cifar10", None, 1.0, (32, 32, 3), "cifar10", codebook_overrides(flags))
    assert [q.num_embeddings for q in model.quantizers] == [2048, 2048]
    assert all(q.dead_code_threshold is None for q in model.quantizers)


def test_bad_codebook_flags_are_usage_errors():
    result = run_module("training.fit", "--codebook_init=random")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert (
        "error: --model=vqvae --preset=cifar10: VectorQuantizerEMA expects codebook_init to be one of "
        "'uniform', 'kmeans++'. Received: codebook_init='random'"
    ) in result.stderr
    with pytest.raises(UsageError, match=r"VectorQuantizerEMA expects dead_code_threshold to be None .* "
                       r"Received: dead_code_threshold=1.5"):
        build_model("vqvae", "cifar10", None, 1.0, (32, 32, 3), "cifar10", {"dead_code_threshold": 1.5})
