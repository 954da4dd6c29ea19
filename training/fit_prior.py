"""Stage 2 of VQ-VAE: `python -m training.fit --stage=prior --autoencoder=PATH.keras`.

Freezes a trained autoencoder, encodes the data set to code grids once
(cached atomically on disk, reused by the next run), and trains a prior per
code level (`--prior`: pixelcnn, transformer or maskgit, vq_keras.zoo.PRIORS) with
`model.fit`: for a VQVAE one prior, for a
VQVAE2 the top prior and then each lower prior conditioned on the codes above.
Each level logs to TensorBoard under <logdir>/<level>_prior, backs up there
(a killed run resumes exactly, as stage 1 does: training/resume.py), and is saved as <logdir>/<level>_prior.keras as soon
as it is trained (a rerun skips trained levels). The priors end in
<logdir>/prior.keras: a PixelCNNPrior for a VQVAE, a HierarchicalPrior for a
VQVAE2, which `python -m training.sample` reads beside the autoencoder.
"""

if __name__ == "__main__":  # `python -m training.fit_prior` would otherwise import this and exit 0
    import sys

    print("error: training.fit_prior is stage 2 of training.fit, not a tool of its own. Run: python -m "
          "training.fit --stage=prior --autoencoder=PATH.keras [--prior=pixelcnn|transformer|maskgit] ...",
          file=sys.stderr)
    sys.exit(2)  # the tools' exit code for a usage error

import hashlib
import math
import os
import shlex
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from training import model_files
from training.callbacks import SampleMonitor
from training.data.codes import load_or_encode
from training.data.images import parse_image_size
from training.data.pipeline import data_fingerprint, shuffled_batches
from training.distribute import precision_policy
from training.errors import UsageError
from training.optimizer import extendable_settings, make_optimizer, resume_settings
from training.resume import Backups, configure_determinism, fit_resumable
from training.run_dir import claim_run_dir
from vq_keras.atomic import save_model
from vq_keras.evaluation import level_labels
from vq_keras.models import autoencoder_identity
from vq_keras.zoo import AUTOENCODERS, PRIORS, HierarchicalPrior, generate
from vq_keras.zoo._common import require_one_code_per_position
from vq_keras.zoo._registry import prior_arguments

MONITOR_SAMPLES = 16
# The flags that override a prior preset's architecture; each applies to the kinds whose
# constructor takes an argument of its name.
ARCHITECTURE_FLAGS = ("num_layers", "num_filters", "hidden_dim", "num_heads", "dropout", "label_dropout")


# What stage 2 leaves in its log directory: trained work, then logs (see training/run_dir.py).
# A level file put into a new log directory by hand is reused (adopted), as documented.
RESULTS = ("prior.keras", "*_prior.keras", "*_prior/backup")
ADOPTABLE = ("*_prior.keras",)
LOGS = ("*_prior", "codes")


def train_priors(config, settings_names):
    """Stage 2 for the parsed flags; returns the path of the saved prior."""
    overrides = architecture_overrides(config)  # an unknown --prior before any data is read
    precision_policy(config.mixed_precision)
    keras.utils.set_random_seed(config.seed)
    configure_determinism(config.deterministic, config.jit_compile)
    logdir = Path(config.logdir).absolute()
    autoencoder = load_autoencoder(config.autoencoder, config.model)
    settings = config.settings(settings_names)
    # The priors are trained on this file's codes: one retrained at the same path is another run.
    settings["autoencoder_sha256"] = hashlib.sha256(Path(config.autoencoder).read_bytes()).hexdigest()
    # ... and on this data's: a folder whose files changed is another run (its split and codes moved).
    settings["data_sha256"] = hashlib.sha256(data_fingerprint(config.dataset, config.data_dir).encode()).hexdigest()
    with claim_run_dir(
        logdir, settings, RESULTS, LOGS, config.overwrite, extendable_settings(settings), ADOPTABLE
    ) as run:
        path = _train_levels(config, autoencoder, settings, logdir, overrides)
        run.mark_finished()
    print(f"Saved prior: {path}")
    print(f"TensorBoard logs: {logdir}  (view with: tensorboard --logdir {shlex.quote(str(logdir))})")
    return path


