import json
import os
import random
import signal
import subprocess
import sys
import time

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import REPO
from tests.training.conftest import run_module
from training.errors import TrainingDiverged, UsageError
from training.resume import Backups, StopOnNonFiniteLoss, fit_resumable
from vq_keras.atomic import atomic_directory

import vq_keras  # noqa: F401  (registers the classes model.keras files name)

KILL_RUN_ARGS = (
    "--epochs=2", "--steps_per_epoch=6", "--validation_steps=1", "--batch_size=4",
    "--jit_compile=false", "--backup_every_steps=2", "--monitor_images=2",
)


def _start_fit(logdir, output, args=KILL_RUN_ARGS):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO), "CI": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "training.fit", *args, f"--logdir={logdir}"],
        cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT,
    )


def _backups(run_dir):
    folder = run_dir / "backup"
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("step-")) if folder.is_dir() else []


def _kill_after_first_backup(process, run_dir, delay, timeout=240):
    deadline = time.monotonic() + timeout
    while not _backups(run_dir):
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"no backup appeared (exit code {process.poll()})")
        time.sleep(0.02)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    return process.wait(timeout=30)


def _state(path):
    model = keras.saving.load_model(path)
    weights = {v.path: np.asarray(v) for v in model.weights}
    optimizer = {v.path: np.asarray(v) for v in model.optimizer.variables}
    return weights, optimizer


def _kill_resume_and_reference(tmp_path, args, run_dir=lambda logdir: logdir):
    """Runs `training.fit args` twice at once, SIGKILLs one after its first backup in
    run_dir(logdir), reruns it to the end: (resumed logdir, reference logdir, resumed stdout)."""
    delay = random.Random().uniform(0.0, 0.4)  # any kill point must do; steps take ~0.1 s
    killed_dir, reference_dir = tmp_path / "killed", tmp_path / "reference"
    with open(tmp_path / "killed.log", "w") as killed_log, open(tmp_path / "reference.log", "w") as reference_log:
        reference = _start_fit(reference_dir, reference_log, args)
        killed = _start_fit(killed_dir, killed_log, args)
        try:
            assert _kill_after_first_backup(killed, run_dir(killed_dir), delay) == -signal.SIGKILL
            assert reference.wait(timeout=400) == 0, (tmp_path / "reference.log").read_text()[-3000:]
        finally:
            for process in (killed, reference):
                if process.poll() is None:
                    process.kill()
                    process.wait()
    left = _backups(run_dir(killed_dir))
    assert left, f"the killed run left no backup (killed {delay:.2f} s after the first)"
    resumed = run_module("training.fit", *args, f"--logdir={killed_dir}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Resuming from backup {run_dir(killed_dir) / 'backup' / left[-1]}" in resumed.stdout
    assert not (run_dir(killed_dir) / "backup").exists()
    return killed_dir, reference_dir, resumed.stdout


def _assert_same_state(path, expected_path, iterations):
    weights, optimizer = _state(path)
    expected_weights, expected_optimizer = _state(expected_path)
    assert weights.keys() == expected_weights.keys() and optimizer.keys() == expected_optimizer.keys()
    assert int(optimizer["adam/iteration"]) == iterations
    for name in weights:
        np.testing.assert_allclose(weights[name], expected_weights[name], rtol=0, atol=1e-6, err_msg=name)
    for name in optimizer:
        np.testing.assert_allclose(optimizer[name], expected_optimizer[name], rtol=0, atol=1e-6, err_msg=name)
    return weights


@pytest.mark.large
def test_sigkilled_run_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path):
    killed_dir, reference_dir, _ = _kill_resume_and_reference(tmp_path, KILL_RUN_ARGS)
    weights = _assert_same_state(killed_dir / "model.keras", reference_dir / "model.keras", iterations=12)
    assert any("ema_cluster_size" in name for name in weights)  # non-trainable EMA statistics compared too


@pytest.mark.large
def test_sigkilled_stage2_resumes_to_the_prior_of_an_uninterrupted_run(tmp_path):
    from vq_keras.zoo import VQVAE

    autoencoder = VQVAE(num_hiddens=8, num_residual_hiddens=4, num_residual_layers=1, embedding_dim=4, num_embeddings=16)
    autoencoder.build_if_needed()
    autoencoder.save(tmp_path / "vqvae.keras")
    args = (
        "--stage=prior", f"--autoencoder={tmp_path / 'vqvae.keras'}", "--num_layers=2", "--num_filters=8",
        *KILL_RUN_ARGS[:-1],  # not --monitor_images, a stage-1 flag
    )
    killed_dir, reference_dir, resumed = _kill_resume_and_reference(tmp_path, args, lambda d: d / "codes_prior")
    assert "Codes read from the cache" in resumed  # the killed run had cached them
    _assert_same_state(killed_dir / "prior.keras", reference_dir / "prior.keras", iterations=12)


