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
import math  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from training.callbacks import SkippedImagesLog, VQMonitor  # noqa: E402
from training.data import SAMPLE_DATASET, image_spec_or_none, load_image_data, naming_bad_images  # noqa: E402
from training.data.images import parse_image_size  # noqa: E402
from training.distribute import PRECISIONS, STRATEGIES, prepare_run  # noqa: E402
from training.errors import TrainingDiverged, UsageError  # noqa: E402
from training.fit_prior import train_priors  # noqa: E402
from training import model_files  # noqa: E402
from training.optimizer import LEARNING_RATE_DECAYS, extendable_settings, make_optimizer, resume_settings  # noqa: E402
from training.run_dir import claim_run_dir  # noqa: E402
from training.resume import DEFAULT_BACKUP_EVERY_STEPS, Backups, configure_determinism, fit_resumable  # noqa: E402
from vq_keras.atomic import save_model  # noqa: E402
from vq_keras.layers import QUANTIZERS, make_quantizer  # noqa: E402
from vq_keras.layers._registry import quantizer_arguments, quantizer_parameters  # noqa: E402
from vq_keras.layers._base_quantizer import GRADIENTS  # noqa: E402
from vq_keras.zoo import AUTOENCODERS as MODELS  # noqa: E402
from vq_keras.zoo import PRIORS  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "dataset", SAMPLE_DATASET,
    f"A TFDS image data set by name (cifar10, mnist, svhn_cropped, celeb_a, ...), "
    f"folder:PATH for a folder of images, or {SAMPLE_DATASET} (bundled, offline).",
)
flags.DEFINE_string("data_dir", None, "TFDS data directory (default: $TFDS_DATA_DIR or TFDS's own).")


def kinds_taking(argument):
    """The quantizer kinds whose constructor takes `argument`, as "vq|ema"."""
    return "|".join(kind for kind in QUANTIZERS if argument in quantizer_arguments(kind))