def _train_levels(config, autoencoder, hparams, logdir, overrides):
    """Trains (or reuses) the prior of every level and saves them as <logdir>/prior.keras."""
    data = load_or_encode(
        autoencoder, config.autoencoder, config.dataset, config.data_dir,
        config.code_cache_dir or logdir / "codes", with_labels=config.class_conditional,
        image_size=parse_image_size(config.image_size),
    )
    grids = [codes.shape[1:] for codes in data.codes["train"]]
    priors = make_priors(
        autoencoder, config.model, config.preset, grids, data.num_classes,
        overrides, config.prior, precision_policy(config.mixed_precision),
    )
    settings = resume_settings(hparams)
    trained = []
    for level, (name, prior) in enumerate(zip(level_labels(autoencoder), priors)):
        path = logdir / f"{name}_prior.keras"
        if path.exists():
            print(f"The {name} prior is already trained: {path} (delete it to train it again).")
            prior = _fitting_level(keras.saving.load_model(path), prior, path)
            if not prior.compiled:  # saved without its training state, e.g. taken out of a prior.keras
                prior.compile()
        else:
            monitor = SampleMonitor(
                logdir / f"{name}_prior",
                _sampler(autoencoder, trained, prior, data, config.seed),
                {**hparams, **prior.get_config()},
            )
            backups = fit_prior(prior, data, level, config, logdir / f"{name}_prior", settings, [monitor])
            save_model(prior, path)
            backups.delete()
        trained.append(prior)
        _report(name, prior, data, level, config.batch_size)
    final = trained[0] if len(trained) == 1 else HierarchicalPrior(trained, downsampling=autoencoder.downsampling)
    final.trained_on = autoencoder_identity(autoencoder, source=str(config.autoencoder))
    return save_model(final, logdir / "prior.keras")


# What a trained level must share with the level the autoencoder's codes need; the
# network itself (num_layers, num_filters, ...) may differ.
LEVEL_FIT = ("num_embeddings", "grid_shape", "num_classes", "condition_num_embeddings", "condition_upsampling")


def _fitting_level(trained, expected, path):
    """`trained` (a level file found in the log directory), checked to fit the codes `expected` is for."""
    differ = [
        name for name in LEVEL_FIT
        if _plain(getattr(trained, name, None)) != _plain(getattr(expected, name, None))
    ]
    if differ:
        raise UsageError(
            f"{path} is a prior with " + ", ".join(f"{n}={_plain(getattr(trained, n, None))!r}" for n in differ)
            + ", but this autoencoder and data set need " + ", ".join(f"{n}={_plain(getattr(expected, n))!r}" for n in differ)
            + ". Delete or move that file to train the level, or pass another --logdir."
        )
    return trained


def _plain(value):
    return tuple(int(v) for v in value) if isinstance(value, (tuple, list)) else value


def load_autoencoder(path, model_name):
    """The trained autoencoder in `path`, checked to be the `--model` kind."""
    if not path:
        raise UsageError("--stage=prior needs --autoencoder=PATH.keras, a model.keras saved by stage 1.")
    autoencoder = model_files.load_autoencoder(path, "--autoencoder")
    if model_name not in AUTOENCODERS:
        raise UsageError(f"Unknown model {model_name!r}. Known models: {', '.join(AUTOENCODERS)}.")
    found = type(autoencoder)
    if found is not AUTOENCODERS[model_name]:
        kinds = {cls: name for name, cls in AUTOENCODERS.items()}
        raise UsageError(
            f"--autoencoder={path} holds a {found.__name__}, but --model={model_name} expects a "
            f"{AUTOENCODERS[model_name].__name__}. Pass --model={kinds[found]}."
        )
    try:
        require_one_code_per_position(autoencoder, f"--stage=prior (--autoencoder={path})")
    except ValueError as error:
        raise UsageError(str(error)) from None
    autoencoder.trainable = False
    return autoencoder


def prior_preset_names(model_name, preset, num_levels):
    """The prior preset of every level, top first, for an autoencoder preset name."""
    if num_levels == 1:
        return [preset]
    if num_levels == 2:
        return [f"{preset}_top", f"{preset}_bottom"]
    raise UsageError(
        f"--stage=prior has presets for one- and two-level autoencoders; this {model_name} has "
        f"{num_levels} levels. Build a HierarchicalPrior in Python for it."
    )


def architecture_overrides(config):
    """The prior arguments the architecture flags set (only those given), checked against --prior."""
    kind = config.prior
    if kind not in PRIORS:
        raise UsageError(f"Unknown prior {kind!r} (--prior). Known priors: {', '.join(PRIORS)}.")
    given = {name: getattr(config, name) for name in ARCHITECTURE_FLAGS if getattr(config, name) is not None}
    if given.get("label_dropout") and not config.class_conditional:
        raise UsageError(
            f"--label_dropout={given['label_dropout']} drops class labels, and the priors get none without "
            "--class_conditional. Pass --class_conditional, or drop --label_dropout."
        )
    for name in given:
        if name not in prior_arguments(kind):
            kinds = [other for other in PRIORS if name in prior_arguments(other)]
            raise UsageError(
                f"--{name} does not apply to --prior={kind} ({PRIORS[kind].__name__}), which would ignore it: "
                f"it sets --prior={'|'.join(kinds)}. Drop it, or pass --prior={kinds[0]}."
            )
    return given


