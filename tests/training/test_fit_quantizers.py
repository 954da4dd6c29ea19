"""training.fit --quantizer=vq|ema|fsq|rvq and the quantizer flags: what reaches the model,
the errors for a flag that does not fit the kind, and each new kind end to end (trained on
the bundled CIFAR-10 sample, saved, reloaded, exported)."""

import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO
from tests.training.conftest import run_module
from training.errors import UsageError
from training.fit import AUTOENCODER_SETTINGS, build_model, codebook_overrides
from vq_keras.layers import FiniteScalarQuantizer, ResidualVectorQuantizer, VectorQuantizer, VectorQuantizerEMA


def _flags(**given):
    names = ("quantizer", "fsq_levels", "num_quantizers", "codebook_dim", "cosine", "gradient", "num_embeddings",
             "dead_code_threshold", "codebook_init")
    return type("Flags", (), {"model": "vqvae", "preset": "cifar10", **dict.fromkeys(names), **given})


def _model(model="vqvae", **given):
    flags = _flags(model=model, **given)
    return build_model(model, "cifar10", None, 1.0, (32, 32, 3), "cifar10", codebook_overrides(flags))


def test_every_quantizer_flag_is_a_recorded_setting():
    quantizer_flags = {"quantizer", "fsq_levels", "num_quantizers", "codebook_dim", "cosine", "gradient"}
    assert quantizer_flags <= set(AUTOENCODER_SETTINGS)


def test_flag_values_reach_the_quantizer_of_every_level():
    fsq = _model(quantizer="fsq", fsq_levels=["8", "8", "8", "5", "5", "5"])
    assert isinstance(fsq.quantizer, FiniteScalarQuantizer) and fsq.quantizer.levels == (8, 8, 8, 5, 5, 5)
    assert (fsq.embedding_dim, fsq.num_embeddings) == (6, 64000)
    assert isinstance(_model(quantizer="fsq").quantizer, FiniteScalarQuantizer)  # the paper's (8, 5, 5, 5)
    rvq = _model("vqvae2", quantizer="rvq", num_quantizers=3, num_embeddings=64, dead_code_threshold=0.1)
    for layer in rvq.quantizers:
        assert isinstance(layer, ResidualVectorQuantizer)
        assert (layer.num_quantizers, layer.num_embeddings, layer.dead_code_threshold) == (3, 64, 0.1)
    assert [layer.name for layer in rvq.quantizers] == ["quantizer_top", "quantizer_bottom"]
    ema = _model(codebook_dim=8, cosine=True, gradient="rotation")  # the preset's kind: ema
    assert isinstance(ema.quantizer, VectorQuantizerEMA) and ema.quantizer.decay == 0.99
    assert (ema.quantizer.codebook_dim, ema.quantizer.use_cosine_similarity, ema.quantizer.gradient) == (
        8, True, "rotation"
    )
    vq = _model(quantizer="vq")
    assert type(vq.quantizer) is VectorQuantizer and vq.get_config()["quantizer"] == "vq"  # by name: no layer


@pytest.mark.parametrize(
    "given, message",
    [
        (dict(quantizer="ema", fsq_levels=["8", "5"]), "--fsq_levels does not apply to --quantizer=ema, which would "
         "ignore it: it sets --quantizer=fsq. Drop it, or pass --quantizer=fsq."),
        (dict(fsq_levels=["8", "5"]), "--fsq_levels does not apply to --quantizer=ema"),  # the preset's kind
        (dict(quantizer="fsq", num_embeddings=512), "--num_embeddings does not apply to --quantizer=fsq, which "
         "would ignore it: it sets --quantizer=ema|vq|rvq."),
        (dict(quantizer="rvq", num_quantizers=2, cosine=True), "--cosine does not apply to --quantizer=rvq"),
        (dict(quantizer="vq", num_quantizers=2), "--num_quantizers does not apply to --quantizer=vq"),
        (dict(quantizer="rvq"), "--quantizer=rvq (ResidualVectorQuantizer) needs --num_quantizers (the number of residual stages, e.g. 4)."),
        (dict(quantizer="lfq"), "Unknown quantizer 'lfq' (--quantizer). Known quantizers: ema, vq, fsq, rvq."),
        (dict(quantizer="fsq", fsq_levels=["8", "x"]), "--fsq_levels expects integers separated by commas, e.g. "
         "8,5,5,5. Received: 8,x"),
    ],
)
def test_a_flag_that_does_not_fit_the_quantizer_is_a_usage_error(given, message):
    with pytest.raises(UsageError) as error:
        codebook_overrides(_flags(**given))
    assert message in str(error.value)