flags.DEFINE_string("model", "vqvae", f"Zoo model: one of {', '.join(MODELS)}.")
flags.DEFINE_string("preset", "cifar10", "The model's preset (see Model.presets()).")
flags.DEFINE_integer("num_channels", None, "Image channels to build the preset for (default: the preset's).")
flags.DEFINE_integer("num_embeddings", None, "Codes per level, every level (default: the preset's).")
flags.DEFINE_float(
    "dead_code_threshold", None,
    "Restart codes whose share of the assignments falls below this fraction of a uniform share, "
    "in (0, 1); 0 turns restarts off (default: the preset's, off in the papers' presets).",
)
flags.DEFINE_string("codebook_init", None, "uniform or kmeans++ (default: the preset's, uniform).")
flags.DEFINE_string(
    "quantizer", None,
    f"The quantizer of every level: one of {', '.join(QUANTIZERS)} (default: the preset's, ema). "
    "vq: codebook by gradients; ema: codebook by moving averages; fsq: finite scalar quantization "
    "(--fsq_levels); rvq: residual EMA stages (--num_quantizers).",
)
flags.DEFINE_list(
    "fsq_levels", None,
    f"--quantizer={kinds_taking('levels')}: levels per channel, e.g. 8,5,5,5 (1000 codes; the default) or 8,8,8,5,5,5; "
    "the model's embedding_dim becomes their number.",
)
flags.DEFINE_integer(
    "num_quantizers", None, f"--quantizer={kinds_taking('num_quantizers')}: the number of residual stages (required)."
)
flags.DEFINE_integer(
    "codebook_dim", None,
    f"--quantizer={kinds_taking('codebook_dim')}: look codes up in a learned projection of this size (at most embedding_dim).",
)
flags.DEFINE_boolean(
    "cosine", None, f"--quantizer={kinds_taking('use_cosine_similarity')}: l2-normalise the encoder outputs and codes (cosine similarity)."
)
flags.DEFINE_enum(
    "gradient", None, list(GRADIENTS),
    f"--quantizer={kinds_taking('gradient')}: the gradient through the quantizer: straight_through (default) or rotation "
    "(the rotation trick).",
)
flags.DEFINE_integer("epochs", 1, "Number of epochs.")
flags.DEFINE_integer("steps_per_epoch", None, "Training steps per epoch (default: one pass over the data).")
flags.DEFINE_integer("validation_steps", None, "Validation batches per epoch (default: the whole split).")
flags.DEFINE_integer("batch_size", 32, "Global batch size.")
flags.DEFINE_float("learning_rate", 3e-4, "Adam learning rate.")
flags.DEFINE_enum(
    "learning_rate_decay", "none", list(LEARNING_RATE_DECAYS),
    "none: constant, as the papers train. cosine: decayed to zero over epochs x steps_per_epoch.",
)
flags.DEFINE_integer("seed", 0, "Seed of weights, shuffling and every random op.")
flags.DEFINE_string("logdir", "runs/latest", "Where TensorBoard logs, backups and model.keras go.")
flags.DEFINE_boolean(
    "deterministic", True,
    "TF op determinism: a rerun, or a run resumed after a kill, ends with the same weights.",
)
flags.DEFINE_boolean("jit_compile", False, "Compile the train step with XLA (needs --deterministic=false).")
flags.DEFINE_integer(
    "backup_every_steps", DEFAULT_BACKUP_EVERY_STEPS,
    "Training steps between backups under <logdir>/backup (also one at every epoch end); "
    "a killed run resumes exactly from the newest when the same command runs again.",
    lower_bound=1,
)
flags.DEFINE_boolean(
    "skip_bad_images", False,
    "folder: data sets: leave out corrupt, truncated or empty image files (named in the log and in "
    "TensorBoard text) instead of stopping with an error naming the file.",
)
flags.DEFINE_string(
    "image_size", None,
    "N or HxW: resize every image (antialiased) so that it covers NxN (its shorter side becomes N), then "
    "centre-crop it, for training and validation (default: images are used at their size, which must be "
    "one size the model takes).",
)
flags.DEFINE_boolean(
    "random_crop", False,
    "Training only: crop each image to --image_size at a random offset instead of the centre (along the "
    "longer side; seeded by --seed and the image's position, so a resumed run crops alike).",
)
flags.DEFINE_boolean("random_flip", False, "Training only: flip each image left-right with probability 1/2 (seeded).")
flags.DEFINE_integer("monitor_images", 8, "Validation images shown beside their reconstructions in TensorBoard.")
flags.DEFINE_enum(
    "stage", "autoencoder", ["autoencoder", "prior"],
    "autoencoder: train --model (stage 1). prior: train priors (--prior) over the codes of --autoencoder (stage 2).",
)
flags.DEFINE_string("autoencoder", None, "--stage=prior: the model.keras stage 1 saved.")
flags.DEFINE_string("code_cache_dir", None, "--stage=prior: where the encoded data set is cached (default: <logdir>/codes).")
flags.DEFINE_string(
    "prior", "pixelcnn",
    f"--stage=prior: the kind of prior of every level, a name in vq_keras.zoo.PRIORS ({', '.join(PRIORS)}): "
    "pixelcnn (gated PixelCNN), transformer (decoder-only, key/value-cached sampling) or maskgit "
    "(bidirectional, parallel decoding).",
)
flags.DEFINE_integer("num_layers", None, "--stage=prior: gated blocks or transformer blocks per prior (default: the prior preset's).")
flags.DEFINE_integer("num_filters", None, "--stage=prior --prior=pixelcnn: channels per prior (default: the prior preset's).")
flags.DEFINE_integer("hidden_dim", None, "--stage=prior --prior=transformer: the width of each prior (default: the prior preset's).")
flags.DEFINE_integer("num_heads", None, "--stage=prior: attention heads per attention layer (default: the prior preset's).")
flags.DEFINE_float("dropout", None, "--stage=prior: dropout rate of the priors (default: the prior preset's).")
flags.DEFINE_boolean("class_conditional", False, "--stage=prior: condition the priors on the data set's class labels.")
flags.DEFINE_float(
    "label_dropout", None,
    "--stage=prior --class_conditional: the probability that a training grid's label is replaced by 'no class', "
    "so the priors can sample with classifier-free guidance (--guidance); e.g. 0.1 (default: 0).",
)
flags.DEFINE_string(
    "strategy", "default",
    f"tf.distribute strategy: one of {', '.join(STRATEGIES)} (multi_worker reads TF_CONFIG).",
)
flags.DEFINE_string("mixed_precision", "none", f"Keras dtype policy: one of {', '.join(PRECISIONS)}.")