def make_priors(autoencoder, model_name, preset, grids, num_classes, overrides=None, kind="pixelcnn", dtype=None):
    """One prior of kind `kind` (a name in PRIORS) per level from its preset, fitted to the
    autoencoder's codebook sizes and grids (and to the data set's classes if
    class-conditional), with `overrides` (e.g. num_layers) applied to every level.

    `dtype`: the priors' Keras dtype policy while they train (e.g. "mixed_bfloat16"). A prior's
    config does not keep it, so a saved prior computes in float32 when loaded (exact cached
    sampling and the generate signature as for any prior file); its weights are float32 either way."""
    prior_type = PRIORS[kind]
    names = prior_preset_names(model_name, preset, len(grids))
    unknown = [name for name in names if name not in prior_type.PRESETS]
    if unknown:
        raise UsageError(
            f"No prior preset {', '.join(map(repr, unknown))} for --stage=prior --prior={kind} --model={model_name} "
            f"--preset={preset}. Known {prior_type.__name__} presets: {', '.join(prior_type.PRESETS)}."
        )
    priors = []
    for level, (name, level_name) in enumerate(zip(names, level_labels(autoencoder))):
        config = {**prior_type.PRESETS[name], **(overrides or {}), "num_embeddings": autoencoder.num_embeddings}
        config.update(grid_shape=tuple(int(s) for s in grids[level]), num_classes=num_classes)
        if level > 0:
            config.update(
                condition_num_embeddings=autoencoder.num_embeddings,
                condition_upsampling=grids[level][0] // grids[level - 1][0],
            )
        try:
            priors.append(prior_type(**config, name=f"{level_name}_prior", dtype=dtype))
        except ValueError as error:
            raise UsageError(f"The {level_name} prior ({kind} preset {name} with {overrides}): {error}") from None
    return priors


def fit_prior(prior, data, level, config, logdir, settings, callbacks):
    """Trains one level's prior with exact resume from the backups under `logdir`."""
    train = tf.data.Dataset.from_tensor_slices(data.examples("train", level))
    count = len(data.codes["train"][level])
    if count < config.batch_size:
        raise UsageError(
            f"The training split has {count} code grids, fewer than one batch "
            f"(--batch_size={config.batch_size}). Use a smaller --batch_size."
        )
    validation = tf.data.Dataset.from_tensor_slices(data.examples("validation", level))
    prior.build_if_needed()
    steps_per_epoch = config.steps_per_epoch or count // config.batch_size
    total_steps = config.epochs * steps_per_epoch
    optimizer = make_optimizer(config.learning_rate, config.learning_rate_decay, total_steps)
    prior.compile(optimizer=optimizer, jit_compile=config.jit_compile)
    print(
        f"Training the {prior.name} ({type(prior).__name__}, {prior.num_embeddings} codes on {prior.grid_shape[0]}x"
        f"{prior.grid_shape[1]} grids, {prior.dtype_policy.name}) on {count} code grids; uniform guessing scores "
        f"log2({prior.num_embeddings}) = {math.log2(prior.num_embeddings):.2f} bits per code."
    )
    backups = Backups(logdir / "backup", settings)
    fit_resumable(
        prior,
        lambda step: shuffled_batches(train, config.batch_size, config.seed, count, step).prefetch(
            tf.data.AUTOTUNE
        ),
        backups,
        epochs=config.epochs,
        steps_per_epoch=steps_per_epoch,
        every_steps=config.backup_every_steps,
        validation_data=validation.batch(config.batch_size).prefetch(tf.data.AUTOTUNE),
        validation_steps=config.validation_steps,
        callbacks=[keras.callbacks.TensorBoard(str(logdir)), *callbacks],
        verbose=2 if os.environ.get("CI") else "auto",
    )
    return backups


def _sampler(autoencoder, trained_above, prior, data, seed):
    """A function drawing MONITOR_SAMPLES images with `prior` at its level, the
    trained priors above it, and (below it, untrained yet) nothing: the images
    are decoded only once every level has a prior, so for a VQVAE2 the top
    prior's epochs show none."""
    if len(trained_above) + 1 < len(level_labels(autoencoder)):
        return None
    labels = None if data.num_classes is None else np.arange(MONITOR_SAMPLES) % data.num_classes
    priors = [*trained_above, prior]

    def sample():
        combined = priors[0] if len(priors) == 1 else HierarchicalPrior(priors, downsampling=autoencoder.downsampling)
        return np.asarray(generate(autoencoder, combined, MONITOR_SAMPLES, seed=seed, labels=labels))

    return sample


def _report(name, prior, data, level, batch_size):
    validation = tf.data.Dataset.from_tensor_slices(data.examples("validation", level)).batch(batch_size)
    results = prior.evaluate(validation, verbose=0, return_dict=True)
    if "bits_per_code" in results:
        score = f"{results['bits_per_code']:.3f} bits per code (uniform: {math.log2(prior.num_embeddings):.3f})"
    else:  # a masked prior has no exact likelihood
        score = f"masked-token loss {results['loss']:.3f} nats (uniform: {math.log(prior.num_embeddings):.3f})"
    print(f"The {name} prior on the validation codes: {score}, accuracy {results['accuracy']:.3f}.")


