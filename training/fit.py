"""Train a zoo autoencoder: `python -m training.fit --dataset=cifar10 --model=vqvae`,
or its priors: `python -m training.fit --stage=prior --autoencoder=PATH.keras ...`.

Stage 1 of VQ-VAE: trains the model with `model.fit` on a tf.data pipeline,
validates every epoch on the held-out split, logs every metric to TensorBoard,
backs up under the log directory (an interrupted run resumes when the same
command is run again), then saves `<logdir>/model.keras` and reloads it once
to check it. One run owns the log directory and records its settings there
(training/run_dir.py): the same command resumes or reports the finished run,
another one stops unless --overwrite. Stage 2 (--stage=prior) is
training/fit_prior.py.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if __name__ == "__main__":  # the tool as a user runs it: before TensorFlow is imported
    from training.console import quiet_native_logs

    quiet_native_logs()

import functools  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from training.callbacks import SkippedImagesLog, VQMonitor  # noqa: E402
from training.data import image_spec_or_none, load_image_data, naming_bad_images  # noqa: E402
from training.data.folder import printable  # noqa: E402
from training.data.images import parse_image_size  # noqa: E402
from training.distribute import prepare_run  # noqa: E402
from training.errors import TrainingDiverged, UsageError  # noqa: E402
from training.fit_prior import train_priors  # noqa: E402
from training.flags import (  # noqa: E402
    AUTOENCODER_SETTINGS, MODEL_ARGUMENTS, PRIOR_SETTINGS, QUANTIZER_FLAGS, RunConfig, codebook_overrides,
    define_fit_flags, preset_quantizer,
)
from training import model_files  # noqa: E402
from training.optimizer import extendable_settings, make_optimizer, resume_settings  # noqa: E402
from training.data.split_record import SPLIT_FILE, keep_split  # noqa: E402
from training.run_dir import claim_run_dir  # noqa: E402
from training.resume import Backups, configure_determinism, fit_resumable  # noqa: E402
from vq_keras.atomic import save_model  # noqa: E402
from vq_keras.layers import make_quantizer  # noqa: E402
from vq_keras.zoo import AUTOENCODERS as MODELS  # noqa: E402

FLAGS = flags.FLAGS
define_fit_flags()

# What stage 1 leaves in its log directory: trained work, then logs (see training/run_dir.py).
RESULTS = ("model.keras", "backup", "backup-*", SPLIT_FILE)
LOGS = ("events.out.tfevents.*", "train", "validation")

def build_model(model_name, preset, num_channels, data_variance, image_shape, dataset, codebook=None):
    """The zoo model for `model_name` and `preset`, checked against the images and built."""
    model = make_model(model_name, preset, num_channels, data_variance, image_shape, dataset, codebook)
    model.build((None, *image_shape))
    return model


def with_quantizer_layer(config):
    """The model's arguments, with the quantizer built as a layer when the flags set
    arguments the model does not take (levels, num_quantizers, codebook_dim, ...)."""
    layer_only = {name: value for name, value in config.items() if name in LAYER_ARGUMENTS}
    if not layer_only and config.get("quantizer") != "rvq":
        return config
    model_config = {name: value for name, value in config.items() if name not in LAYER_ARGUMENTS}
    layer = make_quantizer(model_config["quantizer"], name="quantizer", **model_config, **layer_only)
    return {**model_config, "quantizer": layer}


LAYER_ARGUMENTS = tuple(argument for argument in QUANTIZER_FLAGS.values() if argument not in MODEL_ARGUMENTS)


def make_model(model_name, preset, num_channels, data_variance, image_shape, dataset, codebook=None):
    """The unbuilt zoo model (no weights yet), checked against the images' shape."""
    if model_name not in MODELS:
        raise UsageError(f"Unknown model {model_name!r}. Known models: {', '.join(MODELS)}.")
    model_class = MODELS[model_name]
    if preset not in model_class.PRESETS:
        raise UsageError(
            f"Unknown preset {preset!r} for --model={model_name}. "
            f"Known presets: {', '.join(model_class.presets())}."
        )
    overrides = {"data_variance": data_variance}
    if num_channels is not None:
        overrides["num_channels"] = num_channels
    try:
        model = model_class(**with_quantizer_layer({**model_class.PRESETS[preset], **overrides, **(codebook or {})}))
    except ValueError as error:
        raise UsageError(f"--model={model_name} --preset={preset}: {error}") from None
    model_files.check_images_fit(
        model, image_shape, dataset, f"preset {preset!r}",
        f"Pass --num_channels={image_shape and image_shape[-1]} to build the preset for them.",
    )
    return model


