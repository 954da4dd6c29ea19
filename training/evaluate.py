"""Measures a trained autoencoder, and a prior over its codes, on a data set's held-out split.

    python -m training.evaluate --autoencoder=vqvae_cifar10 --prior=pixelcnn_vqvae_cifar10 \
        --dataset=cifar10 --data_dir=../shared/tfds --output=results.json

--autoencoder (alias --model) and --prior take a shipped zoo entry's name (VQVAE.presets() lists
them), an entry or run folder, or a .keras file. Over the whole held-out split it measures what
`vq_keras.evaluation.evaluate` does (reconstruction MSE / training pixel variance, PSNR, SSIM; per
level perplexity, codes used and, with a prior, bits per code), prints them as a table and writes
them as JSON with the commit, data set and split they were measured on. `--card=README.md` also
writes that table into a model card (between the markers CARD_BEGIN and CARD_END, appended if it
has none), and `--picture=reconstructions.png` the first 8 held-out images above their
reconstructions, each pixel shown as --picture_scale pixels. `--samples=1000` also draws 1000
images from the prior and reports their Frechet distance to the training images and their class
accuracy on `--classifier`'s features, beside the same figures for 1000 held-out images and their
reconstructions (`vq_keras.sample_quality`). A prior that does not fit the model, or images the
model cannot take, are an error before any data is read.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if __name__ == "__main__":  # the tool as a user runs it: before TensorFlow is imported
    from training.console import quiet_native_logs

    quiet_native_logs()

import json  # noqa: E402
import subprocess  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from training import model_files  # noqa: E402
from training.callbacks import tile  # noqa: E402
from training.data import held_out_split, image_spec_or_none, naming_bad_images, pixel_variance, read_splits  # noqa: E402
from training.data.images import check_batch_fits_memory, parse_image_size  # noqa: E402
from training.errors import UsageError, exiting_on_usage_errors  # noqa: E402
from training.flags import check_sampling, define_pairing_flag, define_sampling_flags, sampling_arguments  # noqa: E402
from vq_keras.atomic import atomic_file, why_not_writable  # noqa: E402
from vq_keras.evaluation import evaluate  # noqa: E402
from vq_keras.sample_quality import sample_quality  # noqa: E402
from vq_keras.zoo.generation import generation_grids  # noqa: E402

REPOSITORY = Path(__file__).resolve().parents[1]
CARD_BEGIN = "<!-- results table: written by training.evaluate --card from results.json -->"
CARD_END = "<!-- end of results table -->"
PICTURE_IMAGES = 8


def define_flags():
    flags.DEFINE_string(
        "autoencoder", None, "The autoencoder: a zoo entry's name, an entry or run folder, or a .keras file."
    )
    flags.DEFINE_alias("model", "autoencoder")  # its name before every tool said --autoencoder
    flags.DEFINE_string("prior", None, "Optional prior over its codes: an entry's name, a folder or a .keras file.")
    flags.DEFINE_string("dataset", "cifar10", "Data set: a TFDS name, cifar10_sample (bundled) or folder:PATH.")
    flags.DEFINE_string("data_dir", None, "TFDS data directory (e.g. ../shared/tfds).")
    flags.DEFINE_string("image_size", None, "N or HxW: bring the images to this size (as training.fit does).")
    flags.DEFINE_integer("batch_size", 100, "Images per evaluation batch.")
    flags.DEFINE_string("output", None, "Where to write the results as JSON (written atomically).")
    flags.DEFINE_string("card", None, "A model card (Markdown) to write the results table into.")
    flags.DEFINE_string("picture", None, "A PNG to write 8 held-out images and their reconstructions to.")
    flags.DEFINE_integer("picture_scale", 4, "Screen pixels per image pixel in --picture (nearest neighbour).")
    flags.DEFINE_integer(
        "samples", 0, "With --prior: draw this many images and measure them (Frechet distance and class accuracy "
        "on --classifier's features; vq_keras.sample_quality). 0: do not sample."
    )
    flags.DEFINE_string("classifier", "classifier_cifar10", "--samples: the ImageClassifier whose features measure the images.")
    define_sampling_flags("--samples: the seed of the first 100 samples (each next 100: +1).")
    define_pairing_flag()


def to_unit_interval(images):
    return tf.cast(images, tf.float32) / 255.0


def measured(model, prior, images, variance):
    """`evaluate`'s figures, with an undecodable image or an empty split as a UsageError."""
    try:
        with naming_bad_images():
            return evaluate(model, images, variance, prior=prior)
    except ValueError as error:
        raise UsageError(str(error)) from None


