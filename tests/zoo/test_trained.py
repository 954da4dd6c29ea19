"""Trained presets: names, folders and files; errors; the wheel and sdist carry the entries."""

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile

import numpy as np
import pytest

from tests.conftest import REPO, SAMPLE_BITS_MARGIN, SAMPLE_MSE_MARGIN
from training.data.pipeline import SAMPLE_PATH
from vq_keras.zoo import VQVAE, VQVAE2, HierarchicalPrior, PixelCNNPrior
from vq_keras.zoo._trained import trained_entries
from tests.presets import TINY_AUTOENCODER as TINY

SHIPPED = {"vqvae_cifar10": VQVAE, "vqvae2_cifar10": VQVAE2, "pixelcnn_vqvae_cifar10": PixelCNNPrior,
           "pixelcnn_vqvae2_cifar10": HierarchicalPrior}


def test_each_class_lists_its_own_entries_beside_its_architectures():
    for name, cls in SHIPPED.items():
        assert cls.presets()[name].startswith("trained: ")
        assert all(kind.startswith("architecture") for other, kind in cls.presets().items() if other in cls.PRESETS)
        assert [other for other in SHIPPED if other in cls.presets()] == [name]


@pytest.mark.parametrize("as_file", [False, True])
def test_a_run_folder_or_its_file_loads_as_saved(tmp_path, as_file):
    model = VQVAE(**TINY)
    model.build_if_needed()
    model.save(tmp_path / "model.keras")
    loaded = VQVAE.from_preset(tmp_path / "model.keras" if as_file else str(tmp_path))
    images = np.random.default_rng(0).random((2, 16, 16, 3)).astype("float32")
    np.testing.assert_array_equal(loaded.encode(images), model.encode(images))


def test_an_entry_of_another_class_names_the_class_that_loads_it():
    with pytest.raises(ValueError, match="holds a VQVAE2, not a VQVAE. Load it with VQVAE2.from_preset"):
        VQVAE.from_preset("vqvae2_cifar10")


def test_an_unknown_name_lists_architectures_and_trained_entries():
    with pytest.raises(ValueError) as error:
        VQVAE.from_preset("vqvae_cifar100")
    assert str(error.value) == (
        "Unknown VQVAE preset 'vqvae_cifar100'. Architecture presets: cifar10; trained: "
        f"{', '.join(name for name in VQVAE.presets() if name != 'cifar10')}; or a folder holding model.keras."
    )
    assert "vqvae_cifar10" in str(error.value) and "vqvae2_cifar10" not in str(error.value)


def test_trained_weights_take_no_overrides():
    with pytest.raises(ValueError, match=r"takes no overrides. Received: \['num_embeddings'\]"):
        VQVAE.from_preset("vqvae_cifar10", num_embeddings=1024)


def test_a_folder_without_the_weights_file_says_what_it_expected(tmp_path):
    with pytest.raises(ValueError, match=f"No prior.keras at {tmp_path}/prior.keras: expected a zoo entry folder"):
        PixelCNNPrior.from_preset(tmp_path)


