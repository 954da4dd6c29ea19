"""`python -m training.fit --stage=prior` end to end on the bundled real sample, with tiny models."""

import types

import keras
import numpy as np
import pytest

import vq_keras  # noqa: F401  (registers the classes the .keras files name)
from tests.training.conftest import run_module
from tests.training.test_callbacks import _tensor_events
from training.errors import UsageError
from training.fit_prior import architecture_overrides
from vq_keras.models import autoencoder_identity
from vq_keras.zoo import VQVAE, VQVAE2, HierarchicalPrior, MaskGITPrior, PixelCNNPrior, TransformerPrior
from tests.presets import TINY_AUTOENCODER as TINY

pytestmark = pytest.mark.large  # every test runs the command line in subprocesses

TINY_PRIOR = ("--num_layers=2", "--num_filters=8", "--batch_size=8", "--validation_steps=2", "--jit_compile=false")


def save_autoencoder(model, path):
    model.build_if_needed()
    model.save(path)
    return str(path)


@pytest.fixture(scope="module")
def vqvae2_stage2(tmp_path_factory):
    """A stage-2 run for a tiny VQVAE2 and its rerun: (logdir, autoencoder path, first, second)."""
    root = tmp_path_factory.mktemp("stage2")
    autoencoder = save_autoencoder(VQVAE2(**TINY), root / "vqvae2.keras")
    args = (
        "training.fit", "--stage=prior", "--model=vqvae2", f"--autoencoder={autoencoder}",
        "--epochs=2", "--steps_per_epoch=3", *TINY_PRIOR, f"--logdir={root / 'run'}",
    )
    first = run_module(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    second = run_module(*args)
    assert second.returncode == 0, second.stderr[-3000:]
    return root / "run", autoencoder, first, second


def test_stage2_trains_and_saves_a_prior_per_level(vqvae2_stage2):
    logdir, _, first, _ = vqvae2_stage2
    prior = keras.saving.load_model(logdir / "prior.keras")
    assert isinstance(prior, HierarchicalPrior) and prior.downsampling == 8
    autoencoder = keras.saving.load_model(logdir.parent / "vqvae2.keras", compile=False)
    assert prior.trained_on == autoencoder_identity(autoencoder, source=str(logdir.parent / "vqvae2.keras"))
    top, bottom = prior.priors
    assert (top.num_embeddings, top.grid_shape, top.num_layers, top.num_filters) == (16, (4, 4), 2, 8)
    assert (bottom.condition_num_embeddings, bottom.condition_upsampling, bottom.grid_shape) == (16, 2, (8, 8))
    assert top.num_attention_layers == 2 and bottom.num_attention_layers == 0  # the cifar10_top/bottom presets
    for level in (top, bottom):
        alone = keras.saving.load_model(logdir / f"{level.name}.keras")
        assert len(alone.weights) == len(level.weights) > 0
        for saved, kept in zip(alone.weights, level.weights):
            np.testing.assert_array_equal(saved.numpy(), kept.numpy())
    assert "Encoding the train split (1200 images)" in first.stdout
    assert first.stdout.count("bits per code (uniform: 4.000)") == 2
    assert f"Saved prior: {logdir / 'prior.keras'}" in first.stdout


def test_stage2_logs_each_level_and_sample_grids(vqvae2_stage2):
    logdir, _, _, _ = vqvae2_stage2
    for level in ("top_prior", "bottom_prior"):
        for run in ("train", "validation"):
            assert _tensor_events(logdir / level / run, "epoch_bits_per_code"), (level, run)
    # Images are drawn once every level has a prior: while the bottom one trains.
    assert not (logdir / "top_prior" / "samples").exists()
    grids = _tensor_events(logdir / "bottom_prior" / "samples", "samples")
    assert sorted(grids) == [0, 1]
    width, height = (int(d) for d in grids[1][:2])
    assert (height, width) == (4 * 32, 4 * 32)  # 16 samples, 4 x 4


def test_the_rerun_reuses_the_code_cache_and_the_trained_levels(vqvae2_stage2):
    logdir, _, _, second = vqvae2_stage2
    assert "Codes read from the cache" in second.stdout and "Encoding" not in second.stdout
    assert second.stdout.count("already trained") == 2
    assert "Epoch" not in second.stdout


def test_a_level_taken_out_of_a_saved_prior_is_reused(vqvae2_stage2, tmp_path):
    logdir, autoencoder, _, _ = vqvae2_stage2
    top = keras.saving.load_model(logdir / "prior.keras").priors[0]  # never compiled on its own
    (tmp_path / "run").mkdir()
    top.save(tmp_path / "run" / "top_prior.keras")
    result = run_module(
        "training.fit", "--stage=prior", "--model=vqvae2", f"--autoencoder={autoencoder}", "--epochs=1",
        "--steps_per_epoch=2", *TINY_PRIOR, f"--code_cache_dir={logdir / 'codes'}", f"--logdir={tmp_path / 'run'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("already trained") == 1 and result.stdout.count("bits per code (uniform") == 2
    reused = keras.saving.load_model(tmp_path / "run" / "prior.keras").priors[0]
    for got, want in zip(reused.weights, top.weights):
        np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_a_level_file_that_does_not_fit_the_codes_is_refused(vqvae2_stage2, tmp_path):
    logdir, autoencoder, _, _ = vqvae2_stage2
    top = keras.saving.load_model(logdir / "prior.keras").priors[0]
    (tmp_path / "run").mkdir()
    top.save(tmp_path / "run" / "top_prior.keras")
    top.save(tmp_path / "run" / "bottom_prior.keras")  # the top prior where the bottom one belongs
    result = run_module(
        "training.fit", "--stage=prior", "--model=vqvae2", f"--autoencoder={autoencoder}", "--epochs=1",
        "--steps_per_epoch=2", *TINY_PRIOR, f"--code_cache_dir={logdir / 'codes'}", f"--logdir={tmp_path / 'run'}",
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path / 'run' / 'bottom_prior.keras'} is a prior with grid_shape=(4, 4), "
        "condition_num_embeddings=None, condition_upsampling=1, but this autoencoder and data set need "
        "grid_shape=(8, 8), condition_num_embeddings=16, condition_upsampling=2. Delete or move that file to "
        "train the level, or pass another --logdir."
    )
    assert not (tmp_path / "run" / "prior.keras").exists()


def test_sample_writes_a_seeded_png_grid(vqvae2_stage2, tmp_path):
    logdir, autoencoder, _, _ = vqvae2_stage2
    pngs = []
    for seed, name in ((0, "a.png"), (0, "b.png"), (1, "c.png")):
        result = run_module(
            "training.sample", f"--autoencoder={autoencoder}", f"--prior={logdir / 'prior.keras'}",
            "--num=6", "--columns=3", f"--seed={seed}", f"--out={tmp_path / name}",
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"Wrote 6 images: {tmp_path / name}" in result.stdout
        pngs.append(keras.utils.img_to_array(keras.utils.load_img(tmp_path / name)))
    assert pngs[0].shape == (2 * 32, 3 * 32, 3)
    np.testing.assert_array_equal(pngs[0], pngs[1])
    assert np.abs(pngs[0] - pngs[2]).max() > 0


def test_class_conditional_stage2_and_one_row_per_class(tmp_path):
    autoencoder = save_autoencoder(VQVAE(**TINY), tmp_path / "vqvae.keras")
    result = run_module(
        "training.fit", "--stage=prior", f"--autoencoder={autoencoder}", "--class_conditional",
        "--epochs=1", "--steps_per_epoch=2", *TINY_PRIOR, f"--logdir={tmp_path / 'run'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    prior = keras.saving.load_model(tmp_path / "run" / "prior.keras")
    assert isinstance(prior, PixelCNNPrior) and prior.num_classes == 10 and prior.grid_shape == (8, 8)
    sampled = run_module(
        "training.sample", f"--autoencoder={autoencoder}", f"--prior={tmp_path / 'run' / 'prior.keras'}",
        "--num=6", "--labels=3,7", f"--out={tmp_path / 'rows.png'}",
    )
    assert sampled.returncode == 0, sampled.stderr[-3000:]
    assert keras.utils.img_to_array(keras.utils.load_img(tmp_path / "rows.png")).shape == (2 * 32, 3 * 32, 3)
    uneven = run_module(
        "training.sample", f"--autoencoder={autoencoder}", f"--prior={tmp_path / 'run' / 'prior.keras'}",
        "--num=64", f"--out={tmp_path / 'x.png'}",
    )
    assert uneven.returncode == 2
    assert "--num=64 is not a multiple of the 10 classes. Use e.g. --num=80" in uneven.stderr


def test_stage2_usage_errors(tmp_path):
    autoencoder = save_autoencoder(VQVAE2(**TINY), tmp_path / "vqvae2.keras")
    cases = [
        (("--stage=prior",), "--stage=prior needs --autoencoder=PATH.keras"),
        (("--stage=prior", f"--autoencoder={tmp_path / 'none.keras'}"), "none.keras: no such file"),
        (
            ("--stage=prior", f"--autoencoder={autoencoder}"),
            "holds a VQVAE2, but --model=vqvae expects a VQVAE. Pass --model=vqvae2.",
        ),
    ]
    for args, message in cases:
        result = run_module("training.fit", *args, f"--logdir={tmp_path / 'run'}")
        assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]
        assert "Traceback" not in result.stderr


def test_stage2_trains_transformer_priors_for_each_level_of_a_vqvae2(tmp_path):
    autoencoder = save_autoencoder(VQVAE2(**TINY), tmp_path / "vqvae2.keras")
    result = run_module(
        "training.fit", "--stage=prior", "--prior=transformer", "--model=vqvae2", f"--autoencoder={autoencoder}",
        "--class_conditional", "--label_dropout=0.2", "--epochs=1", "--steps_per_epoch=2", "--num_layers=1",
        "--hidden_dim=8", "--num_heads=2", "--batch_size=8", "--validation_steps=2", "--mixed_precision=mixed_bfloat16",
        f"--logdir={tmp_path / 'run'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(TransformerPrior, 16 codes on 8x8 grids, mixed_bfloat16)" in result.stdout
    prior = keras.saving.load_model(tmp_path / "run" / "prior.keras")
    top, bottom = prior.priors
    assert top.dtype_policy.name == bottom.blocks[0].dtype_policy.name == "float32"  # trained in bfloat16
    assert top.label_dropout == bottom.label_dropout == 0.2
    assert isinstance(top, TransformerPrior) and isinstance(bottom, TransformerPrior)
    assert (top.grid_shape, bottom.grid_shape, bottom.condition_upsampling) == ((4, 4), (8, 8), 2)
    assert top.num_classes == bottom.num_classes == 10 and top.hidden_dim == 8 and top.num_layers == 1
    sampled = run_module(
        "training.sample", f"--autoencoder={autoencoder}", f"--prior={tmp_path / 'run' / 'prior.keras'}",
        "--num=4", "--labels=3,7", "--top_k=5", "--guidance=3", f"--out={tmp_path / 'rows.png'}",
    )
    assert sampled.returncode == 0, sampled.stderr[-3000:]
    assert keras.utils.img_to_array(keras.utils.load_img(tmp_path / "rows.png")).shape == (2 * 32, 2 * 32, 3)


@pytest.mark.parametrize(
    "flags, message",
    [
        (dict(prior="transformer", num_filters=8), "--num_filters does not apply to --prior=transformer "
         "(TransformerPrior), which would ignore it: it sets --prior=pixelcnn. Drop it, or pass --prior=pixelcnn."),
        (dict(prior="pixelcnn", hidden_dim=8), "--hidden_dim does not apply to --prior=pixelcnn (PixelCNNPrior), "
         "which would ignore it: it sets --prior=transformer|maskgit. Drop it, or pass --prior=transformer."),
        (dict(prior="maskgit", label_dropout=0.1), "--label_dropout=0.1 drops class labels, and the priors get none "
         "without --class_conditional. Pass --class_conditional, or drop --label_dropout."),
    ],
)
def test_architecture_flags_that_do_not_fit_the_prior_kind_are_refused(flags, message):
    given = {
        **dict(num_layers=None, num_filters=None, hidden_dim=None, num_heads=None, dropout=None, label_dropout=None),
        "class_conditional": False, **flags,
    }
    with pytest.raises(UsageError) as error:
        architecture_overrides(types.SimpleNamespace(**given))
    assert str(error.value) == message
    assert architecture_overrides(types.SimpleNamespace(**{**given, "num_filters": None, "hidden_dim": None, "label_dropout": None})) == {}


def test_stage2_trains_a_maskgit_prior_that_reports_its_masked_token_loss(tmp_path):
    autoencoder = save_autoencoder(VQVAE(**TINY), tmp_path / "vqvae.keras")
    result = run_module(
        "training.fit", "--stage=prior", "--prior=maskgit", f"--autoencoder={autoencoder}", "--epochs=1",
        "--steps_per_epoch=2", "--num_layers=1", "--hidden_dim=8", "--num_heads=2", "--batch_size=8",
        "--validation_steps=2", f"--logdir={tmp_path / 'run'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "The codes prior on the validation codes: masked-token loss " in result.stdout
    prior = keras.saving.load_model(tmp_path / "run" / "prior.keras")
    assert isinstance(prior, MaskGITPrior) and prior.grid_shape == (8, 8) and prior.num_steps == 8
    sampled = run_module(
        "training.sample", f"--autoencoder={autoencoder}", f"--prior={tmp_path / 'run' / 'prior.keras'}",
        "--num=4", "--num_steps=2", f"--out={tmp_path / 'grid.png'}",
    )
    assert sampled.returncode == 0, sampled.stderr[-3000:]


def test_running_the_stage_2_module_itself_says_which_tool_to_run():
    result = run_module("training.fit_prior")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "error: training.fit_prior is stage 2 of training.fit, not a tool of its own. Run: python -m training.fit " \
           "--stage=prior" in result.stderr


@pytest.mark.large
def test_a_stage2_run_on_a_folder_whose_files_changed_is_another_run(tmp_path):
    import tensorflow as tf

    images = tmp_path / "images"
    images.mkdir()
    for i in range(20):
        tf.io.write_file(str(images / f"{i:02d}.png"), tf.io.encode_png(np.full((32, 32, 3), 10 * i, np.uint8)))
    autoencoder = save_autoencoder(VQVAE(**TINY), tmp_path / "vqvae.keras")
    args = (
        "training.fit", "--stage=prior", f"--autoencoder={autoencoder}", f"--dataset=folder:{images}",
        "--epochs=1", "--steps_per_epoch=2", "--num_layers=1", "--num_filters=8", "--batch_size=4",
        "--validation_steps=1", "--jit_compile=false", f"--logdir={tmp_path / 'run'}",
    )
    first = run_module(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    (images / "03.png").unlink()
    changed = run_module(*args)
    assert changed.returncode == 2 and "Traceback" not in changed.stderr
    assert f"error: --logdir={tmp_path / 'run'} holds a finished run with data_sha256=" in changed.stderr
