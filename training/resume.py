"""Exact resume of a `model.fit` run after a kill at any point, and a stop at the first non-finite loss.

`fit_resumable` replaces `model.fit` for any compiled Keras model in training/:
every `every_steps` training steps and at every epoch end it writes a backup
of everything the rest of the run depends on, and a run started again with the
same settings continues from the newest one and ends with the same weights as
a run that was never stopped (given deterministic ops: `enable_determinism()`).

A backup is a folder `<backup_dir>/step-<global step>/` holding
- `state.weights.h5`: `model.save_weights`, i.e. every model weight including
  non-trainable ones (EMA statistics) and the optimizer
  state (Adam moments, iterations);
- `metrics.npz`: the running state of every metric, so the interrupted epoch
  logs the same averages;
- `seeds.npz`: the states of the seed generators (dropout masks), which
  `save_weights` leaves out;
- `position.json`: the global step (the data position: the training data is
  rebuilt by `train_from_step(step)`) and the run's settings.

Why not `keras.callbacks.BackupAndRestore` (Keras 3.15): it restores weights
and optimizer but only the epoch (the batch it records is never used, so a
mid-epoch resume replays the epoch from its first batch on updated weights and
a restarted data iterator); it overwrites its files in place (a kill during a
save leaves a broken file, and `double_checkpoint` only falls back on OSError,
with weights and metadata possibly from different saves); it keeps no metric
state. Here a backup is written to a hidden temporary folder and renamed into
place, so a half-written backup is never read.
"""

import contextlib
import json
import shutil
import warnings
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from training.errors import TrainingDiverged, UsageError
from vq_keras.atomic import atomic_directory, is_out_of_space

BACKUP_PREFIX = "step-"
WEIGHTS_FILE = "state.weights.h5"
METRICS_FILE = "metrics.npz"
SEEDS_FILE = "seeds.npz"
POSITION_FILE = "position.json"
DEFAULT_BACKUP_EVERY_STEPS = 500


def enable_determinism():
    """Makes every TensorFlow op deterministic (same inputs, same bits), as exact resume needs."""
    tf.config.experimental.enable_op_determinism()


def configure_determinism(deterministic, jit_compile):
    """Turns on op determinism if asked; refuses XLA with it, which Keras would
    otherwise turn off with only a warning (not every op has a deterministic XLA kernel)."""
    if deterministic and jit_compile:
        raise UsageError(
            "--jit_compile=true needs --deterministic=false: Keras does not XLA-compile under TF "
            "op determinism. Choose exact resume and reruns (--deterministic, the default) or "
            "XLA's speed (--deterministic=false --jit_compile)."
        )
    if deterministic:
        enable_determinism()


def _metric_variables(model):
    # VQModel.metrics lists only the logged trackers; metrics a model keeps as
    # attributes (e.g. per-epoch code usage) are in keras.Model's own `metrics`,
    # which that override hides: ask the base class's property for them.
    metrics = {id(metric): metric for metric in [*model.metrics, *keras.Model.metrics.fget(model)]}
    return [variable for metric in metrics.values() for variable in metric.variables]


def _seed_states(model):
    # `save_weights` leaves out the states of the seed generators (dropout and
    # other random layers draw from them), so a resumed run would draw other masks.
    return [variable for variable in model.variables if variable.path.endswith("seed_generator_state")]


def first_non_finite_variable(model):
    """The path of the first model weight holding NaN or inf, or None."""
    for variable in model.variables:
        if not np.all(np.isfinite(np.asarray(variable))):
            return variable.path
    return None


def _backup_bytes(model):
    """About what a backup of `model` takes on disk: its variables (weights, optimizer and metric
    state, seeds) and room for the files' own structure."""
    variables = {id(v): v for v in [*model.variables, *_metric_variables(model)]}
    return sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in variables.values()) + 1_000_000


