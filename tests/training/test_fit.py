import os

import numpy as np
import pytest
import keras
import tensorflow as tf

from tests.training.conftest import FIT_RUN_ARGS, run_module
from training.data import image_spec_or_none
from training.errors import UsageError
from training.fit import build_model, codebook_overrides
from training.flags import FREE_FLAGS


def _scalar_tags(event_dir):
    tags = set()
    for path in tf.io.gfile.glob(os.path.join(event_dir, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(value.tag for value in event.summary.value)
    return tags


@pytest.mark.large
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


@pytest.mark.large
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
        r"multiples of 4 \(e.g. 28, 32, 64\). Received: image size 218x178. Crop or resize the images. Pass "
        r"--image_size=176 to resize the images \(shorter side 176, centre-cropped to 176x176\), or "
        r"--image_size=HxW with multiples of 4."
    )):
        build_model("vqvae", "cifar10", None, 1.0, shape, "celeb_a")


@pytest.mark.large
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


@pytest.mark.large
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


def test_every_flag_is_a_recorded_setting_or_free_to_change():
    # A flag missing from both lists could change between a run and its resume unnoticed.
    from absl import flags

    import training.fit as fit

    defined = {name for name, flag in flags.FLAGS._flags().items() if flag.name == name}
    ours = {name for name in defined if flags.FLAGS.find_module_defining_flag(name) == "training.flags"}
    assert ours == {*fit.AUTOENCODER_SETTINGS, *fit.PRIOR_SETTINGS, *FREE_FLAGS}


def test_a_run_config_holds_every_flag_of_the_parsed_command_and_is_frozen():
    import copy

    from absl import flags

    import training.fit as fit

    parser = copy.deepcopy(flags.FLAGS)
    parser(["training.fit", "--stage=prior", "--prior=maskgit", "--label_dropout=0.1", "--batch_size=7"])
    config = fit.RunConfig.from_flags(parser)
    names = {*fit.AUTOENCODER_SETTINGS, *fit.PRIOR_SETTINGS, *FREE_FLAGS}
    assert {name: getattr(config, name) for name in names} == {name: parser[name].value for name in names}
    assert (config.prior, config.label_dropout, config.batch_size, config.epochs) == ("maskgit", 0.1, 7, 1)
    assert config.settings(("batch_size", "prior")) == {"batch_size": 7, "prior": "maskgit"}
    with pytest.raises(AttributeError, match="A RunConfig is frozen: build another to change --batch_size."):
        config.batch_size = 8


@pytest.mark.large
def test_rerunning_a_finished_run_reports_it_and_another_command_changes_nothing(fit_run):
    logdir, _ = fit_run
    before = {path: path.stat().st_mtime_ns for path in logdir.rglob("*")}
    same = run_module("training.fit", *FIT_RUN_ARGS, f"--logdir={logdir}")
    assert same.returncode == 0, same.stderr[-3000:]
    assert (
        f"Nothing to do: this run has finished already and saved {logdir / 'model.keras'}. Pass --overwrite to "
        "train it again, or another --logdir for a new run."
    ) in same.stdout
    other = run_module("training.fit", *FIT_RUN_ARGS, "--epochs=3", "--num_embeddings=16", f"--logdir={logdir}")
    assert other.returncode == 2 and "Traceback" not in other.stderr
    assert other.stderr.strip().splitlines()[-1] == (
        f"error: --logdir={logdir} holds a finished run with epochs=2, num_embeddings=None; this command has "
        "epochs=3, num_embeddings=16. Nothing was changed. Run the same command to see its result, pass another "
        "--logdir for a new run, or --overwrite to delete that run and start this one."
    )
    after = {path: path.stat().st_mtime_ns for path in logdir.rglob("*") if path.name != ".run.lock"}
    assert after == {path: time for path, time in before.items() if path.name != ".run.lock"}


@pytest.mark.parametrize("flag, message", [
    ("--epochs=0", "--epochs must be at least 1."),
    ("--epochs=-2", "--epochs must be at least 1."),
    ("--batch_size=0", "--batch_size must be at least 1."),
    ("--steps_per_epoch=0", "--steps_per_epoch must be at least 1 (leave it out for one pass over the data)."),
    ("--validation_steps=-1", "--validation_steps must be at least 1 (leave it out for the whole held-out split)."),
    ("--learning_rate=-1", "--learning_rate must be a positive finite number, e.g. 3e-4."),
    ("--learning_rate=nan", "--learning_rate must be a positive finite number, e.g. 3e-4."),
    ("--monitor_images=0", "--monitor_images must be at least 1."),
])
def test_bad_numbers_are_refused_by_the_flag_parser(flag, message):
    import copy

    from absl import flags

    import training.fit  # noqa: F401  (defines the flags)

    parser = copy.deepcopy(flags.FLAGS)
    with pytest.raises(flags.IllegalFlagValueError) as error:
        parser(["training.fit", flag])
    assert str(error.value).endswith(f": {message}")


@pytest.mark.large
def test_a_bad_number_stops_the_cli_before_any_work(tmp_path):
    result = run_module("training.fit", "--epochs=0", f"--logdir={tmp_path / 'run'}", timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "FATAL Flags parsing error: flag --epochs=0: --epochs must be at least 1." in result.stderr
    assert not (tmp_path / "run").exists()


def test_a_flag_of_the_other_stage_is_refused_not_ignored():
    import copy

    from absl import flags

    from training.flags import check_stage_flags

    parser = copy.deepcopy(flags.FLAGS)
    parser(["training.fit", "--stage=prior", "--num_embeddings=16", "--monitor_images=2"])
    with pytest.raises(UsageError) as error:
        check_stage_flags(parser)
    assert str(error.value) == (
        "--num_embeddings, --monitor_images only applies to --stage=autoencoder, and this is --stage=prior, which "
        "would ignore it. Drop it, or pass --stage=autoencoder."
    )
    parser = copy.deepcopy(flags.FLAGS)
    parser(["training.fit", "--num_layers=2", "--code_cache_dir=/tmp/codes"])
    with pytest.raises(UsageError, match=r"^--num_layers, --code_cache_dir only applies to --stage=prior, and"):
        check_stage_flags(parser)
    parser = copy.deepcopy(flags.FLAGS)
    parser(["training.fit", "--stage=prior", "--num_layers=2", "--seed=3"])
    check_stage_flags(parser)  # both stages' and this stage's flags pass


@pytest.mark.large
def test_naming_the_presets_own_quantizer_is_the_same_finished_run(tmp_path, capsys):
    from training import fit

    common = [f"--logdir={tmp_path / 'run'}", "--steps_per_epoch=2", "--validation_steps=1", "--batch_size=4",
              "--monitor_images=2", "--jit_compile=false"]
    for extra in ([], ["--quantizer=ema"]):
        fit.FLAGS.unparse_flags()
        fit.FLAGS(["fit", *common, *extra])
        try:
            fit.train(fit.RunConfig.from_flags(fit.FLAGS))
        finally:
            fit.FLAGS.unparse_flags()
    assert "Nothing to do: this run has finished already" in capsys.readouterr().out
