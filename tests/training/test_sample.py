"""`python -m training.sample`: flags and the output file are checked before any model is
loaded or any image sampled; the grid is written atomically."""

import math

import keras
import numpy as np
import pytest

from tests.training.conftest import run_module
from training import model_files
from training.errors import UsageError
from training.sample import sample_grid
from vq_keras.zoo import generate


@pytest.fixture
def no_loading(monkeypatch):
    """Fails the test if a model is loaded: the checks must come first."""
    monkeypatch.setattr(model_files, "load_autoencoder", lambda *args: pytest.fail("loaded a model"))


FLAG_ERRORS = {
    "num_zero": (dict(num=0), "--num must be in [1, 1024]: the images are sampled as one batch and written as one "
                 "grid. Received: --num=0. For more images, run again with other --seed values."),
    "num_too_large": (dict(num=1025), "--num must be in [1, 1024]: the images are sampled as one batch and written "
                      "as one grid. Received: --num=1025."),
    "seed_negative": (dict(seed=-1), "--seed must be an integer in [0, 2**31) = [0, 2147483647]. Received: --seed=-1"),
    "seed_too_large": (dict(seed=2**31), "--seed must be an integer in [0, 2**31) = [0, 2147483647]. Received: "
                       "--seed=2147483648"),
    "temperature_zero": (dict(temperature=0.0), "--temperature must be a finite number > 0 (1 samples the prior as "
                         "trained; below 1 sharpens it, above 1 flattens it). Received: --temperature=0.0"),
    "temperature_negative": (dict(temperature=-1.0), "--temperature must be a finite number > 0 (1 samples the "
                             "prior as trained; below 1 sharpens it, above 1 flattens it). Received: --temperature=-1.0"),
    "temperature_nan": (dict(temperature=math.nan), "--temperature must be a finite number > 0 (1 samples the prior "
                        "as trained; below 1 sharpens it, above 1 flattens it). Received: --temperature=nan"),
    "temperature_inf": (dict(temperature=math.inf), "--temperature must be a finite number > 0 (1 samples the prior "
                        "as trained; below 1 sharpens it, above 1 flattens it). Received: --temperature=inf"),
    "columns_zero": (dict(columns=0), "--columns must be in [1, --num=6] (images per row), or left out for a square "
                     "grid. Received: --columns=0"),
    "columns_negative": (dict(columns=-2), "--columns must be in [1, --num=6] (images per row), or left out for a "
                         "square grid. Received: --columns=-2"),
    "columns_over_num": (dict(columns=7), "--columns must be in [1, --num=6] (images per row), or left out for a "
                         "square grid. Received: --columns=7"),
    "top_k_zero": (dict(top_k=0), "--top_k must be at least 1 (draw each code among its top_k most probable codes), "
                   "or left out to draw among all. Received: --top_k=0"),
    "top_p_zero": (dict(top_p=0.0), "--top_p must be in (0, 1] (draw among the most probable codes whose "
                   "probabilities sum to top_p), or left out to draw among all. Received: --top_p=0.0"),
    "top_p_nan": (dict(top_p=math.nan), "--top_p must be in (0, 1] (draw among the most probable codes whose "
                  "probabilities sum to top_p), or left out to draw among all. Received: --top_p=nan"),
    "num_steps_zero": (dict(num_steps=0), "--num_steps must be at least 1 (the parallel decoding steps of a masked "
                       "prior), or left out for the prior's own. Received: --num_steps=0"),
    "guidance_negative": (dict(guidance=-1.0), "--guidance must be a finite number >= 0 (the classifier-free "
                           "guidance scale: 1 samples as without it, above 1 steers each image towards its class), "
                           "or left out. Received: --guidance=-1.0"),
    "guidance_nan": (dict(guidance=math.nan), "--guidance must be a finite number >= 0 (the classifier-free "
                     "guidance scale: 1 samples as without it, above 1 steers each image towards its class), or left "
                     "out. Received: --guidance=nan"),
    "scale_zero": (dict(scale=0), "--scale must be an integer in [1, 16] (screen pixels per image pixel). "
                   "Received: --scale=0"),
    "out_empty": (dict(out=""), "--out names the PNG file to write, ending in .png (e.g. --out=grid.png). Received: "
                  "--out="),
    "out_not_png": (dict(out="grid.jpg"), "--out names the PNG file to write, ending in .png (e.g. --out=grid.png). "
                    "Received: --out=grid.jpg"),
}


@pytest.mark.parametrize("case", sorted(FLAG_ERRORS))
def test_bad_flags_are_refused_before_loading_the_models(case, no_loading, tmp_path):
    flags, message = FLAG_ERRORS[case]
    arguments = {**dict(num=6, seed=0, out=str(tmp_path / "grid.png"), temperature=1.0, columns=None), **flags}
    with pytest.raises(UsageError) as error:
        sample_grid("model.keras", "prior.keras", **arguments)
    assert str(error.value).startswith(message)
    assert list(tmp_path.iterdir()) == []