flags.DEFINE_boolean(
    "overwrite", False,
    "Delete the run that --logdir holds (its model, backups and logs) and start this one, instead of stopping "
    "when the folder holds a run with other settings.",
)
for _name, _low in (("epochs", 1), ("batch_size", 1), ("steps_per_epoch", 1), ("validation_steps", 1),
                    ("monitor_images", 1), ("num_embeddings", 1), ("num_layers", 1), ("num_filters", 1),
                    ("hidden_dim", 1), ("num_heads", 1)):
    flags.register_validator(
        _name, lambda value, low=_low: value is None or value >= low,
        message=f"--{_name} must be at least {_low}"
        + (" (leave it out for one pass over the data)" if _name == "steps_per_epoch" else "")
        + (" (leave it out for the whole held-out split)" if _name == "validation_steps" else "") + ".",
    )
flags.register_validator(
    "learning_rate", lambda value: math.isfinite(value) and value > 0,
    message="--learning_rate must be a positive finite number, e.g. 3e-4.",
)

# Every flag that shapes a stage's weights or data. A run records them (run.json and each
# backup): the same command resumes or reports the finished run, another one stops.
# tests/training/test_fit.py checks that every flag is here or in FREE_FLAGS.
AUTOENCODER_SETTINGS = (
    "stage", "dataset", "model", "preset", "num_channels", "num_embeddings", "dead_code_threshold", "codebook_init",
    "image_size", "random_crop", "random_flip", "quantizer", "fsq_levels", "num_quantizers", "codebook_dim",
    "cosine", "gradient", "skip_bad_images", "epochs", "steps_per_epoch", "batch_size", "learning_rate",
    "learning_rate_decay", "seed",
    "strategy", "mixed_precision", "deterministic", "jit_compile",
)
PRIOR_SETTINGS = (
    "stage", "dataset", "model", "preset", "image_size", "autoencoder", "class_conditional", "prior", "num_layers", "num_filters",
    "hidden_dim", "num_heads", "dropout", "label_dropout",
    "epochs", "steps_per_epoch", "batch_size", "learning_rate", "learning_rate_decay", "seed", "deterministic",
    "jit_compile",
)
# May differ between the runs of one log directory: where things are, how often to back up, what to show.
FREE_FLAGS = ("data_dir", "logdir", "overwrite", "backup_every_steps", "validation_steps", "monitor_images", "code_cache_dir")
# What stage 1 leaves in its log directory: trained work, then logs (see training/run_dir.py).
RESULTS = ("model.keras", "backup", "backup-*")
LOGS = ("events.out.tfevents.*", "train", "validation")

def build_model(model_name, preset, num_channels, data_variance, image_shape, dataset, codebook=None):
    """The zoo model for `model_name` and `preset`, checked against the images and built."""
    model = make_model(model_name, preset, num_channels, data_variance, image_shape, dataset, codebook)
    model.build((None, *image_shape))
    return model


# Each quantizer flag and the layer argument it sets. The kinds it applies to are those whose
# constructor takes that argument (`flag_kinds`), read from vq_keras.layers.QUANTIZERS, so a new
# quantizer needs no line here unless it brings a new argument.
QUANTIZER_FLAGS = {
    "num_embeddings": "num_embeddings",
    "dead_code_threshold": "dead_code_threshold",
    "codebook_init": "codebook_init",
    "fsq_levels": "levels",
    "num_quantizers": "num_quantizers",
    "codebook_dim": "codebook_dim",
    "cosine": "use_cosine_similarity",
    "gradient": "gradient",
}
# What the model itself takes; the others reach the quantizer layer the CLI builds.
MODEL_ARGUMENTS = ("num_embeddings", "dead_code_threshold", "codebook_init")


