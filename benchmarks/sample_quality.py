"""How the sampling options move the sample-quality figures of the zoo's priors (not a test).

For each shipped prior over vqvae_cifar10's codes and each sampling setting, draws --num images
(100 per batch, batch i with seed i; labels i mod 10 for class-conditional priors, as
`training.evaluate --samples` does) and prints their Frechet distance to the CIFAR-10 training
images on classifier_cifar10's features and their class accuracy. The training images' features
are computed once, so the settings are compared on one reference.

    python -m benchmarks.sample_quality --data_dir=../shared/tfds \\
        --priors=pixelcnn_vqvae_cifar10,transformer_vqvae_cifar10 --settings="{};top_k=100;top_k=20;temperature=0.8"
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import time  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from training import model_files  # noqa: E402
from training.data import read_splits  # noqa: E402
from vq_keras.sample_quality import SAMPLE_BATCH, classifier_outputs, feature_statistics, frechet_distance  # noqa: E402
from vq_keras.zoo import generate  # noqa: E402

flags.DEFINE_string("data_dir", None, "TFDS data directory holding cifar10 (e.g. ../shared/tfds).")
flags.DEFINE_string("autoencoder", "vqvae_cifar10", "The autoencoder the priors' codes decode with.")
flags.DEFINE_list("priors", ["pixelcnn_vqvae_cifar10", "transformer_vqvae_cifar10"], "Priors to sample.")
flags.DEFINE_string("settings", "{};top_k=100;top_k=20;temperature=0.8", "Sampling settings, ';'-separated.")
flags.DEFINE_integer("num", 1000, "Images per prior and setting (a multiple of 100).")
FLAGS = flags.FLAGS


def parse_setting(text):
    """"top_k=20,temperature=0.9" -> {"top_k": 20, "temperature": 0.9}; "{}" -> {}."""
    if text.strip() in ("", "{}"):
        return {}
    pairs = (item.split("=") for item in text.split(","))
    return {name: (int(value) if name in ("top_k", "num_steps") else float(value)) for name, value in pairs}


def main(argv):
    classifier = model_files.load_classifier("classifier_cifar10", "--classifier")
    train, _, _, _ = read_splits("cifar10", FLAGS.data_dir)
    batches = train.batch(500).map(lambda images: tf.cast(images, tf.float32) / 255.0)
    reference = feature_statistics(classifier_outputs(classifier, batches)[0])
    autoencoder = model_files.load_autoencoder(FLAGS.autoencoder, "--autoencoder")
    print(f"{'prior':28s} {'setting':30s} {'Frechet distance':>16s} {'class accuracy':>15s}  seconds")
    for name in FLAGS.priors:
        prior = model_files.load_prior(name, "--priors")
        for setting in map(parse_setting, FLAGS.settings.split(";")):
            started = time.perf_counter()
            labels = np.arange(FLAGS.num) % 10
            features, predicted = classifier_outputs(classifier, (
                generate(autoencoder, prior, SAMPLE_BATCH, seed=index, **setting,
                         labels=labels[:SAMPLE_BATCH] if prior.num_classes else None)
                for index in range(FLAGS.num // SAMPLE_BATCH)
            ))
            distance = frechet_distance(feature_statistics(features), reference)
            accuracy = f"{np.mean(predicted == labels):.1%}" if prior.num_classes else "-"
            print(f"{name:28s} {str(setting):30s} {distance:16.2f} {accuracy:>15s}  {time.perf_counter() - started:.0f}")


if __name__ == "__main__":
    app.run(main)