@pytest.mark.large
def test_non_finite_loss_stops_naming_the_step_and_keeps_the_last_good_backup(tmp_path):
    logdir = tmp_path / "run"
    result = run_module(
        "training.fit", "--epochs=1", "--steps_per_epoch=6", "--batch_size=4", "--jit_compile=false",
        "--validation_steps=1", "--monitor_images=2", "--backup_every_steps=1", "--learning_rate=1e10",
        f"--logdir={logdir}",
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("error: Training stopped at the first non-finite loss: epoch 1, batch ")
    step = int(message.split("global step ")[1].split(" ")[0])
    assert "loss=" in message and "reconstruction_loss=" in message and "vq_loss=" in message
    assert (
        f"The last good backup, of global step {step - 1}, is kept in {logdir / 'backup' / f'step-{step - 1:09d}'}; "
        "rerunning the same command resumes from it."
    ) in message
    assert not (logdir / "model.keras").exists()

    backups = _backups(logdir)
    assert backups[-1] == f"step-{step - 1:09d}"  # every step before the bad one was backed up
    position = json.loads((logdir / "backup" / backups[-1] / "position.json").read_text())
    assert position["step"] == step - 1
    with h5py.File(logdir / "backup" / backups[-1] / "state.weights.h5") as file:
        arrays = []
        file.visititems(lambda name, item: arrays.append(item[()]) if isinstance(item, h5py.Dataset) else None)
    assert len(arrays) > 50 and all(np.all(np.isfinite(array)) for array in arrays)


def _tiny_model():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss="mse", metrics=["mae"], jit_compile=False)
    return model


def _tiny_data(step, poison_step=None):
    """Batch n (n = 0, 1, ...) is a deterministic function of n, as `train_from_step` requires."""
    import tensorflow as tf

    def batch(n):
        x = tf.cast(tf.reshape(tf.range(6, dtype=tf.int64) + n, (2, 3)), tf.float32) / 10.0
        y = tf.reduce_sum(x, axis=1, keepdims=True)
        if poison_step is not None:
            y = tf.where(n + 1 >= poison_step, y * np.inf, y)
        return x, y

    return tf.data.Dataset.range(step, 10**9).map(batch)


def test_fit_resumable_in_process_equals_one_run_and_restores_metrics(tmp_path):
    keras.utils.set_random_seed(1)
    whole = _tiny_model()
    history = {}
    fit_resumable(whole, _tiny_data, Backups(tmp_path / "whole", {}), epochs=2, steps_per_epoch=5,
                  every_steps=2, verbose=0, callbacks=[keras.callbacks.LambdaCallback(
                      on_epoch_end=lambda epoch, logs: history.setdefault(epoch, logs["mae"]))])

    keras.utils.set_random_seed(1)
    first = _tiny_model()
    second_half = Backups(tmp_path / "split", {})

    class Interrupt(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 2:  # after the backup at step 2, before the one at step 4
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit_resumable(first, _tiny_data, second_half, epochs=2, steps_per_epoch=5, every_steps=2, verbose=0,
                      callbacks=[Interrupt()])
    assert second_half.steps() == [2]

    keras.utils.set_random_seed(99)  # the resumed weights, not the seed, must decide
    resumed = _tiny_model()
    resumed_history = {}
    assert fit_resumable(resumed, _tiny_data, second_half, epochs=2, steps_per_epoch=5, every_steps=2, verbose=0,
                         callbacks=[keras.callbacks.LambdaCallback(
                             on_epoch_end=lambda epoch, logs: resumed_history.setdefault(epoch, logs["mae"]))]) == 2
    for got, want in zip(resumed.weights + resumed.optimizer.variables, whole.weights + whole.optimizer.variables):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=1e-7)
    # The interrupted epoch's mean covers all five batches: metric state came back with the backup.
    np.testing.assert_allclose(resumed_history[0], history[0], rtol=1e-6)
    np.testing.assert_allclose(resumed_history[1], history[1], rtol=1e-6)