def train(config):
    strategy, outputs = prepare_run(config)
    keras.utils.set_random_seed(config.seed)
    configure_determinism(config.deterministic, config.jit_compile)
    # Check the model against the data set's image shape before reading any data.
    image_size = parse_image_size(config.image_size)
    model = make_model(
        config.model, config.preset, config.num_channels, 1.0,
        image_spec_or_none(config.dataset, config.data_dir, image_size), config.dataset,
        codebook_overrides(config),
    )
    settings = config.settings(AUTOENCODER_SETTINGS)
    if settings["quantizer"] == preset_quantizer(config.model, config.preset):
        settings["quantizer"] = None  # naming the preset's own quantizer is the same run as leaving it out
    with claim_run_dir(
        outputs.logdir, settings, RESULTS, LOGS, config.overwrite, extendable_settings(settings)
    ) as run:
        path = outputs.logdir / "model.keras"
        if run.finished:
            print(
                f"Nothing to do: this run has finished already and saved {path}. Pass --overwrite to train "
                "it again, or another --logdir for a new run."
            )
            return path
        with naming_bad_images():
            train_and_save(config, strategy, outputs, settings, path, model)
        run.mark_finished()
    if not outputs.is_chief:
        outputs.clean_up()
        return None
    print(f"Saved model: {path}")
    print(f"TensorBoard logs: {outputs.logdir}  (view with: tensorboard --logdir {shlex.quote(str(outputs.logdir))})")
    return path


def train_and_save(config, strategy, outputs, settings, path, unbuilt):
    """Trains the model (`unbuilt`: the flags' model before the data is read, for its channels and the
    sizes it takes), resuming from the backups under `outputs`, and saves it at `path`."""
    logdir = outputs.logdir
    data = load_image_data(
        config.dataset, config.data_dir, config.batch_size, config.seed, config.skip_bad_images,
        image_size=config.image_size, channels=unbuilt.num_channels, random_crop=config.random_crop,
        random_flip=config.random_flip, fit_size=functools.partial(model_files.fitting_size, unbuilt),
    )
    report_skipped(data.skipped_files)
    steps = config.steps_per_epoch or data.num_train // config.batch_size
    total_steps = config.epochs * steps
    with strategy.scope():
        model = build_model(
            config.model, config.preset, config.num_channels, data.data_variance,
            data.image_shape, config.dataset, codebook_overrides(config),
        )
        optimizer = make_optimizer(config.learning_rate, config.learning_rate_decay, total_steps)
        model.compile(optimizer=optimizer, jit_compile=config.jit_compile)
    print(
        f"Training {config.model} ({config.preset}) on {config.dataset}: "
        f"{data.num_train} training and {data.num_validation} validation images of shape "
        f"{data.image_shape}, pixel variance {data.data_variance:.5f}."
    )
    backups = Backups(outputs.backup, resume_settings(settings))
    keep_split(logdir, data.split_files, resuming=bool(backups.steps()))
    monitor_images = next(iter(data.validation.unbatch().batch(config.monitor_images)))
    fit_resumable(
        model,
        data.train_from_step,
        backups,
        epochs=config.epochs,
        steps_per_epoch=steps,
        every_steps=config.backup_every_steps,
        validation_data=data.validation,
        validation_steps=config.validation_steps,
        callbacks=[
            keras.callbacks.TensorBoard(str(logdir)),
            VQMonitor(logdir, monitor_images, {**settings, **model.get_config()}),
            SkippedImagesLog(logdir, data.skipped_files),
        ],
        verbose=2 if os.environ.get("CI") else "auto",
    )
    save_and_check(model, path, next(iter(data.validation)))
    backups.delete()


def report_skipped(skipped_files, shown=5):
    if skipped_files:
        names = ", ".join(printable(path) for path in skipped_files[:shown])
        more = f" and {len(skipped_files) - shown} more" if len(skipped_files) > shown else ""
        print(f"Skipped {len(skipped_files)} undecodable image files (--skip_bad_images): {names}{more}.")


def save_and_check(model, path, images):
    """Saves `model` as .keras and reloads it; the reload must give identical outputs."""
    save_model(model, path)
    reloaded = keras.saving.load_model(path)
    difference = np.abs(np.asarray(reloaded.reconstruct(images)) - np.asarray(model.reconstruct(images))).max()
    if difference > 1e-6:
        raise RuntimeError(f"The reloaded {path} differs from the trained model by {difference}.")
    return path


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    try:
        config = RunConfig.from_flags(FLAGS)
        if config.stage == "prior":
            train_priors(config, PRIOR_SETTINGS)
        else:
            train(config)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except TrainingDiverged as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