class Backups:
    """The `step-<N>` backups of one run in `directory`, newest kept last.

    Args:
        directory: the run's own backup folder (nothing else may write there).
        settings: dict of the run's settings that a resumed run must share
            (batch size, seed, model, ...); a backup written with other
            settings is refused with a UsageError.
        keep: how many newest backups to keep; older ones are deleted. With
            2, a newest backup damaged on disk falls back to the one before.
    """

    def __init__(self, directory, settings, keep=2):
        if keep < 1:
            raise ValueError(f"Backups keeps at least one backup. Received: keep={keep}")
        self.directory = Path(directory)
        self.settings = dict(settings)
        self.keep = keep

    def steps(self):
        """The global steps of the complete backups, oldest first."""
        if not self.directory.is_dir():
            return []
        names = (path.name for path in self.directory.iterdir() if path.is_dir())
        return sorted(int(name[len(BACKUP_PREFIX):]) for name in names if _is_backup_name(name))

    def path(self, step):
        return self.directory / f"{BACKUP_PREFIX}{step:09d}"

    def save(self, model, step):
        """Writes the backup of `model` after `step` training steps, then prunes old ones; a full disk
        stops the run with a UsageError, the older backups kept."""
        # Checked first: h5py, out of space in the middle of save_weights, leaves a file object whose
        # every later flush fails, and the process has crashed at exit (SIGSEGV) after it.
        self.directory.mkdir(parents=True, exist_ok=True)
        full = shutil.disk_usage(self.directory).free < _backup_bytes(model)
        if not full:
            try:
                with atomic_directory(self.path(step)) as folder:
                    model.save_weights(folder / WEIGHTS_FILE)
                    np.savez(folder / METRICS_FILE, *[np.asarray(v) for v in _metric_variables(model)])
                    np.savez(folder / SEEDS_FILE, *[np.asarray(v) for v in _seed_states(model)])
                    (folder / POSITION_FILE).write_text(json.dumps({"step": step, "settings": self.settings}))
            except Exception as error:
                if not is_out_of_space(error):
                    raise
                full = True
        if full:
            raise UsageError(
                f"No space left on the disk of {self.directory}: the backup of step {step} could not be written "
                f"(nothing of it is left on disk). {self.describe_kept()} Free space there, then run the same "
                "command again."
            ) from None
        for old in self.steps()[: -self.keep]:
            shutil.rmtree(self.path(old), ignore_errors=True)

    def restore(self, model):
        """Loads the newest readable backup into the built, compiled `model`.

        Returns (global step, metric values); (0, None) when there is no backup.
        """
        steps = self.steps()
        for step in reversed(steps):
            try:
                return step, self._load(model, self.path(step))
            except UsageError:
                raise
            except (OSError, ValueError, KeyError) as error:  # damaged on disk: try the one before
                print(f"Warning: skipping unreadable backup {self.path(step)}: {error}")
        if steps:  # starting from step 0 would delete them at the end of the run
            raise UsageError(
                f"None of the backups in {self.directory} ({', '.join(self.path(s).name for s in steps)}) could "
                "be read; they were kept. Move them away (or delete them) to train this run from the start, "
                "or pass another log directory."
            )
        return 0, None

    def describe_kept(self):
        """One sentence on what a rerun after a failure would resume from."""
        steps = self.steps()
        if not steps:
            return "No backup had been written yet, so a rerun starts from the beginning."
        return (
            f"The last good backup, of global step {steps[-1]}, is kept in {self.path(steps[-1])}; rerunning "
            "the same command resumes from it."
        )

    def _load(self, model, folder):
        position = json.loads((folder / POSITION_FILE).read_text())
        if position["settings"] != self.settings:
            raise UsageError(self._settings_mismatch(folder, position["settings"]))
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model.load_weights(folder / WEIGHTS_FILE)
        with np.load(folder / SEEDS_FILE) as arrays:
            states = _seed_states(model)
            if len(arrays.files) != len(states):
                raise ValueError(f"{folder / SEEDS_FILE} holds {len(arrays.files)} seed states, the model {len(states)}")
            for i, variable in enumerate(states):
                variable.assign(arrays[f"arr_{i}"])
        with np.load(folder / METRICS_FILE) as arrays:
            return [arrays[f"arr_{i}"] for i in range(len(arrays.files))]

    def _settings_mismatch(self, folder, saved):
        changed = {name for name in {*saved, *self.settings} if saved.get(name) != self.settings.get(name)}
        before = ", ".join(f"{name}={saved.get(name)!r}" for name in sorted(changed))
        now = ", ".join(f"{name}={self.settings.get(name)!r}" for name in sorted(changed))
        return (
            f"The backup {folder} was written by a run with {before}, but this run has {now}. "
            "Run the same command to resume it, or use another log directory (or delete that "
            "backup folder) to start a new run."
        )

    def delete(self):
        shutil.rmtree(self.directory, ignore_errors=True)


