"""vq_keras.quiet() and VQ_KERAS_QUIET=1: a script's console without TensorFlow's native chatter."""

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

NATIVE = ("I0000", "W0000", "cuInit", "oneDNN", "cudart", "absl::InitializeLog", "Corrupt JPEG data")

# A JPEG with two stray bytes before its start-of-scan marker: libjpeg decodes it and warns on stderr.
SCRIPT = """
import numpy as np, tensorflow as tf
jpeg = tf.io.encode_jpeg(np.full((8, 8, 3), 100, np.uint8)).numpy()
scan = jpeg.index(b"\\xff\\xda")
image = tf.io.decode_jpeg(jpeg[:scan] + b"\\x12\\x34" + jpeg[scan:])
print("decoded", image.shape)
"""


def _run(code, **env):
    environment = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    environment.update(PYTHONPATH=str(REPO), **env)
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=environment, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "decoded (8, 8, 3)" in result.stdout
    return [line for line in result.stderr.splitlines() if any(mark in line for mark in NATIVE)]


@pytest.mark.large
def test_without_quiet_the_native_lines_show_and_libjpeg_warns():
    shown = _run("import vq_keras\n" + SCRIPT)
    assert any("Corrupt JPEG data: 2 extraneous bytes before marker 0xda" in line for line in shown), shown
    assert any("oneDNN" in line or "cuInit" in line or "I0000" in line for line in shown), shown


@pytest.mark.large
def test_quiet_filters_the_lines_after_it_and_the_environment_variable_those_of_the_import_too():
    after = _run("import vq_keras\nvq_keras.quiet()\n" + SCRIPT)
    assert not any("Corrupt JPEG" in line for line in after), after
    assert _run("import vq_keras\n" + SCRIPT, VQ_KERAS_QUIET="1") == []