def test_an_out_it_cannot_write_is_refused_before_loading_the_models(no_loading, tmp_path, read_only_folder):
    (tmp_path / "file").write_text("")
    (tmp_path / "folder.png").mkdir()
    fix = "Pass a .png path in a folder you can write to."
    cases = {
        tmp_path: f"{tmp_path} is a folder. {fix}",
        tmp_path / "folder.png": f"{tmp_path / 'folder.png'} is a folder. {fix}",
        tmp_path / "file" / "grid.png": f"{tmp_path / 'file'} is a file, not a folder. {fix}",
        read_only_folder / "grid.png": f"{read_only_folder} does not accept new files (",
    }
    for out, problem in cases.items():
        with pytest.raises(UsageError) as error:
            sample_grid("model.keras", "prior.keras", 4, 0, str(out))
        assert str(error.value).startswith(f"--out={out}: {problem}")


def test_columns_of_a_class_conditional_grid_must_fit_its_rows(tiny_model_files, tmp_path):
    with pytest.raises(UsageError) as error:
        sample_grid(
            str(tiny_model_files / "model.keras"), str(tiny_model_files / "conditional_prior.keras"), 6, 0,
            str(tmp_path / "grid.png"), columns=3,
        )
    assert str(error.value) == (
        "A class-conditional grid has one row per class: --num=6 over 3 classes makes 2 columns, not --columns=3. "
        "Leave out --columns."
    )


def test_the_grid_replaces_the_out_file_atomically(tiny_model_files, tmp_path):
    out = tmp_path / "grid.png"
    out.write_text("an older grid")
    path, seconds = sample_grid(
        str(tiny_model_files / "model.keras"), str(tiny_model_files / "prior.keras"), 5, 0, str(out), columns=2
    )
    assert seconds > 0
    assert path == out and [p.name for p in tmp_path.iterdir()] == ["grid.png"]  # no temporary file left
    assert keras.utils.img_to_array(keras.utils.load_img(out)).shape == (3 * 32, 2 * 32, 3)


def test_the_filters_reach_the_sampler_and_a_top_k_over_the_codes_is_refused(tiny_model_files, tmp_path):
    files = (str(tiny_model_files / "model.keras"), str(tiny_model_files / "prior.keras"))
    path, _ = sample_grid(*files, 4, 3, str(tmp_path / "filtered.png"), columns=4, top_k=2, top_p=0.5)
    autoencoder, prior = (keras.saving.load_model(file) for file in files)
    expected = generate(autoencoder, prior, 4, seed=3, top_k=2, top_p=0.5).numpy()
    unfiltered = generate(autoencoder, prior, 4, seed=3).numpy()
    grid = keras.utils.img_to_array(keras.utils.load_img(path))
    np.testing.assert_array_equal(grid, np.round(np.concatenate(list(expected), axis=1) * 255))
    assert np.abs(expected - unfiltered).max() > 0.01
    with pytest.raises(UsageError, match=r"expects top_k to be None \(no filter\) or an integer in \[1, num_embeddings=16\]"):
        sample_grid(*files, 4, 0, str(tmp_path / "x.png"), top_k=17)
    with pytest.raises(UsageError, match="draws one code per step in raster order .* Received: num_steps=4"):
        sample_grid(*files, 4, 0, str(tmp_path / "x.png"), num_steps=4)
    with pytest.raises(UsageError, match=r"guidance \(classifier-free\) needs a class-conditional prior trained with "
                       r"label_dropout > 0, .* this PixelCNNPrior has num_classes=None, label_dropout=0.0"):
        sample_grid(*files, 4, 0, str(tmp_path / "x.png"), guidance=2.0)


def test_scale_repeats_each_pixel(tiny_model_files, tmp_path):
    paths = [
        sample_grid(str(tiny_model_files / "model.keras"), str(tiny_model_files / "prior.keras"), 4, 0,
                    str(tmp_path / f"x{scale}.png"), scale=scale)[0]
        for scale in (1, 3)
    ]
    small, large = (keras.utils.img_to_array(keras.utils.load_img(path)) for path in paths)
    np.testing.assert_array_equal(large, np.repeat(np.repeat(small, 3, axis=0), 3, axis=1))


@pytest.mark.large
def test_cli_prints_the_error_without_a_traceback(tiny_model_files, read_only_folder):
    result = run_module(
        "training.sample", f"--autoencoder={tiny_model_files / 'model.keras'}",
        f"--prior={tiny_model_files / 'prior.keras'}", f"--out={read_only_folder / 'grid.png'}",
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"error: --out={read_only_folder / 'grid.png'}: {read_only_folder} does not accept new files ("
    )