def test_non_finite_loss_raises_before_the_backup_of_that_step(tmp_path):
    model = _tiny_model()
    backups = Backups(tmp_path, {})
    with pytest.raises(TrainingDiverged, match=(
        r"^Training stopped at the first non-finite loss: epoch 2, batch 2, global step 7 "
        r"\(loss=inf, mae=inf; running means over the epoch\). The last good backup, of global step 6, is kept in "
        rf"{tmp_path / 'step-000000006'}; rerunning the same command resumes from it. It will likely diverge again: "
        r"lower the learning rate or check the data \(a changed command needs --overwrite or another log "
        r"directory\).$"
    )):
        fit_resumable(model, lambda step: _tiny_data(step, poison_step=7), backups, epochs=3, steps_per_epoch=5,
                      every_steps=1, verbose=0)
    assert backups.steps() == [5, 6]
    step, _ = Backups(tmp_path, {}).restore(model)
    assert step == 6 and all(np.all(np.isfinite(np.asarray(v))) for v in model.weights)


def test_non_finite_loss_before_any_backup_says_that_none_is_kept(tmp_path):
    model = _tiny_model()
    with pytest.raises(TrainingDiverged, match=(
        r"global step 2 .* No backup had been written yet, so a rerun starts from the beginning. It will likely"
    )):
        fit_resumable(model, lambda step: _tiny_data(step, poison_step=2), Backups(tmp_path, {}), epochs=1,
                      steps_per_epoch=5, every_steps=10, verbose=0)
    assert not list(tmp_path.iterdir())


def test_backups_that_cannot_be_read_are_kept_and_the_run_stops(tmp_path):
    # Training from step 0 instead would delete them when the run ends.
    model = _tiny_model()
    model.fit(np.ones((4, 3)), np.ones((4, 1)), verbose=0)
    backups = Backups(tmp_path, {"batch_size": 4})
    backups.save(model, 3)
    (backups.path(3) / "state.weights.h5").write_bytes(b"garbage")
    with pytest.raises(UsageError) as error:
        backups.restore(model)
    assert str(error.value) == (
        f"None of the backups in {tmp_path} (step-000000003) could be read; they were kept. Move them away (or "
        "delete them) to train this run from the start, or pass another log directory."
    )
    assert (backups.path(3) / "state.weights.h5").read_bytes() == b"garbage"


def test_stop_on_non_finite_loss_counts_steps_across_epochs():
    callback = StopOnNonFiniteLoss(first_step=12, steps_per_epoch=5)
    callback.on_epoch_begin(2)  # resumed at epoch 3, batch 2
    callback.on_train_batch_end(0, {"loss": 1.0})
    with pytest.raises(TrainingDiverged, match=r"epoch 3, batch 4, global step 14 \(loss=nan; running means"):
        callback.on_train_batch_end(1, {"loss": float("nan")})


def test_half_written_backups_are_never_read(tmp_path):
    model = _tiny_model()
    model.fit(np.ones((4, 3)), np.ones((4, 1)), verbose=0)
    backups = Backups(tmp_path, {"batch_size": 4})
    backups.save(model, 3)
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_directory(backups.path(9)) as folder:
            (folder / "state.weights.h5").write_bytes(b"half")
            raise RuntimeError("killed")
    (tmp_path / ".tmp-step-000000012-x").mkdir()  # what a SIGKILL during a save leaves
    assert backups.steps() == [3] and sorted(p.name for p in tmp_path.iterdir())[0].startswith(".tmp")
    # A newest backup damaged on disk falls back to the one before it.
    backups.save(model, 5)
    (backups.path(5) / "state.weights.h5").write_bytes(b"garbage")
    assert backups.restore(model)[0] == 3
    backups.save(model, 7)
    assert backups.steps() == [5, 7]  # keeps the newest two


def test_backup_of_other_settings_is_refused(tmp_path):
    model = _tiny_model()
    model.fit(np.ones((4, 3)), np.ones((4, 1)), verbose=0)
    Backups(tmp_path, {"batch_size": 4, "seed": 0}).save(model, 3)
    with pytest.raises(UsageError) as error:
        Backups(tmp_path, {"batch_size": 8, "seed": 0}).restore(model)
    assert str(error.value) == (
        f"The backup {tmp_path / 'step-000000003'} was written by a run with batch_size=4, but this run has "
        "batch_size=8. Run the same command to resume it, or use another log directory (or delete that "
        "backup folder) to start a new run."
    )


