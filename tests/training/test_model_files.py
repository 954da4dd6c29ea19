"""The one `.keras` loader of the command-line tools (training/model_files.py) and its use by
training.export, training.sample and training.fit --stage=prior."""

import shutil
import zipfile

import pytest

from tests.training.conftest import run_module
from training import fit_prior, model_files
from training.errors import UsageError
from training.evaluate import run as evaluate_run
from training.export import export
from training.sample import sample_grid
from vq_keras.zoo import VQVAE, PixelCNNPrior


@pytest.fixture(scope="module")
def files(tiny_model_files, tmp_path_factory):
    """A good autoencoder and prior, and every kind of bad .keras file beside them."""
    root = tmp_path_factory.mktemp("model_files")
    for name in ("model.keras", "prior.keras"):
        shutil.copy(tiny_model_files / name, root / name)
    data = (root / "model.keras").read_bytes()
    (root / "truncated.keras").write_bytes(data[: len(data) // 2])
    (root / "text.keras").write_text("not a model\n")
    (root / "empty.keras").write_bytes(b"")
    (root / "model.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
    (root / "hdf5.keras").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
    with zipfile.ZipFile(root / "no_config.keras", "w") as archive:
        archive.writestr("metadata.json", "{}")
    with zipfile.ZipFile(root / "model.keras") as good:
        members = {name: good.read(name) for name in good.namelist()}
    with zipfile.ZipFile(root / "bad_config.keras", "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content[:40] if name == "config.json" else content)
    with zipfile.ZipFile(root / "unknown_class.keras", "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content.replace(b"VQVAE", b"NoSuchModel") if name == "config.json" else content)
    flipped = bytearray(data)
    flipped[data.index(b"\x89HDF") + 2000] ^= 0x01  # inside the weights member (stored, not deflated)
    (root / "bit_flip.keras").write_bytes(bytes(flipped))
    (root / "folder").mkdir()
    (root / "folder" / "final.keras").write_bytes(data)  # a folder without model.keras
    (root / "run").mkdir()
    (root / "run" / "model.keras").write_bytes(data)
    return root


CASES = {
    "missing.keras": "--model={path}: no such file. Pass the autoencoder's .keras file written by training.fit",
    "folder": "--model={path} is a folder, not a .keras file. Pass the autoencoder's .keras file written by "
    "training.fit (<logdir>/model.keras, e.g. runs/latest/model.keras). It holds final.keras: e.g. "
    "--model={path}/final.keras.",
    "model.h5": "--model={path}: expected a .keras file (as training.fit and model.save write).",
    "empty.keras": "--model={path} is empty (0 bytes): the save or copy that wrote it did not finish.",
    "truncated.keras": "--model={path} is truncated: a zip archive whose end is missing",
    "text.keras": "--model={path} is not a .keras file (a .keras file is a zip archive; this is not a zip archive).",
    "hdf5.keras": "--model={path} is not a .keras file (a .keras file is a zip archive; this is an HDF5 file",
    "no_config.keras": "--model={path} is a zip archive but not a Keras model: it has no config.json (it holds "
    "metadata.json).",
    "bit_flip.keras": "--model={path} is a damaged .keras file: Keras could not load it (BadZipFile: Bad CRC-32 "
    "for file 'model.weights.h5'). Save or copy it again, or pass the autoencoder's .keras file",
    "bad_config.keras": "--model={path} is a damaged .keras file: Keras could not load it (JSONDecodeError: ",
    "unknown_class.keras": "--model={path} holds a model that this vq_keras cannot rebuild (Could not locate class "
    "'NoSuchModel'.",
    "prior.keras": "--model={path} holds a PixelCNNPrior, not a VQVAE or VQVAE2. Pass the autoencoder's .keras file",
}


def test_a_run_folder_or_a_zoo_entry_name_gives_its_model_file(files):
    assert model_files.located(str(files / "run"), "model.keras") == str(files / "run" / "model.keras")
    assert model_files.located("vqvae_cifar10", "model.keras").endswith("vqvae_cifar10/model.keras")
    assert model_files.load_autoencoder(str(files / "run"), "--model").count_params() > 0


def test_the_folder_of_a_run_that_has_not_finished_says_how_to_finish_it(tmp_path):
    from training.run_dir import claim_run_dir

    with claim_run_dir(tmp_path / "run", {"epochs": 2}, ("model.keras",), ()):
        (tmp_path / "run" / "backup").mkdir()  # killed: a backup, no model
    with pytest.raises(UsageError) as error:
        model_files.load_autoencoder(str(tmp_path / "run"), "--autoencoder")
    assert str(error.value).startswith(
        f"--autoencoder={tmp_path / 'run'} is the log folder of a run that has not finished: it has no model yet "
        "(its backups hold the training so far). Run its training.fit command again, with the same flags: it "
        "resumes from the newest backup"
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_bad_model_file_gets_its_own_message(files, name):
    path = files / name
    with pytest.raises(UsageError) as error:
        model_files.load_autoencoder(str(path), "--model")
    assert CASES[name].format(path=path) in str(error.value)


def test_good_files_load_without_training_state(files):
    assert isinstance(model_files.load_autoencoder(str(files / "model.keras"), "--autoencoder"), VQVAE)
    assert isinstance(model_files.load_prior(str(files / "prior.keras"), "--prior"), PixelCNNPrior)
    with pytest.raises(UsageError, match=r"^Pass --prior=PATH.keras, the prior's .keras file written by training.fit"):
        model_files.load_prior("", "--prior")
    with pytest.raises(UsageError, match=r"holds a VQVAE, not a prior \(e.g. PixelCNNPrior\) or HierarchicalPrior. Pass the prior"):
        model_files.load_prior(str(files / "model.keras"), "--prior")


# Every tool that reads a .keras file reports a truncated one as truncated, not "File not found".


def test_export_reports_a_truncated_model_as_truncated(files, tmp_path):
    with pytest.raises(UsageError, match=r"--autoencoder=.*truncated.keras is truncated: a zip archive whose end is missing"):
        export(str(files / "truncated.keras"), str(tmp_path / "exports"))


def test_sample_reports_truncated_files_as_truncated(files, tmp_path):
    with pytest.raises(UsageError, match=r"--autoencoder=.*truncated.keras is truncated"):
        sample_grid(str(files / "truncated.keras"), str(files / "prior.keras"), 4, 0, str(tmp_path / "a.png"))
    with pytest.raises(UsageError, match=r"--prior=.*empty.keras is empty \(0 bytes\)"):
        sample_grid(str(files / "model.keras"), str(files / "empty.keras"), 4, 0, str(tmp_path / "a.png"))


def test_stage2_reports_a_truncated_autoencoder_as_truncated(files):
    with pytest.raises(UsageError, match=r"--autoencoder=.*truncated.keras is truncated"):
        fit_prior.load_autoencoder(str(files / "truncated.keras"), "vqvae")


@pytest.mark.large
def test_the_tools_print_it_without_a_traceback(files, tmp_path):
    text = files / "text.keras"
    for module, args, flag in (
        ("training.export", (f"--model={text}", f"--export_base={tmp_path}"), "--autoencoder"),  # the old name
        ("training.sample", (f"--autoencoder={files / 'model.keras'}", f"--prior={text}"), "--prior"),
    ):
        result = run_module(module, *args)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
        assert result.stderr.strip().splitlines()[-1] == (
            f"error: {flag}={text} is not a .keras file (a .keras file is a zip archive; this is not a zip "
            f"archive). Pass {model_files.PRIOR_FILE if flag == '--prior' else model_files.AUTOENCODER_FILE}."
        )
    assert list(tmp_path.iterdir()) == []


def test_an_entry_of_another_kind_is_named_with_the_class_that_loads_it():
    with pytest.raises(UsageError) as error:
        model_files.load_autoencoder("pixelcnn_vqvae_cifar10", "--autoencoder")
    assert str(error.value).startswith("--autoencoder=pixelcnn_vqvae_cifar10 names no model.keras: ")
    assert "holds prior.keras (a PixelCNNPrior), not model.keras. Load it with PixelCNNPrior.from_preset(" in str(error.value)
    with pytest.raises(UsageError, match="--prior=vqvae_cifar10 names no prior.keras: .* holds model.keras \\(a VQVAE\\)"):
        model_files.load_prior("vqvae_cifar10", "--prior")


@pytest.fixture(scope="module")
def mismatched_pair(tiny_model_files, tmp_path_factory):
    """(an autoencoder, a prior recorded as trained on another autoencoder of the same shapes)."""
    import keras

    from tests.presets import TINY_AUTOENCODER
    from vq_keras.models import autoencoder_identity

    root = tmp_path_factory.mktemp("pair")
    keras.utils.set_random_seed(7)
    other = VQVAE(**TINY_AUTOENCODER)
    other.build_if_needed()
    prior = PixelCNNPrior(16, num_layers=1, num_filters=8, grid_shape=(8, 8),
                          trained_on=autoencoder_identity(other, source="other.keras"))
    prior.build_if_needed()
    prior.save(root / "prior.keras")
    return str(tiny_model_files / "model.keras"), str(root / "prior.keras")


TOOLS_TAKING_A_PAIR = {
    "sample": lambda autoencoder, prior, tmp_path, **kw: sample_grid(autoencoder, prior, 4, 0, tmp_path / "s.png", **kw),
    "evaluate": lambda autoencoder, prior, tmp_path, **kw: evaluate_run(autoencoder, prior, "cifar10_sample", **kw),
    "export": lambda autoencoder, prior, tmp_path, **kw: export(autoencoder, tmp_path / "exports", prior_path=prior, **kw),
}


@pytest.mark.parametrize("tool", sorted(TOOLS_TAKING_A_PAIR))
def test_a_prior_trained_on_another_autoencoder_is_refused_unless_asked(tool, mismatched_pair, tmp_path, capsys):
    autoencoder, prior = mismatched_pair
    with pytest.raises(UsageError) as error:
        TOOLS_TAKING_A_PAIR[tool](autoencoder, prior, tmp_path)
    assert str(error.value).startswith(
        f"--prior={prior}: This prior was trained on the codes of another autoencoder: a VQVAE (other.keras) whose "
        "weights hash to "
    )
    assert str(error.value).endswith("(--any_autoencoder uses them together anyway.)")
    TOOLS_TAKING_A_PAIR[tool](autoencoder, prior, tmp_path, any_autoencoder=True)
    assert f"Warning: --prior={prior}: This prior was trained on the codes of another autoencoder" in capsys.readouterr().out