def flag_kinds(name):
    """The quantizer kinds the flag --name applies to."""
    return kinds_taking(QUANTIZER_FLAGS[name]).split("|")


def required_flags(kind):
    """The quantizer flags quantizer `kind` cannot do without (a constructor argument with no default
    that the model does not give)."""
    required = {p.name for p in quantizer_parameters(kind) if p.default is p.empty}
    return [name for name, argument in QUANTIZER_FLAGS.items() if argument in required and argument not in MODEL_ARGUMENTS]


def preset_quantizer(model_name, preset):
    """The quantizer kind a model preset builds when --quantizer is not given."""
    return getattr(MODELS.get(model_name), "PRESETS", {}).get(preset, {}).get("quantizer", "ema")


def codebook_overrides(argv_flags):
    """The model and quantizer arguments the quantizer flags set (only those given),
    checked against the quantizer kind (--quantizer, or the preset's)."""
    flag = lambda name: getattr(argv_flags, name, None)  # noqa: E731
    kind = flag("quantizer") or preset_quantizer(flag("model") or "vqvae", flag("preset") or "cifar10")
    if kind not in QUANTIZERS:
        raise UsageError(f"Unknown quantizer {kind!r} (--quantizer). Known quantizers: {', '.join(QUANTIZERS)}.")
    given = {name: flag(name) for name in QUANTIZER_FLAGS if flag(name) is not None}
    for name in given:
        kinds = flag_kinds(name)
        if kind not in kinds:
            raise UsageError(
                f"--{name} does not apply to --quantizer={kind}, which would ignore it: it sets "
                f"--quantizer={'|'.join(kinds)}. Drop it, or pass --quantizer={kinds[0]}."
            )
    missing = [name for name in required_flags(kind) if name not in given]
    if missing:
        raise UsageError(
            f"--quantizer={kind} ({QUANTIZERS[kind].__name__}) needs "
            + ", ".join(f"--{name} ({FLAG_MEANINGS.get(name, QUANTIZER_FLAGS[name])})" for name in missing) + "."
        )
    if "fsq_levels" in given:
        given["fsq_levels"] = _levels(given["fsq_levels"])
    overrides = {QUANTIZER_FLAGS[name]: value for name, value in given.items()}
    if overrides.get("dead_code_threshold") == 0:
        overrides["dead_code_threshold"] = None  # documented: 0 turns restarts off
    if flag("quantizer") is not None:
        overrides["quantizer"] = kind
    return overrides


FLAG_MEANINGS = {"num_quantizers": "the number of residual stages, e.g. 4"}


def _levels(values):
    try:
        return tuple(int(value) for value in values)
    except ValueError:
        raise UsageError(
            f"--fsq_levels expects integers separated by commas, e.g. 8,5,5,5. Received: {','.join(values)}"
        ) from None


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


def train(argv_flags):
    strategy, outputs = prepare_run(argv_flags)
    keras.utils.set_random_seed(argv_flags.seed)
    configure_determinism(argv_flags.deterministic, argv_flags.jit_compile)
    # Check the model against the data set's image shape before reading any data.
    image_size = parse_image_size(argv_flags.image_size)
    model = make_model(
        argv_flags.model, argv_flags.preset, argv_flags.num_channels, 1.0,
        image_spec_or_none(argv_flags.dataset, argv_flags.data_dir, image_size), argv_flags.dataset,
        codebook_overrides(argv_flags),
    )
    settings = {name: getattr(argv_flags, name) for name in AUTOENCODER_SETTINGS}
    if settings["quantizer"] == preset_quantizer(argv_flags.model, argv_flags.preset):
        settings["quantizer"] = None  # naming the preset's own quantizer is the same run as leaving it out
    with claim_run_dir(
        outputs.logdir, settings, RESULTS, LOGS, argv_flags.overwrite, extendable_settings(settings)
    ) as run:
        path = outputs.logdir / "model.keras"
        if run.finished:
            print(
                f"Nothing to do: this run has finished already and saved {path}. Pass --overwrite to train "
                "it again, or another --logdir for a new run."
            )
            return path
        with naming_bad_images():
            train_and_save(argv_flags, strategy, outputs, settings, path, model)
        run.mark_finished()
    if not outputs.is_chief:
        outputs.clean_up()
        return None
    print(f"Saved model: {path}")
    print(f"TensorBoard logs: {outputs.logdir}  (view with: tensorboard --logdir {shlex.quote(str(outputs.logdir))})")
    return path


