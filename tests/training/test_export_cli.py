import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from tensorflow.core.protobuf import saved_model_pb2

from tests.conftest import REPO
import training.export
from training.errors import UsageError
from training.export import export
from vq_keras.zoo import VQVAE, generate

TINY = dict(num_hiddens=16, num_residual_hiddens=8, num_residual_layers=1, embedding_dim=8, num_embeddings=32)


def _export_cli(*args, timeout=300):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "training.export", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.keras"
    model = VQVAE(**TINY)
    model.build_if_needed()
    model.save(path)
    return path


@pytest.mark.large
def test_cli_writes_the_next_version_and_prints_it(model_file, tmp_path):
    base = tmp_path / "exports" / "vqvae"
    result = _export_cli(f"--model={model_file}", f"--export_base={base}", "--image_size=16")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"SavedModel written: {base / '1'}\n" in result.stdout
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((base / "1" / "saved_model.pb").read_bytes())
    signatures = proto.meta_graphs[0].signature_def
    assert {"serving_default", "reconstruct", "reconstruct_uint8", "encode", "decode"} <= set(signatures)
    shape = [dim.size for dim in signatures["serving_default"].inputs["images"].tensor_shape.dim]
    assert shape == [-1, 16, 16, 3]
    assert os.listdir(base) == ["1"]


GENERATE_WITH_TENSORFLOW_ONLY = """
import sys
import numpy as np
import tensorflow as tf
generate = tf.saved_model.load(sys.argv[1]).signatures["generate"]
outputs = generate(
    num=tf.constant(3), seed=tf.constant(11), temperature=tf.constant(0.9), top_k=tf.constant(0),
    top_p=tf.constant(1.0), num_steps=tf.constant(0), labels=tf.constant([2, 0, 1]),
)
np.savez(sys.argv[2], **{name: value.numpy() for name, value in outputs.items()})
assert "vq_keras" not in sys.modules
"""


@pytest.mark.large
def test_cli_with_a_prior_exports_generate_which_tensorflow_alone_serves_as_the_library_generates(
    tiny_model_files, tmp_path
):
    autoencoder, prior = tiny_model_files / "model.keras", tiny_model_files / "conditional_prior.keras"
    result = _export_cli(f"--autoencoder={autoencoder}", f"--prior={prior}", f"--export_base={tmp_path / 'e'}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Signatures: serving_default (= reconstruct), reconstruct_uint8, encode, decode, generate." in result.stdout
    script = tmp_path / "generate.py"
    script.write_text(GENERATE_WITH_TENSORFLOW_ONLY)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    served = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "e" / "1"), str(tmp_path / "out.npz")],
        cwd=tmp_path, env={**env, "TF_CPP_MIN_LOG_LEVEL": "2"}, capture_output=True, text=True, timeout=300,
    )
    assert served.returncode == 0, served.stderr[-3000:]
    autoencoder, prior = keras.saving.load_model(autoencoder), keras.saving.load_model(prior)
    expected = generate(autoencoder, prior, 3, seed=11, temperature=0.9, labels=[2, 0, 1]).numpy()
    with np.load(tmp_path / "out.npz") as outputs:
        np.testing.assert_array_equal(
            outputs["codes"], prior.sample(3, labels=[2, 0, 1], temperature=0.9, seed=11).numpy()
        )
        assert outputs["images"].shape == (3, 32, 32, 3) and np.abs(outputs["images"] - expected).max() <= 1e-5


@pytest.mark.large
def test_cli_errors_are_one_paragraph_without_traceback(model_file, tmp_path):
    result = _export_cli(f"--autoencoder={model_file}", f"--export_base={tmp_path}", "--image_size=30")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert os.listdir(tmp_path) == []


def test_user_errors(model_file, tmp_path):
    with pytest.raises(UsageError, match=r"Pass --autoencoder=PATH.keras, the autoencoder written by training.fit"):
        export(None, str(tmp_path))
    with pytest.raises(UsageError, match=r"Pass --export_base=DIR, the folder TF Serving serves"):
        export(str(model_file), None)
    with pytest.raises(UsageError, match=r"--autoencoder=missing.keras: no such file. Pass the autoencoder's .keras file written by"):
        export("missing.keras", str(tmp_path))
    with pytest.raises(UsageError, match=r"--version must be a positive integer. Received: --version=0"):
        export(str(model_file), str(tmp_path), version=0)
    Path(tmp_path, "3").mkdir()
    with pytest.raises(UsageError) as error:
        export(str(model_file), str(tmp_path), version=3)
    assert str(error.value) == (
        f"Version 3 already exists at {tmp_path / '3'}. Pass --overwrite to replace it, or leave out --version "
        "to write the next free version."
    )
    with pytest.raises(UsageError) as error:
        export(str(model_file), str(tmp_path), image_size="30")
    assert str(error.value) == (
        "--image_size=30: VQVAE downsamples images by 4, so height and width must be positive multiples of 4 "
        "(e.g. 16 or 16x32). Leave out --image_size to accept any multiple of 4."
    )
    other = tmp_path / "dense.keras"
    keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]).save(other)
    with pytest.raises(UsageError, match=r"holds a Sequential, not a VQVAE or VQVAE2. Pass the autoencoder's .keras file"):
        export(str(other), str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["3", "dense.keras"]



def test_an_export_base_it_cannot_write_is_refused_before_loading_the_model(
    model_file, tmp_path, read_only_folder, monkeypatch
):
    monkeypatch.setattr(training.export, "load_autoencoder", lambda *args: pytest.fail("loaded the model"))
    file = tmp_path / "file"
    file.write_text("")
    fix = "Pass a folder you can write to (TF Serving serves it), e.g. --export_base=exports/vqvae."
    cases = {
        read_only_folder / "vqvae": f"--export_base={read_only_folder / 'vqvae'}: {read_only_folder} does not accept new files (",
        file / "exports": f"--export_base={file / 'exports'}: {file} is a file, not a folder. {fix}",
        file: f"--export_base={file}: {file} is a file, not a folder. {fix}",
    }
    for base, message in cases.items():
        with pytest.raises(UsageError) as error:
            export(str(model_file), str(base))
        assert str(error.value).startswith(message) and str(error.value).endswith(fix)
    (tmp_path / "exports").mkdir()
    (tmp_path / "exports" / "2").write_text("")
    with pytest.raises(UsageError) as error:
        export(str(model_file), str(tmp_path / "exports"), version=2)
    assert str(error.value) == (
        f"--version=2: {tmp_path / 'exports' / '2'} is a file, not a version folder. Remove it, or pass another "
        "--version (or none for the next free version)."
    )


@pytest.mark.large
def test_cli_into_a_read_only_folder_prints_an_error_not_a_traceback(model_file, read_only_folder):
    result = _export_cli(f"--model={model_file}", f"--export_base={read_only_folder}")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"error: --export_base={read_only_folder}: {read_only_folder} does not accept new files ("
    )