@pytest.mark.parametrize(
    "given, message",
    [
        (dict(quantizer="fsq", fsq_levels=["8", "1"]), "FiniteScalarQuantizer expects every level to be an integer "
         "of at least 2 (a channel with one level carries no information). Received: levels=(8, 1)"),
        (dict(codebook_dim=65), "VectorQuantizerEMA expects codebook_dim to be None (look codes up in the "
         "embedding_dim space) or an integer in [1, embedding_dim=64]"),
        (dict(quantizer="rvq", num_quantizers=0), "ResidualVectorQuantizer expects num_quantizers to be a positive "
         "integer. Received: num_quantizers=0"),
    ],
)
def test_bad_quantizer_values_are_the_layers_errors(given, message):
    with pytest.raises(UsageError) as error:
        _model(**given)
    assert str(error.value).startswith("--model=vqvae --preset=cifar10: ") and message in str(error.value)


def test_stage_2_refuses_residual_codes_with_the_reason(tmp_path):
    from training.fit_prior import load_autoencoder
    from vq_keras.zoo import VQVAE

    model = VQVAE(quantizer=ResidualVectorQuantizer(2, 16, 4), num_hiddens=8, num_residual_hiddens=4,
                  num_residual_layers=1)
    model.build_if_needed()
    model.save(tmp_path / "model.keras")
    with pytest.raises(UsageError, match=r"--stage=prior \(--autoencoder=.*model.keras\) does not support "
                                         r"ResidualVectorQuantizer codes yet: they have 2 codes per position"):
        load_autoencoder(str(tmp_path / "model.keras"), "vqvae")


@pytest.mark.large
def test_the_command_line_says_error_for_a_flag_of_another_kind():
    result = run_module("training.fit", "--quantizer=ema", "--fsq_levels=8,5,5,5")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "error: --fsq_levels does not apply to --quantizer=ema" in result.stderr


END_TO_END = textwrap.dedent(
    """
    import os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import keras, numpy as np, tensorflow as tf
    from training import fit
    from vq_keras.export import export_saved_model

    root = sys.argv[1]
    images = np.random.default_rng(0).uniform(size=(4, 32, 32, 3)).astype("float32")
    for kind, args in (
        ("fsq", ["--quantizer=fsq", "--fsq_levels=5,5,5"]),
        ("rvq", ["--quantizer=rvq", "--num_quantizers=2", "--num_embeddings=32", "--dead_code_threshold=0.1"]),
        ("vq", ["--quantizer=vq", "--codebook_dim=8", "--cosine", "--gradient=rotation", "--num_embeddings=32"]),
    ):
        fit.FLAGS.unparse_flags()
        fit.FLAGS(["fit", f"--logdir={root}/{kind}", "--steps_per_epoch=2", "--validation_steps=1", "--batch_size=4",
                   "--monitor_images=2", "--jit_compile=false", *args])
        path = fit.train(fit.RunConfig.from_flags(fit.FLAGS))  # trains, saves model.keras and checks its reload
        model = keras.saving.load_model(path)
        assert model.optimizer.iterations.numpy() == 2
        codes = model.encode(images)
        np.testing.assert_allclose(model.decode(codes), model.reconstruct(images), atol=1e-6)
        served = tf.saved_model.load(export_saved_model(model, f"{root}/{kind}_export", image_size=32))
        decoded = served.signatures["decode"](codes=codes)["images"].numpy()
        np.testing.assert_allclose(decoded, model.reconstruct(images).numpy(), atol=1e-5)
        print(kind, type(model.quantizer).__name__, tuple(codes.shape), "trained, reloaded, exported")
    """
)


@pytest.mark.large
def test_each_new_quantizer_trains_saves_reloads_and_exports_from_the_command_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", END_TO_END, str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=600,
        env={"PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "fsq FiniteScalarQuantizer (4, 8, 8) trained, reloaded, exported" in result.stdout
    assert "rvq ResidualVectorQuantizer (4, 8, 8, 2) trained, reloaded, exported" in result.stdout
    assert "vq VectorQuantizer (4, 8, 8) trained, reloaded, exported" in result.stdout
