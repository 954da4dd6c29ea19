"""Trains the classifier whose features measure generated images (`vq_keras.sample_quality`).

    python -m training.fit_classifier --flagfile=zoo/classifier_cifar10/recipe.flags

Trains `ImageClassifier.from_preset(--preset)` on the training split with random horizontal
flips and random 32x32 crops of the 4-pixel reflect-padded image, AdamW with a cosine-decayed
learning rate, for --epochs passes; the held-out split is read once, at the end, for the test
accuracy (nothing is selected on it). Writes <--output>/classifier.keras (no optimizer state)
and results.json (the test accuracy, the recipe and the commit).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if __name__ == "__main__":  # the tool as a user runs it: before TensorFlow is imported
    from training.console import quiet_native_logs

    quiet_native_logs()

import json  # noqa: E402
import math  # noqa: E402
from pathlib import Path  # noqa: E402

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from training.data import held_out_split, naming_bad_images, read_splits  # noqa: E402
from training.errors import UsageError, exiting_on_usage_errors  # noqa: E402
from training.evaluate import commit, to_unit_interval  # noqa: E402
from vq_keras.atomic import atomic_file, save_model, why_not_writable  # noqa: E402
from vq_keras.zoo.image_classifier import ImageClassifier  # noqa: E402

PADDING = 4  # pixels of reflect padding before the random crop (the usual CIFAR augmentation)
SHUFFLE_BUFFER = 10_000


def define_flags(flag_values=flags.FLAGS):
    """Defines the tool's flags on `flag_values` (a test parses a recipe with its own)."""
    for define, name, default, help_text in (
        (flags.DEFINE_string, "dataset", "cifar10", "Data set with labels: a TFDS name or cifar10_sample (bundled)."),
        (flags.DEFINE_string, "data_dir", None, "TFDS data directory (e.g. ../shared/tfds)."),
        (flags.DEFINE_string, "preset", "cifar10", "The ImageClassifier architecture preset."),
        (flags.DEFINE_integer, "epochs", 12, "Passes over the training split."),
        (flags.DEFINE_integer, "batch_size", 128, "Images per training step."),
        (flags.DEFINE_float, "learning_rate", 2e-3, "AdamW's peak learning rate (cosine-decayed to 0 over the run)."),
        (flags.DEFINE_float, "weight_decay", 0.05, "AdamW's decoupled weight decay."),
        (flags.DEFINE_integer, "seed", 0, "Seed of the weights, the shuffle and the augmentation."),
        (flags.DEFINE_string, "output", None, "The folder to write classifier.keras and results.json to."),
    ):
        define(name, default, help_text, flag_values=flag_values)


def augment(image, label):
    """A random horizontal flip and a random crop of the reflect-padded image."""
    shape = tf.shape(image)
    padded = tf.pad(image, [[PADDING, PADDING], [PADDING, PADDING], [0, 0]], mode="REFLECT")
    return tf.image.random_crop(tf.image.random_flip_left_right(padded), shape), label


def to_unit(image, label):
    return to_unit_interval(image), tf.cast(label, tf.int32)


def run(dataset, data_dir, preset, epochs, batch_size, learning_rate, weight_decay, seed, output):
    """Trains, measures and writes the classifier; returns the results dict."""
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if value < 1:
            raise UsageError(f"--{name} must be a positive integer. Received: --{name}={value}")
    if not output:
        raise UsageError("--output is required: the folder to write classifier.keras and results.json to.")
    if why_not_writable(output, folder=True):
        raise UsageError(f"--output={output}: {why_not_writable(output, folder=True)}.")
    if preset not in ImageClassifier.PRESETS:
        raise UsageError(f"Unknown --preset={preset!r}. ImageClassifier presets: {', '.join(ImageClassifier.PRESETS)}.")
    keras.utils.set_random_seed(seed)
    train, held_out, num_classes, _ = read_splits(dataset, data_dir, with_labels=True)
    if num_classes is None:
        raise UsageError(f"--dataset={dataset} has no class labels; the classifier needs them.")
    with naming_bad_images():
        num_train = int(train.reduce(0, lambda count, _: count + 1))
    steps = math.ceil(num_train / batch_size) * epochs
    batches = (
        train.cache().shuffle(SHUFFLE_BUFFER, seed=seed).map(augment, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size).map(to_unit).prefetch(tf.data.AUTOTUNE)
    )
    model = ImageClassifier.from_preset(preset, num_classes=num_classes)
    # AdamW, not training.optimizer's Adam: a classifier this size overfits CIFAR-10 without decay.
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=steps)
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=weight_decay),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    verbose = 2 if os.environ.get("CI") else "auto"
    model.fit(batches, epochs=epochs, verbose=verbose, shuffle=False)  # the pipeline shuffles
    test = held_out.batch(500).map(to_unit).prefetch(tf.data.AUTOTUNE)
    _, accuracy = model.evaluate(test, verbose=0)
    results = {
        "classifier": ImageClassifier.__name__, "preset": preset, "dataset": dataset,
        "split": held_out_split(dataset, data_dir), "num_images": int(sum(1 for _ in held_out)),
        "test_accuracy": float(accuracy), "feature_dim": model.widths[-1], "epochs": epochs,
        "batch_size": batch_size, "learning_rate": learning_rate, "weight_decay": weight_decay, "seed": seed,
        "commit": commit(),
    }
    Path(output).mkdir(parents=True, exist_ok=True)
    save_model(without_optimizer(model), Path(output) / ImageClassifier.PRESET_FILE)
    with atomic_file(Path(output) / "results.json") as temporary:
        temporary.write_text(json.dumps(results, indent=1) + "\n")
    return results


def without_optimizer(model):
    """A copy with the same weights and no training state (a shipped file need not carry Adam's moments)."""
    copy = ImageClassifier.from_config(model.get_config())
    copy.build_if_needed()
    copy.set_weights(model.get_weights())
    return copy


def main(argv):
    FLAGS = flags.FLAGS
    with exiting_on_usage_errors(argv):
        results = run(
            FLAGS.dataset, FLAGS.data_dir, FLAGS.preset, FLAGS.epochs, FLAGS.batch_size, FLAGS.learning_rate,
            FLAGS.weight_decay, FLAGS.seed, FLAGS.output,
        )
    print(f"Test accuracy on {results['dataset']} {results['split']} ({results['num_images']} images): "
          f"{results['test_accuracy']:.4f}")
    print(f"Wrote {Path(FLAGS.output) / ImageClassifier.PRESET_FILE} and {Path(FLAGS.output) / 'results.json'}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
