"""Flags more than one tool defines, each defined and checked in one place."""

import math

from absl import flags

from training.errors import UsageError
from training.distribute import PRECISIONS, STRATEGIES
from training.optimizer import LEARNING_RATE_DECAYS
from training.resume import DEFAULT_BACKUP_EVERY_STEPS
from training.data import SAMPLE_DATASET
from vq_keras.layers import QUANTIZERS
from vq_keras.layers._base_quantizer import GRADIENTS
from vq_keras.layers._registry import quantizer_arguments, quantizer_parameters
from vq_keras.zoo import AUTOENCODERS as MODELS
from vq_keras.zoo import PRIORS


# `generate`'s sampling arguments, each the flag of its name (--seed aside: every tool has one).
SAMPLING_FLAGS = ("temperature", "top_k", "top_p", "num_steps", "guidance")


def define_sampling_flags(seed_help):
    """--seed and the SAMPLING_FLAGS: how images are drawn from a prior."""
    flags.DEFINE_integer("seed", 0, seed_help)
    flags.DEFINE_float("temperature", 1.0, "Softmax temperature (> 0); below 1 sharpens the distribution.")
    flags.DEFINE_integer("top_k", None, "Draw each code among its top_k most probable codes (default: all).")
    flags.DEFINE_float(
        "top_p", None, "Nucleus sampling: draw among the most probable codes whose probabilities sum to top_p, in (0, 1]."
    )
    flags.DEFINE_integer("num_steps", None, "Masked priors (MaskGIT): parallel decoding steps (default: the prior's).")
    flags.DEFINE_float(
        "guidance", None,
        "Classifier-free guidance scale (>= 0) for priors trained with --label_dropout: above 1 steers each "
        "image harder towards its class (default: none).",
    )


def define_pairing_flag():
    """--any_autoencoder: for the tools that take an --autoencoder and the --prior trained on its codes."""
    flags.DEFINE_boolean(
        "any_autoencoder", False,
        "Use --prior with an --autoencoder other than the one it was trained on (refused by default: the "
        "codes mean other things to another decoder, so the samples are noise).",
    )


def sampling_arguments(flag_values):
    """The parsed SAMPLING_FLAGS, as `generate`'s keyword arguments."""
    return {name: getattr(flag_values, name) for name in SAMPLING_FLAGS}


def check_sampling(seed, temperature=1.0, top_k=None, top_p=None, num_steps=None, guidance=None):
    """UsageErrors for sampling flags out of range, naming the value received."""
    if not 0 <= seed < 2**31:
        raise UsageError(f"--seed must be an integer in [0, 2**31) = [0, {2**31 - 1}]. Received: --seed={seed}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise UsageError(
            "--temperature must be a finite number > 0 (1 samples the prior as trained; below 1 sharpens it, "
            f"above 1 flattens it). Received: --temperature={temperature}"
        )
    if top_k is not None and top_k < 1:
        raise UsageError(
            f"--top_k must be at least 1 (draw each code among its top_k most probable codes), or left out to draw "
            f"among all. Received: --top_k={top_k}"
        )
    if top_p is not None and not 0 < top_p <= 1:
        raise UsageError(
            "--top_p must be in (0, 1] (draw among the most probable codes whose probabilities sum to top_p), or "
            f"left out to draw among all. Received: --top_p={top_p}"
        )
    if num_steps is not None and num_steps < 1:
        raise UsageError(
            f"--num_steps must be at least 1 (the parallel decoding steps of a masked prior), or left out for "
            f"the prior's own. Received: --num_steps={num_steps}"
        )
    if guidance is not None and not (math.isfinite(guidance) and guidance >= 0):
        raise UsageError(
            "--guidance must be a finite number >= 0 (the classifier-free guidance scale: 1 samples as without "
            f"it, above 1 steers each image towards its class), or left out. Received: --guidance={guidance}"
        )


# ------------------------------------------------------------------ training.fit


def define_fit_flags():
    """Every flag of training.fit (both stages), with its validators."""
    flags.DEFINE_string(
        "dataset", SAMPLE_DATASET,
        f"A TFDS image data set by name (cifar10, mnist, svhn_cropped, celeb_a, ...), "
        f"folder:PATH for a folder of images, or {SAMPLE_DATASET} (bundled, offline).",
    )
    flags.DEFINE_string("data_dir", None, "TFDS data directory (default: $TFDS_DATA_DIR or TFDS's own).")



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
    flags.DEFINE_string(
        "mixed_precision", "none",
        f"Keras dtype policy of the training: one of {', '.join(PRECISIONS)} (--stage=prior: the saved priors "
        "compute in float32).",
    )

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
    "mixed_precision", "epochs", "steps_per_epoch", "batch_size", "learning_rate", "learning_rate_decay", "seed", "deterministic",
    "jit_compile",
)
# May differ between the runs of one log directory: where things are, how often to back up, what to show.
FREE_FLAGS = ("data_dir", "logdir", "overwrite", "backup_every_steps", "validation_steps", "monitor_images", "code_cache_dir")


class RunConfig:
    """The settings of one training.fit run, by flag name (`config.batch_size`): every flag in
    AUTOENCODER_SETTINGS, PRIOR_SETTINGS and FREE_FLAGS, read once from the parsed flags, so
    the run reads no global flag state. Frozen: a run does not change its own settings."""

    def __init__(self, **values):
        self.__dict__.update(values)

    @classmethod
    def from_flags(cls, flag_values):
        """The run the parsed `flag_values` describe, after refusing flags the --stage would ignore."""
        check_stage_flags(flag_values)
        names = dict.fromkeys((*AUTOENCODER_SETTINGS, *PRIOR_SETTINGS, *FREE_FLAGS))
        return cls(**{name: flag_values[name].value for name in names})

    def __setattr__(self, name, value):
        raise AttributeError(f"A RunConfig is frozen: build another to change --{name}.")

    def settings(self, names):
        """{name: value} of the settings `names` (e.g. PRIOR_SETTINGS), as a run records them."""
        return {name: getattr(self, name) for name in names}


def check_stage_flags(flag_values):
    """Refuses a flag given on the command line that the chosen --stage does not read."""
    other = {"autoencoder": (PRIOR_SETTINGS, "code_cache_dir"), "prior": (AUTOENCODER_SETTINGS, "monitor_images")}
    this = AUTOENCODER_SETTINGS if flag_values.stage == "autoencoder" else PRIOR_SETTINGS
    names, extra = other[flag_values.stage]
    unused = [name for name in (*names, extra) if name not in this and flag_values[name].present]
    if unused:
        other_stage = "prior" if flag_values.stage == "autoencoder" else "autoencoder"
        raise UsageError(
            f"{', '.join(f'--{name}' for name in unused)} only applies to --stage={other_stage}, and this is "
            f"--stage={flag_values.stage}, which would ignore it. Drop it, or pass --stage={other_stage}."
        )


def kinds_taking(argument):
    """The quantizer kinds whose constructor takes `argument`, as "vq|ema"."""
    return "|".join(kind for kind in QUANTIZERS if argument in quantizer_arguments(kind))


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


def codebook_overrides(config):
    """The model and quantizer arguments the quantizer flags set (only those given),
    checked against the quantizer kind (--quantizer, or the preset's)."""
    flag = lambda name: getattr(config, name, None)  # noqa: E731
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
