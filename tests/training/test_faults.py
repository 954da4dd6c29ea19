"""Fault injection: `kill -9` at random points of stage 1, stage 2, the code cache and export, then the
same command again. Every file a reader can see must be absent or whole, and the rerun must end with the
result of an uninterrupted run.

Each stage runs `--fault-points` kill points (seeds 0, 1, ...; default 1, the whole set with
`python -m pytest tests/training/test_faults.py --run_large --fault-points=10`). A kill point is a delay drawn in the
window where the stage writes (measured on the uninterrupted reference run), counted from a marker: a line
the command prints, or a temporary folder appearing. TensorBoard event files are append-only logs, not
results: a kill may cut their last record, which TensorBoard's reader skips, so they are not checked.
"""

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import REPO
from tests.training.test_resume import KILL_RUN_ARGS, _assert_same_state
from vq_keras.zoo import VQVAE

import vq_keras  # noqa: F401  (registers the classes the .keras files name)
from tests.presets import TINY_AUTOENCODER as TINY

pytestmark = pytest.mark.large  # kills and reruns the command line in subprocesses


def _stage1(root, autoencoder):
    return "training.fit", (*KILL_RUN_ARGS, f"--logdir={root / 'run'}")


def _stage2(root, autoencoder):
    return "training.fit", (
        "--stage=prior", f"--autoencoder={autoencoder}", "--num_layers=2", "--num_filters=8",
        *KILL_RUN_ARGS[:-1], f"--logdir={root / 'run'}",
    )


def _export(root, autoencoder):
    return "training.export", (f"--autoencoder={autoencoder}", f"--export_base={root / 'exports'}")


# stage: (command, marker the kill delay counts from, marker of the end of the window or None for the exit)
STAGES = {
    "stage1": (_stage1, "Training vqvae", None),
    "stage2": (_stage2, "Training the codes_prior", None),
    "code_cache": (_stage2, "Encoding the train split", "Codes cached"),
    "export": (_export, "glob:exports/.tmp-*", None),
}


class _Run:
    """A command started in `root`, its output collected by a thread (a full pipe would stall it)."""

    def __init__(self, root, stage, autoencoder):
        command, self.start_marker, self.end_marker = STAGES[stage]
        module, args = command(root, autoencoder)
        self.root = root
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO), "CI": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, *args], cwd=REPO, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        self.lines = []
        threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True).start()

    def output(self):
        return "".join(self.lines)

    def wait_for(self, marker, timeout=300):
        """Waits until `marker` (printed text, or "glob:PATTERN" under root) shows; False if the run ended first."""
        deadline = time.monotonic() + timeout
        while not self._shows(marker):
            if self.process.poll() is not None:
                return self._shows(marker)
            assert time.monotonic() < deadline, f"{marker!r} did not show in {timeout} s:\n{self.output()[-3000:]}"
            time.sleep(0.005)
        return True

    def _shows(self, marker):
        if marker.startswith("glob:"):
            return any(self.root.glob(marker[len("glob:"):]))
        return marker in self.output()


def _run_to_end(root, stage, autoencoder):
    run = _Run(root, stage, autoencoder)
    assert run.wait_for(run.start_marker)
    start = time.monotonic()
    if run.end_marker:
        assert run.wait_for(run.end_marker)
    else:
        run.process.wait(timeout=600)
    window = time.monotonic() - start
    assert run.process.wait(timeout=600) == 0, run.output()[-3000:]
    return window


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """The autoencoder that stage 2 and export read, and by stage the uninterrupted run's root
    folder and the length of its writing window."""
    base = tmp_path_factory.mktemp("faults")
    autoencoder = base / "vqvae.keras"
    model = VQVAE(**TINY)
    model.build_if_needed()
    model.save(autoencoder)
    done = {"autoencoder": autoencoder}
    for stage in STAGES:
        root = base / f"reference_{stage}"
        root.mkdir()
        done[stage] = (root, _run_to_end(root, stage, autoencoder))
    return done


def pytest_generate_tests(metafunc):
    if "fault_point" in metafunc.fixturenames:
        points = metafunc.config.getoption("fault_points")
        metafunc.parametrize("fault_point", range(points))


def _assert_absent_or_whole(root):
    """Opens every result file a reader can see under `root` (names starting with "." are never read)."""
    for path in sorted(root.rglob("*")):
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        if path.suffix == ".keras":
            keras.saving.load_model(path, compile=False)
        elif path.suffix == ".npz":
            with np.load(path) as arrays:
                [arrays[name] for name in arrays.files]
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".h5":
            with h5py.File(path) as file:
                file.visititems(lambda name, item: item[()] if isinstance(item, h5py.Dataset) else None)
        elif path.name.startswith("step-"):
            assert {"state.weights.h5", "metrics.npz", "seeds.npz", "position.json"} <= {p.name for p in path.iterdir()}
        elif path.parent.name == "exports":
            tf.saved_model.load(str(path))


def _assert_same_result(stage, root, reference):
    if stage == "stage1":
        _assert_same_state(root / "run" / "model.keras", reference / "run" / "model.keras", iterations=12)
    elif stage == "export":
        versions = sorted(int(p.name) for p in (root / "exports").iterdir() if p.name.isdigit())
        images = np.random.default_rng(0).random((2, 32, 32, 3)).astype(np.float32)
        got = tf.saved_model.load(str(root / "exports" / str(versions[-1]))).signatures["serving_default"]
        want = tf.saved_model.load(str(reference / "exports" / "1")).signatures["serving_default"]
        np.testing.assert_array_equal(got(images=images)["images"], want(images=images)["images"])
    else:
        _assert_same_state(root / "run" / "prior.keras", reference / "run" / "prior.keras", iterations=12)
        [cache] = (root / "run" / "codes").glob("*.npz")
        [expected] = (reference / "run" / "codes").glob("*.npz")
        with np.load(cache) as got, np.load(expected) as want:
            assert got.files == want.files
            for name in want.files:
                np.testing.assert_array_equal(got[name], want[name], err_msg=name)


@pytest.mark.parametrize("stage", list(STAGES))
def test_a_kill_at_any_point_leaves_whole_files_and_the_rerun_ends_as_an_uninterrupted_run(
    stage, fault_point, references, tmp_path
):
    reference, window = references[stage]
    delay = random.Random(f"{stage}-{fault_point}").uniform(0.0, window)
    run = _Run(tmp_path, stage, references["autoencoder"])
    try:
        started = run.wait_for(run.start_marker)
        time.sleep(delay if started else 0)
        run.process.send_signal(signal.SIGKILL)
        run.process.wait(timeout=60)
    finally:
        if run.process.poll() is None:
            run.process.kill()
    landed = "mid-run" if run.process.returncode == -signal.SIGKILL else "after the command ended"
    print(f"{stage} kill point {fault_point}: {delay:.2f} s after {run.start_marker!r} of a {window:.2f} s window, {landed}")
    _assert_absent_or_whole(tmp_path)
    rerun = _Run(tmp_path, stage, references["autoencoder"])
    assert rerun.process.wait(timeout=600) == 0, rerun.output()[-3000:]
    _assert_absent_or_whole(tmp_path)
    _assert_same_result(stage, tmp_path, reference)