def check_sampling_flags(prior_path, samples, seed, sampling):
    if samples < 0 or samples == 1:
        raise UsageError(f"--samples must be 0 (no sampling) or at least 2. Received: --samples={samples}")
    if samples and not prior_path:
        raise UsageError(f"--samples={samples} draws images from a prior: pass --prior too.")
    check_sampling(seed, **sampling)


def measured_samples(model, prior, classifier, reference, held_out, samples, seed, sampling):
    """`sample_quality`'s figures, with images the classifier cannot take as a UsageError."""
    if classifier.num_channels != model.num_channels:
        raise UsageError(
            f"--classifier takes images of {classifier.num_channels} channels, but --autoencoder makes {model.num_channels}."
        )
    try:
        with naming_bad_images():
            return sample_quality(model, prior, classifier, reference, held_out, samples, seed, **sampling)
    except ValueError as error:
        raise UsageError(str(error)) from None


def check_prior_fits(model, prior, image_shape):
    """A UsageError unless `prior` models the code grids of `model` for these images."""
    if prior is None:
        return
    try:
        generation_grids(model, prior, image_shape[:2] if image_shape and None not in image_shape[:2] else None)
    except (TypeError, ValueError) as error:
        raise UsageError(f"--prior does not fit --autoencoder: {error}") from None