def _is_backup_name(name):
    return name.startswith(BACKUP_PREFIX) and name[len(BACKUP_PREFIX):].isdigit()


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Raises `TrainingDiverged` at the first batch whose loss is NaN or inf.

    Unlike `keras.callbacks.TerminateOnNaN`, which sets `stop_training` (so
    later callbacks still see that batch, and `fit` returns normally), raising
    stops before any later callback of the batch, e.g. a backup, can run, and
    the message names the epoch, batch, global step and every metric value.
    Keras' batch logs are running means over the epoch, so the first
    non-finite batch loss makes the logged loss non-finite at that batch.

    Args:
        first_step: global step the `fit` call starts at.
        steps_per_epoch: training steps in a full epoch.
        monitor: the log entry to check.
    """

    def __init__(self, first_step=0, steps_per_epoch=None, monitor="loss"):
        super().__init__()
        self.step_counter = GlobalStep(first_step)
        self.steps_per_epoch = steps_per_epoch
        self.monitor = monitor

    def on_epoch_begin(self, epoch, logs=None):
        self.step_counter.epoch_begin(epoch)

    def on_train_batch_end(self, batch, logs=None):
        step = self.step_counter.batch_end(batch)
        value = (logs or {}).get(self.monitor)
        if value is None or np.isfinite(float(value)):
            return
        metrics = ", ".join(f"{name}={float(v):.6g}" for name, v in sorted(logs.items()))
        raise TrainingDiverged(
            f"Training stopped at the first non-finite {self.monitor}: epoch {self.step_counter.epoch + 1}, "
            f"batch {self.step_counter.batch_in_epoch(self.steps_per_epoch)}, global step {step} "
            f"({metrics}; running means over the epoch)."
        )


class GlobalStep:
    """Counts training steps across epochs and `fit` calls from callback events."""

    def __init__(self, first_step):
        self.step = first_step
        self.epoch_start = first_step
        self.epoch = 0

    def epoch_begin(self, epoch):
        self.epoch = epoch
        self.epoch_start = self.step

    def batch_end(self, batch):
        # `batch` is the last batch index the call ran (several with steps_per_execution).
        self.step = self.epoch_start + batch + 1
        return self.step

    def batch_in_epoch(self, steps_per_epoch):
        """1-based batch of the current epoch the last counted step was."""
        return self.step - self.epoch * steps_per_epoch if steps_per_epoch else self.step - self.epoch_start


class BackupEvery(keras.callbacks.Callback):
    """Writes a backup every `every_steps` global steps and at every epoch end.

    A backup is never written at an epoch's last batch but at its end, after
    validation and the other callbacks' epoch-end work, so a resumed run never
    skips an epoch end. Place it last among the callbacks. It refuses (raises
    `TrainingDiverged`) to back up non-finite weights.

    Args:
        backups: a `Backups`.
        every_steps: steps between backups.
        first_step: global step the `fit` call starts at.
        metric_values: metric state to put back at the first epoch begin
            (after `fit` resets the metrics), for a run resumed mid-epoch.
    """

    def __init__(self, backups, every_steps, first_step=0, metric_values=None):
        super().__init__()
        if not isinstance(every_steps, int) or every_steps < 1:
            raise ValueError(f"every_steps must be a positive integer. Received: every_steps={every_steps!r}")
        self.backups = backups
        self.every_steps = every_steps
        self.step_counter = GlobalStep(first_step)
        self.metric_values = metric_values

    def on_epoch_begin(self, epoch, logs=None):
        self.step_counter.epoch_begin(epoch)
        if self.metric_values is not None:
            _assign_metric_state(self.model, self.metric_values)
            self.metric_values = None

    def on_train_batch_end(self, batch, logs=None):
        step = self.step_counter.batch_end(batch)
        last_of_epoch = batch + 1 >= self.params.get("steps", float("inf"))
        if step % self.every_steps == 0 and not last_of_epoch:
            self._save(step)

    def on_epoch_end(self, epoch, logs=None):
        self._save(self.step_counter.step)

    def _save(self, step):
        broken = first_non_finite_variable(self.model)
        if broken is not None:
            raise TrainingDiverged(
                f"The weights became non-finite by global step {step} (first: {broken}); "
                "no backup was written for it."
            )
        self.backups.save(self.model, step)


def _build_compiled_metrics(model, data):
    # Without a distribution strategy Keras creates compiled metrics only when it
    # traces the first train step, too late to put their state back; build them
    # now from the data's shapes as fit() does under a strategy. Keras has no public
    # way: this is the one private Keras call in the project, pinned by
    # tests/training/test_resume.py::test_the_private_keras_build_resume_relies_on_is_there.
    model._symbolic_build(data_batch=data.element_spec)


def _assign_metric_state(model, values):
    # fit() resets the metrics when an epoch begins, so this runs then, not at restore.
    variables = _metric_variables(model)
    if [np.shape(v) for v in values] != [tuple(v.shape) for v in variables]:
        raise ValueError(
            f"The backup's metric state ({len(values)} arrays) does not match the model's "
            f"{len(variables)} metric variables; was it written by another model?"
        )
    for variable, value in zip(variables, values):
        variable.assign(value)


def fit_resumable(
    model,
    train_from_step,
    backups,
    *,
    epochs,
    steps_per_epoch,
    every_steps=DEFAULT_BACKUP_EVERY_STEPS,
    callbacks=(),
    **fit_kwargs,
):
    """`model.fit` that resumes exactly from the newest backup in `backups`.

    Args:
        model: a built, compiled Keras model.
        train_from_step: function of a global step returning the training
            data set positioned at that step: the batches the run would see
            from there, in order (a deterministic function of the step).
        backups: a `Backups` for this run.
        epochs, steps_per_epoch: as for `model.fit` (steps_per_epoch required).
        every_steps: training steps between backups.
        callbacks: further callbacks; they run after the non-finite loss check
            and before the backup.
        **fit_kwargs: other `model.fit` arguments (validation_data, verbose, ...).

    Returns:
        The global step the run resumed from (0 for a fresh run). Raises
        `TrainingDiverged` at the first non-finite loss; the backups stay as they
        were before that batch. The caller deletes `backups` once it has saved
        the trained model.
    """
    if not isinstance(steps_per_epoch, int) or steps_per_epoch < 1:
        raise ValueError(
            "fit_resumable needs steps_per_epoch as a positive integer (the data repeats forever). "
            f"Received: steps_per_epoch={steps_per_epoch!r}"
        )
    step, metric_values = backups.restore(model)
    resumed_from = step
    if step:
        epoch, batch = divmod(step, steps_per_epoch)
        print(f"Resuming from backup {backups.path(step)}: epoch {epoch + 1}, batch {batch}, global step {step}.")
    try:
        _fit_from(model, train_from_step, backups, step, metric_values, epochs, steps_per_epoch, every_steps,
                  callbacks, fit_kwargs)
    except TrainingDiverged as error:
        raise TrainingDiverged(
            f"{error} {backups.describe_kept()} It will likely diverge again: lower the learning rate or "
            "check the data (a changed command needs --overwrite or another log directory)."
        ) from None
    return resumed_from


@contextlib.contextmanager
def _expected_end_of_validation(validation_data):
    """Silences Keras's "Your input ran out of data; interrupting training" for a validation
    split of unknown size (a folder read with --skip_bad_images, whose files may still fail to
    decode in the pipeline and be left out): Keras counts such a split's batches by reaching its
    end, and warns about that expected end as if training had been cut short. The training
    stream repeats forever, so the warning can concern nothing else then."""
    with warnings.catch_warnings():
        if isinstance(validation_data, tf.data.Dataset) and (
            int(validation_data.cardinality()) == int(tf.data.UNKNOWN_CARDINALITY)
        ):
            warnings.filterwarnings("ignore", message="Your input ran out of data", category=UserWarning)
        yield


def _fit_from(model, train_from_step, backups, step, metric_values, epochs, steps_per_epoch, every_steps,
              callbacks, fit_kwargs):
    """Runs `model.fit` from global `step` to the end, one call per interrupted epoch and one for the rest."""
    total = epochs * steps_per_epoch
    while step < total:
        epoch, batch = divmod(step, steps_per_epoch)
        # fit() cannot start inside an epoch, so an interrupted epoch is finished by its own call.
        last_epoch = epoch + 1 if batch else epochs
        data = train_from_step(step)
        if metric_values is not None:
            _build_compiled_metrics(model, data)
        with _expected_end_of_validation(fit_kwargs.get("validation_data")):
            model.fit(
                data,
                initial_epoch=epoch,
            epochs=last_epoch,
                steps_per_epoch=steps_per_epoch - batch,
                callbacks=[
                    StopOnNonFiniteLoss(step, steps_per_epoch),
                    *callbacks,
                    BackupEvery(backups, every_steps, step, metric_values),
                ],
                **{"shuffle": False, **fit_kwargs},  # the data comes shuffled; Keras warns on shuffle=True with a Dataset
            )
        if model.stop_training:  # e.g. EarlyStopping: the run is over, not the epoch
            return
        metric_values = None
        step = last_epoch * steps_per_epoch