def test_fit_resumable_needs_steps_per_epoch(tmp_path):
    with pytest.raises(ValueError, match=r"needs steps_per_epoch as a positive integer .* Received: steps_per_epoch=None"):
        fit_resumable(_tiny_model(), _tiny_data, Backups(tmp_path, {}), epochs=1, steps_per_epoch=None)


def test_xla_is_refused_under_determinism_not_silently_dropped():
    from training.resume import configure_determinism

    with pytest.raises(UsageError, match=r"--jit_compile=true needs --deterministic=false: Keras does not XLA-compile"):
        configure_determinism(True, True)
    configure_determinism(False, True)  # XLA without determinism: nothing to configure


@pytest.mark.large
def test_a_second_run_in_the_logdir_and_a_changed_resume_are_refused_and_the_backups_kept(tmp_path):
    logdir = tmp_path / "run"
    args = (*KILL_RUN_ARGS, "--epochs=30")  # long enough to be running when the second run starts
    with open(tmp_path / "first.log", "w") as log:
        first = _start_fit(logdir, log, args)
        try:
            while not _backups(logdir):
                assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
                time.sleep(0.02)
            second = run_module("training.fit", *args, f"--logdir={logdir}")
            assert second.returncode == 2 and "Traceback" not in second.stderr
            assert f"error: --logdir={logdir} is in use by another run (pid {first.pid} on " in second.stderr
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait()
    left = _backups(logdir)
    assert left
    changed = run_module("training.fit", *args, "--num_embeddings=16", f"--logdir={logdir}")
    assert changed.returncode == 2 and "Traceback" not in changed.stderr
    assert changed.stderr.strip().splitlines()[-1].startswith(
        f"error: --logdir={logdir} holds a run that has not finished (its backups resume it) with "
        "num_embeddings=None; this command has num_embeddings=16. Nothing was changed."
    )
    assert _backups(logdir) == left
    resumed = run_module("training.fit", *args, f"--logdir={logdir}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Resuming from backup {logdir / 'backup' / left[-1]}" in resumed.stdout


def test_the_private_keras_build_resume_relies_on_is_there():
    # training/resume.py builds compiled metrics with keras.Model._symbolic_build(data_batch=...),
    # the project's one private Keras call (Keras has no public way before the first step). If a
    # Keras release renames or changes it, this fails here, naming it, not deep inside a resume.
    import inspect

    assert "data_batch" in inspect.signature(keras.Model._symbolic_build).parameters


@pytest.mark.large
def test_a_folder_run_resumed_after_its_files_changed_stops_and_resumes_once_they_are_back(tmp_path):
    images, logdir = tmp_path / "images", tmp_path / "run"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(40):
        tf.io.write_file(str(images / f"{i:02d}.png"), tf.io.encode_png(rng.integers(0, 256, (32, 32, 3), np.uint8)))
    args = lambda epochs: (*KILL_RUN_ARGS, f"--epochs={epochs}", f"--dataset=folder:{images}")  # noqa: E731
    with open(tmp_path / "first.log", "w") as log:
        first = _start_fit(logdir, log, args(30))
        try:
            assert _kill_after_first_backup(first, logdir, 0.0) == -signal.SIGKILL
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
    left = _backups(logdir)
    kept = (images / "03.png").read_bytes()
    (images / "03.png").unlink()
    changed = run_module("training.fit", *args(30), f"--logdir={logdir}")
    assert changed.returncode == 2 and "Traceback" not in changed.stderr
    assert f"error: The image folder of the run in {logdir} changed since it started: 1 removed (03.png)." in (
        changed.stderr
    )
    assert _backups(logdir) == left
    (images / "03.png").write_bytes(kept)
    resumed = run_module("training.fit", *args(1), f"--logdir={logdir}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Resuming from backup {logdir / 'backup' / left[-1]}" in resumed.stdout


@pytest.mark.large
def test_a_full_disk_during_a_backup_stops_the_run_with_a_clear_error(small_disk):
    result = run_module("training.fit", *KILL_RUN_ARGS, f"--logdir={small_disk / 'run'}")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert (
        f"error: No space left on the disk of {small_disk / 'run' / 'backup'}: the backup of step 2 could not be "
        "written (nothing of it is left on disk). No backup had been written yet, so a rerun starts from the "
        "beginning. Free space there, then run the same command again."
    ) in result.stderr
    assert not [path for path in (small_disk / "run" / "backup").glob("*")]  # no partial backup left
