"""Reconstruction quality of the Sonnet 2 build of the VQ-VAE cifar10 preset on our data.

The peer of the zoo recipe `zoo/vqvae_cifar10/recipe.flags`: the same network
built from Sonnet 2 modules (`benchmarks.sonnet_builds.SonnetVQVAE`, checked equal
to ours by `benchmarks.check_sonnet_builds`), trained with the train step of
Sonnet's VQ-VAE example (`make_sonnet_step`: GradientTape, EMA update in the
forward, `snt.optimizers.Adam`), on exactly the batches `training.fit` feeds
ours (the same TFDS splits, pipeline, seed and shuffle). Every
`--eval_every` steps it prints the validation MSE / train pixel variance over
the whole held-out split and the mean perplexity of its batches (as
`training.fit` reports `val_reconstruction_loss` and `val_perplexity`), and the
training batches' mean over the last 100 steps (the figure Sonnet's example
prints). So the zoo card's figures can be read against the peer's, not only
against the published 0.056.

    pip install ".[bench]"
    python -m benchmarks.peer_quality --data_dir=../shared/tfds --steps=10000
"""

import os

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"

import time  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from benchmarks.sonnet_builds import LEARNING_RATE, SonnetVQVAE, make_sonnet_step  # noqa: E402
from training.data.pipeline import load_image_data  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "cifar10", "TFDS data set (as training.fit's --dataset).")
flags.DEFINE_string("data_dir", None, "TFDS data directory.")
flags.DEFINE_integer("steps", 10_000, "Training steps.")
flags.DEFINE_integer("seed", 0, "Seed of the weights and of the data order (as training.fit's --seed).")
flags.DEFINE_integer("eval_every", 1_000, "Steps between validation passes.")
flags.DEFINE_integer("batch_size", 32, "Batch size.")
flags.DEFINE_float("learning_rate", LEARNING_RATE, "Adam learning rate.")
flags.DEFINE_boolean("jit_compile", True, "XLA-compile the train step (as the zoo recipe does ours).")

TRAIN_WINDOW = 100  # Sonnet's example prints the mean of the last 100 steps.


def evaluate(model, validation, data_variance):
    """(MSE over every validation pixel / data_variance, mean batch perplexity)."""

    @tf.function(jit_compile=FLAGS.jit_compile)
    def batch_figures(images):
        output = model(images, is_training=False)
        squared_error = tf.reduce_sum(tf.square(output["x_recon"] - images))
        return squared_error, tf.cast(tf.size(images), tf.float32), output["vq_outputs"][0]["perplexity"]

    squared_error = pixels = 0.0
    perplexities = []
    for images in validation:
        batch_error, batch_pixels, perplexity = batch_figures(images)
        squared_error += float(batch_error)
        pixels += float(batch_pixels)
        perplexities.append(float(perplexity))
    return squared_error / pixels / data_variance, float(np.mean(perplexities))


def main(argv):
    del argv
    tf.keras.utils.set_random_seed(FLAGS.seed)
    data = load_image_data(FLAGS.dataset, FLAGS.data_dir, FLAGS.batch_size, FLAGS.seed)
    model, train_step = make_sonnet_step(
        SonnetVQVAE, data.data_variance, FLAGS.jit_compile, learning_rate=FLAGS.learning_rate
    )
    print(
        f"Sonnet 2 VQ-VAE (cifar10 preset) on {FLAGS.dataset}: {data.num_train} training images, "
        f"{data.num_validation} validation, pixel variance {data.data_variance:.5f}; "
        f"batch {FLAGS.batch_size}, Adam {FLAGS.learning_rate:g}, jit_compile={FLAGS.jit_compile}",
        flush=True,
    )
    recon_errors, perplexities = [], []
    start = time.perf_counter()
    for step, images in enumerate(data.train.take(FLAGS.steps), start=1):
        result = train_step(images)
        recon_errors.append(float(result["recon_error"]))
        perplexities.append(float(result["perplexity"][0]))
        if step % FLAGS.eval_every == 0 or step == FLAGS.steps:
            val_error, val_perplexity = evaluate(model, data.validation, data.data_variance)
            print(
                f"step {step}: val MSE/variance {val_error:.4f}, val perplexity {val_perplexity:.1f}; "
                f"training batches (last {TRAIN_WINDOW}) {np.mean(recon_errors[-TRAIN_WINDOW:]):.4f}, "
                f"perplexity {np.mean(perplexities[-TRAIN_WINDOW:]):.1f}; "
                f"(last {FLAGS.eval_every}) {np.mean(recon_errors[-FLAGS.eval_every:]):.4f}; "
                f"{time.perf_counter() - start:.0f} s",
                flush=True,
            )


if __name__ == "__main__":
    app.run(main)