@pytest.fixture(scope="module")
def built_package(tmp_path_factory):
    """The wheel and sdist built from a copy of the repository's packaged files (the build
    writes build/ and egg-info where it runs)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("setup.py", "MANIFEST.in", "README.md"):
        shutil.copy(REPO / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "runs")
    for name in ("vq_keras", "zoo", "training"):
        shutil.copytree(REPO / name, source / name, ignore=ignore)
    dist = tmp_path_factory.mktemp("dist")
    for command in (["-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), "."],
                    ["setup.py", "-q", "sdist", "-d", str(dist)]):
        result = subprocess.run([sys.executable, *command], cwd=source, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-3000:]
    return next(dist.glob("*.whl")), next(dist.glob("*.tar.gz"))


def shipped_files():
    return [
        path.relative_to(REPO / "zoo").as_posix() for path in sorted((REPO / "zoo").glob("*/*"))
        if path.name in ("model.keras", "prior.keras", "results.json", "recipe.flags", "README.md")
    ]


@pytest.mark.large
def test_the_wheel_and_sdist_carry_every_entry(built_package):
    wheel, sdist = built_package
    assert set(trained_entries()) == set(SHIPPED) | {path.split("/")[0] for path in shipped_files()}
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert {f"vq_keras/trained/{path}" for path in shipped_files()} <= names
    with tarfile.open(sdist) as archive:
        members = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {f"zoo/{path}" for path in shipped_files()} <= members


@pytest.mark.large
def test_the_installed_wheel_loads_the_presets_by_name_outside_the_repository(built_package, tmp_path):
    wheel, _ = built_package
    target = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    script = (
        "import vq_keras, numpy as np\n"
        "from vq_keras.zoo import VQVAE, VQVAE2, PixelCNNPrior, HierarchicalPrior, generate\n"
        "print(vq_keras.__file__)\n"
        "model = VQVAE2.from_preset('vqvae2_cifar10')\n"
        "images = generate(model, HierarchicalPrior.from_preset('pixelcnn_vqvae2_cifar10'), num=2, seed=0)\n"
        "assert images.shape == (2, 32, 32, 3), images.shape\n"
        "VQVAE.from_preset('vqvae_cifar10'); PixelCNNPrior.from_preset('pixelcnn_vqvae_cifar10')\n"
        "print(VQVAE.presets()['vqvae_cifar10'])\n"
        # The card's figures through the installed library, on the bundled real CIFAR-10 sample.
        "from vq_keras.evaluation import evaluate\n"
        f"arrays = np.load({str(SAMPLE_PATH)!r})\n"
        "variance = (arrays['train_images'] / 255.0).var()\n"
        "results = evaluate(VQVAE.from_preset('vqvae_cifar10'), [arrays['test_images'].astype('float32') / 255.0],\n"
        "                   variance, prior=PixelCNNPrior.from_preset('pixelcnn_vqvae_cifar10'))\n"
        "print(results['mse_over_variance'], results['levels']['codes']['bits_per_code'])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(target), "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    installed_at, headline, figures = result.stdout.strip().splitlines()[-3:]
    assert installed_at.startswith(str(target))
    assert headline.startswith("trained: MSE/variance 0.05")
    card = json.loads((REPO / "zoo" / "pixelcnn_vqvae_cifar10" / "results.json").read_text())
    mse, bits = map(float, figures.split())
    assert mse == pytest.approx(card["mse_over_variance"], rel=SAMPLE_MSE_MARGIN)
    assert abs(bits - card["levels"]["codes"]["bits_per_code"]) < SAMPLE_BITS_MARGIN


def test_the_headline_of_a_prior_and_of_the_classifier_gives_their_figures(tmp_path):
    from vq_keras.zoo._trained import headline

    results = {"dataset": "cifar10", "split": "test", "levels": {"codes": {"bits_per_code": 6.7061}},
               "samples": {"num_samples": 1000, "frechet_distance": 12.345, "real_frechet_distance": 1.5,
                           "classifier": "classifier_cifar10"}}
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert headline(tmp_path) == (
        "trained: 6.71 bits per code on cifar10 test; 1000 samples at Frechet distance 12.35 (held-out images "
        "1.50) on classifier_cifar10's features"
    )
    (tmp_path / "results.json").write_text(json.dumps({"dataset": "cifar10", "split": "test", "test_accuracy": 0.8512}))
    assert headline(tmp_path) == "trained: accuracy 85.1% on cifar10 test"


@pytest.mark.parametrize("name", [None, ""])
def test_from_preset_without_a_name_says_what_it_takes(name):
    with pytest.raises(ValueError, match=rf"VQVAE.from_preset expects a preset name \(cifar10\), a trained entry's name "
                                         rf"\(vqvae_cifar10.*\), or a folder or .keras path. Received: {name!r}"):
        VQVAE.from_preset(name)


def test_from_preset_names_the_class_of_an_entry_of_another_kind(tmp_path):
    with pytest.raises(ValueError, match=r"holds prior.keras \(a PixelCNNPrior\), not model.keras. Load it with "
                                         r"PixelCNNPrior.from_preset\('pixelcnn_vqvae_cifar10'\)"):
        VQVAE.from_preset("pixelcnn_vqvae_cifar10")
    with pytest.raises(ValueError, match=f"No such file: {tmp_path / 'x.keras'}: expected a zoo entry folder"):
        VQVAE.from_preset(str(tmp_path / "x.keras"))