def train_and_save(argv_flags, strategy, outputs, settings, path, unbuilt):
    """Trains the model (`unbuilt`: the flags' model before the data is read, for its channels and the
    sizes it takes), resuming from the backups under `outputs`, and saves it at `path`."""
    logdir = outputs.logdir
    data = load_image_data(
        argv_flags.dataset, argv_flags.data_dir, argv_flags.batch_size, argv_flags.seed, argv_flags.skip_bad_images,
        image_size=argv_flags.image_size, channels=unbuilt.num_channels, random_crop=argv_flags.random_crop,
        random_flip=argv_flags.random_flip, fit_size=functools.partial(model_files.fitting_size, unbuilt),
    )
    report_skipped(data.skipped_files)
    steps = argv_flags.steps_per_epoch or data.num_train // argv_flags.batch_size
    total_steps = argv_flags.epochs * steps
    with strategy.scope():
        model = build_model(
            argv_flags.model, argv_flags.preset, argv_flags.num_channels, data.data_variance,
            data.image_shape, argv_flags.dataset, codebook_overrides(argv_flags),
        )
        optimizer = make_optimizer(argv_flags.learning_rate, argv_flags.learning_rate_decay, total_steps)
        model.compile(optimizer=optimizer, jit_compile=argv_flags.jit_compile)
    print(
        f"Training {argv_flags.model} ({argv_flags.preset}) on {argv_flags.dataset}: "
        f"{data.num_train} training and {data.num_validation} validation images of shape "
        f"{data.image_shape}, pixel variance {data.data_variance:.5f}."
    )
    monitor_images = next(iter(data.validation.unbatch().batch(argv_flags.monitor_images)))
    backups = Backups(outputs.backup, resume_settings(settings))
    fit_resumable(
        model,
        data.train_from_step,
        backups,
        epochs=argv_flags.epochs,
        steps_per_epoch=steps,
        every_steps=argv_flags.backup_every_steps,
        validation_data=data.validation,
        validation_steps=argv_flags.validation_steps,
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
        names = ", ".join(str(path) for path in skipped_files[:shown])
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


def check_stage_flags(argv_flags):
    """Refuses a flag given on the command line that the chosen --stage does not read."""
    other = {"autoencoder": (PRIOR_SETTINGS, "code_cache_dir"), "prior": (AUTOENCODER_SETTINGS, "monitor_images")}
    this = AUTOENCODER_SETTINGS if argv_flags.stage == "autoencoder" else PRIOR_SETTINGS
    names, extra = other[argv_flags.stage]
    unused = [name for name in (*names, extra) if name not in this and argv_flags[name].present]
    if unused:
        other_stage = "prior" if argv_flags.stage == "autoencoder" else "autoencoder"
        raise UsageError(
            f"{', '.join(f'--{name}' for name in unused)} only applies to --stage={other_stage}, and this is "
            f"--stage={argv_flags.stage}, which would ignore it. Drop it, or pass --stage={other_stage}."
        )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    try:
        check_stage_flags(FLAGS)
        if FLAGS.stage == "prior":
            train_priors(FLAGS, PRIOR_SETTINGS)
        else:
            train(FLAGS)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except TrainingDiverged as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
