"""The cost of the image value check inside the compiled training step.

Every traced call of a zoo autoencoder carries an assertion that the images
are finite and in [0, 1] (`vq_keras/_image_checks.py`): one fused comparison
and reduction over the batch per step. This times the train function that
`model.fit` calls (`model.make_train_function()`, then
`model.train_function(iterator)` over a repeated tf.data batch) of
`VQVAE.from_preset("cifar10")` with the check ("checked") and of the same
model with the check removed ("unchecked": `_checked_images` returns the
images as they are), compiled as training.fit compiles by default
(jit_compile=False; XLA drops assertions, so there is nothing to measure
under XLA). Both run in ONE process, interleaved, the order reversed every
other round, so a changing machine load falls on both alike.

    python -m benchmarks.input_checks --batch_size=32 --rounds=8 --steps=20

Prints per-round step times, the medians and the ratio checked / unchecked,
the machine's load average (os.getloadavg) before and after, and, as a bound
that a shared machine's noise does not swamp, the time of the check alone on
the batch (a tf.function holding only `unit_checked`, 1000 calls).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import statistics  # noqa: E402
import time  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from vq_keras._image_checks import unit_checked  # noqa: E402
from vq_keras.zoo import VQVAE  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("batch_size", 32, "Images per step.")
flags.DEFINE_integer("steps", 20, "Timed steps per contender per round.")
flags.DEFINE_integer("rounds", 8, "Interleaved rounds; medians over rounds are reported.")
flags.DEFINE_integer("warmup", 5, "Untimed steps per contender first (tracing included).")


class UncheckedVQVAE(VQVAE):
    """The zoo VQVAE without any image check (the baseline of the comparison only)."""

    def _checked_images(self, images):
        return images


def train_function(cls, batch):
    keras.utils.set_random_seed(0)
    model = cls.from_preset("cifar10", data_variance=float(np.var(batch)))
    model.compile(optimizer=keras.optimizers.Adam(3e-4), jit_compile=False)
    model.make_train_function()
    iterator = iter(tf.data.Dataset.from_tensors(batch).repeat())
    return lambda: model.train_function(iterator)["loss"]


def main(argv):
    del argv
    print(f"load average before: {os.getloadavg()}", flush=True)
    batch = np.random.default_rng(0).random((FLAGS.batch_size, 32, 32, 3), dtype=np.float32)
    contenders = {"checked": train_function(VQVAE, batch), "unchecked": train_function(UncheckedVQVAE, batch)}
    for step in contenders.values():
        for _ in range(FLAGS.warmup):
            step().numpy()
    times = {name: [] for name in contenders}
    for round_index in range(FLAGS.rounds):
        names = list(contenders) if round_index % 2 == 0 else list(contenders)[::-1]
        for name in names:
            start = time.perf_counter()
            for _ in range(FLAGS.steps):
                loss = contenders[name]()
            loss.numpy()
            times[name].append(1000 * (time.perf_counter() - start) / FLAGS.steps)
        print(f"round {round_index + 1}: " + ", ".join(f"{n} {t[-1]:.1f} ms/step" for n, t in times.items()), flush=True)
    medians = {name: statistics.median(t) for name, t in times.items()}
    ratios = [a / b for a, b in zip(times["checked"], times["unchecked"])]
    print(
        f"median ms/step: checked {medians['checked']:.1f}, unchecked {medians['unchecked']:.1f}; "
        f"ratio of medians {medians['checked'] / medians['unchecked']:.4f}, "
        f"median of per-round ratios {statistics.median(ratios):.4f}"
    )
    check = tf.function(lambda images: unit_checked(images, "VQVAE"))
    images = tf.constant(batch)
    check(images).numpy()
    start = time.perf_counter()
    for _ in range(1000):
        check(images)
    check(images).numpy()
    check_ms = (time.perf_counter() - start)  # 1000 calls: seconds == ms per call
    print(
        f"the check alone: {check_ms:.3f} ms per call ({100 * check_ms / medians['unchecked']:.2f}% of the "
        "median unchecked step; tf.function call overhead included)"
    )
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    app.run(main)