def commit():
    """The repository commit the code ran at ("<hash>-dirty" with uncommitted changes), or None."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPOSITORY), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPOSITORY), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{head}-dirty" if dirty else head


def run(model_path, prior_path, dataset, data_dir=None, image_size=None, batch_size=100, output=None, card=None,
        picture=None, picture_scale=4, samples=0, classifier="classifier_cifar10", seed=0, sampling=None,
        any_autoencoder=False):
    """Loads, checks, measures and writes the results (to `output`, `card`, `picture` if given);
    returns them. With `samples` > 0 they hold `vq_keras.sample_quality`'s figures under "samples",
    the images drawn with `sampling` (`generate`'s temperature, top_k, top_p, num_steps)."""
    sampling = {name: value for name, value in (sampling or {}).items() if value is not None}
    check_sampling_flags(prior_path, samples, seed, sampling)
    if batch_size < 1:
        raise UsageError(f"--batch_size must be a positive integer. Received: --batch_size={batch_size}")
    if picture_scale < 1:
        raise UsageError(f"--picture_scale must be a positive integer. Received: --picture_scale={picture_scale}")
    for flag, path, kind in (("--output", output, ".json"), ("--card", card, ".md"), ("--picture", picture, ".png")):
        if path and why_not_writable(path):
            raise UsageError(f"{flag}={path}: {why_not_writable(path)}. Pass a {kind} path in a folder you can write to.")
    model = model_files.load_autoencoder(model_path, "--autoencoder")
    prior = model_files.load_prior_for(model, prior_path, any_autoencoder) if prior_path else None
    measure = model_files.load_classifier(classifier, "--classifier") if samples else None
    size = parse_image_size(image_size)
    check_batch_fits_memory(size, model.num_channels, batch_size)
    image_shape = image_spec_or_none(dataset, data_dir, size)
    model_files.check_images_fit(
        model, image_shape, dataset, "--autoencoder", "Pass a data set of such images, or an autoencoder built for these."
    )
    check_prior_fits(model, prior, image_shape)
    with_labels = getattr(prior, "num_classes", None) is not None
    train, held_out, num_classes, _ = read_splits(dataset, data_dir, with_labels=with_labels, image_size=size)
    if with_labels and num_classes != prior.num_classes:
        raise UsageError(
            f"--prior is conditioned on {prior.num_classes} classes, but --dataset={dataset} has {num_classes}."
        )
    if with_labels:
        train = train.map(lambda image, label: image)
    with naming_bad_images():
        variance = pixel_variance(train)
    unit = (lambda image, label: (to_unit_interval(image), tf.cast(label, tf.int32))) if with_labels else to_unit_interval
    images = held_out.batch(batch_size).map(unit).prefetch(tf.data.AUTOTUNE)
    results = {
        "model": str(model_path), "prior": prior_path and str(prior_path),
        "dataset": dataset, "split": held_out_split(dataset, data_dir), "image_size": image_size,
        **measured(model, prior, images, variance), "commit": commit(),
    }
    if samples:
        reference = train.batch(batch_size).map(to_unit_interval)
        results["samples"] = {
            "classifier": str(classifier), "sampling": sampling,
            **measured_samples(model, prior, measure, reference, images, samples, seed, sampling),
        }
    if output:
        with atomic_file(output) as temporary:
            temporary.write_text(json.dumps(results, indent=1) + "\n")
    if card:
        write_card(card, results)
    if picture:
        write_picture(model, images, picture, picture_scale)
    return results


def table(results):
    """The results as a Markdown table: the image figures, then a row per level."""
    lines = [
        f"{results['dataset']} {results['split']} split, {results['num_images']} images:",
        "",
        "| MSE / variance | PSNR (dB) | SSIM |",
        "| ---: | ---: | ---: |",
        f"| {results['mse_over_variance']:.4f} | {results['psnr']:.2f} | {results['ssim']:.4f} |",
        "",
        "| level | codes | perplexity | codes used | bits per code |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, level in results["levels"].items():
        bits = "-" if level["bits_per_code"] is None else f"{level['bits_per_code']:.3f}"
        if "masked_token_loss" in level:  # a masked prior has no exact likelihood
            bits = f"- (masked-token loss {level['masked_token_loss']:.3f} nats)"
        lines.append(
            f"| {name} | {level['num_embeddings']} | {level['perplexity']:.1f} | {level['codebook_usage']:.1%} | {bits} |"
        )
    if "samples" in results:
        lines += ["", *sample_table(results["samples"])]
    return "\n".join(lines)


def sample_table(figures):
    """The lines of `sample_quality`'s figures: the samples' beside the real and reconstructed scale."""
    accuracy = lambda prefix: (  # noqa: E731
        f"{figures[prefix + 'class_accuracy']:.1%}" if prefix + "class_accuracy" in figures else "-"
    )
    drawn = ", ".join(f"{name} {value}" for name, value in figures.get("sampling", {}).items()) or "as trained"
    return [
        f"{figures['num_samples']} samples (seed {figures['seed']}, {drawn}) against the {figures['num_reference_images']} "
        f"training images, on {figures['classifier']}'s {figures['feature_dim']} features (not Inception's: "
        "compare within this table):",
        "",
        "| images | Frechet distance | class accuracy |",
        "| --- | ---: | ---: |",
        f"| samples | {figures['frechet_distance']:.4g} | {accuracy('')} |",
        f"| held-out real images (the scale) | {figures['real_frechet_distance']:.4g} | {accuracy('real_')} |",
        f"| their reconstructions | {figures['reconstruction_frechet_distance']:.4g} | {accuracy('reconstruction_')} |",
    ]


def write_card(card, results):
    """Writes `table(results)` into the Markdown file `card` between CARD_BEGIN and CARD_END
    (replacing what was there; appended with the markers if the card has none)."""
    path = Path(card)
    text = path.read_text() if path.exists() else ""
    block = f"{CARD_BEGIN}\n{table(results)}\n{CARD_END}"
    if CARD_BEGIN in text and CARD_END in text:
        before, rest = text.split(CARD_BEGIN, 1)
        text = before + block + rest.split(CARD_END, 1)[1]
    else:
        text = f"{text.rstrip()}\n\n{block}\n" if text.strip() else f"{block}\n"
    with atomic_file(path) as temporary:
        temporary.write_text(text)


def write_picture(model, images, path, scale):
    """The first PICTURE_IMAGES held-out images (top row) above their reconstructions, each
    pixel repeated `scale` times across and down (a 32x32 tile at 32 pixels is too small to see)."""
    batch = next(iter(images.unbatch().batch(PICTURE_IMAGES)))
    batch = batch[0] if isinstance(batch, tuple) else batch  # (images, labels) for a class-conditional prior
    rows = np.concatenate([batch.numpy(), np.asarray(model.reconstruct(batch))])
    grid = tile(rows, columns=len(batch), scale=scale)[0]
    with atomic_file(path) as temporary:
        tf.io.write_file(str(temporary), tf.io.encode_png(np.round(grid * 255).astype(np.uint8)))


def main(argv):
    FLAGS = flags.FLAGS
    with exiting_on_usage_errors(argv):
        results = run(
            FLAGS.autoencoder, FLAGS.prior, FLAGS.dataset, FLAGS.data_dir, FLAGS.image_size, FLAGS.batch_size, FLAGS.output,
            FLAGS.card, FLAGS.picture, FLAGS.picture_scale, FLAGS.samples, FLAGS.classifier, FLAGS.seed,
            sampling_arguments(FLAGS), FLAGS.any_autoencoder,
        )
    print(table(results))
    written = [path for path in (FLAGS.output, FLAGS.card, FLAGS.picture) if path]
    if written:
        print(f"\nWrote {', '.join(written)}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
