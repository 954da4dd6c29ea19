"""Sampling throughput of PixelCNNPrior: codes drawn per second on 8x8 and 32x32 grids.

A side-by-side benchmark, not a test. For each grid size it times drawing
`--num` code grids from `PixelCNNPrior.from_preset(--preset)` (random weights:
the speed does not depend on them) three ways, in one process, interleaved,
the order reversed every other round:

* ours: `prior.sample(num, seed=round, grid_shape=(g, g))`, one compiled
  tf.while_loop over the positions that runs the network only on the rows
  within reach of the drawn position (`PixelCNNPrior.sampling_window`);
* ours, whole grid: the same compiled loop with the window set to the whole
  grid (the network runs on every row at every position), to show what the
  window buys;
* Python loop: the pattern of the keras.io VQ-VAE example, a Python loop over
  the positions that calls the network on the whole grid and draws the
  position with `tfd.Categorical`; the network call is a compiled
  `tf.function` (a stronger baseline than the example's `model.predict`).

Reported per grid: median codes/second over rounds (num * g * g / seconds)
and the ratios to the Python loop. The first call of each contender (tracing
and compilation) is not timed, unless --nowarmup.

Run from the repository root (a 32x32 grid of the cifar10 preset takes
minutes per draw on a CPU):

    python -m benchmarks.sampling --grids=8 --num=16 --rounds=3
    python -m benchmarks.sampling --grids=32 --num=1 --rounds=1 --nowarmup
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import time  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402
from absl import app, flags  # noqa: E402

from vq_keras.zoo import PixelCNNPrior  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("grids", ["8", "32"], "Square grid sizes to sample.")
flags.DEFINE_integer("num", 16, "Code grids drawn per call.")
flags.DEFINE_integer("rounds", 3, "Interleaved timed rounds; the median is reported.")
flags.DEFINE_string("preset", "cifar10", "The PixelCNNPrior preset.")
flags.DEFINE_list(
    "contenders", ["ours", "ours, whole grid", "Python loop"],
    "Which samplers to time (comma-separated; the ratios need the Python loop).",
)
flags.DEFINE_boolean(
    "warmup", True,
    "Sample once untimed per contender first. Off for big grids on a CPU, where one draw takes minutes "
    "and tracing (seconds) is a negligible part of the first timed call.",
)


class WholeGridPrior(PixelCNNPrior):
    """The same prior with the row window switched off (the network sees every row)."""

    def sampling_window(self, height):
        return height


def python_loop_sampler(prior):
    """Draws codes with a Python loop over positions, as the keras.io example does."""
    forward = tf.function(lambda codes: prior(codes, training=False))

    def sample(num, seed, grid):
        codes = np.zeros((num, grid, grid), np.int32)
        key = tf.constant([0, seed], tf.int32)
        for position in range(grid * grid):
            row, col = divmod(position, grid)
            logits = forward(tf.constant(codes))[:, row, col]
            step_key = tf.random.experimental.stateless_fold_in(key, position)
            codes[:, row, col] = tfp.distributions.Categorical(logits=logits).sample(seed=step_key).numpy()
        return codes

    return sample


def contenders(preset):
    ours = PixelCNNPrior.from_preset(preset, dropout=0.0)
    whole = WholeGridPrior.from_preset(preset, dropout=0.0)
    whole.set_weights(ours.get_weights())
    return {
        "ours": lambda num, seed, grid: ours.sample(num, seed=seed, grid_shape=(grid, grid)).numpy(),
        "ours, whole grid": lambda num, seed, grid: whole.sample(num, seed=seed, grid_shape=(grid, grid)).numpy(),
        "Python loop": python_loop_sampler(ours),
    }, ours


def time_grid(samplers, num, grid, rounds, warmup=True):
    for sample in samplers.values() if warmup else ():
        sample(num, 0, grid)  # trace and compile
    seconds = {name: [] for name in samplers}
    for round_index in range(rounds):
        order = list(samplers) if round_index % 2 == 0 else list(reversed(samplers))
        for name in order:
            start = time.perf_counter()
            samplers[name](num, round_index + 1, grid)
            seconds[name].append(time.perf_counter() - start)
    return {name: num * grid * grid / float(np.median(times)) for name, times in seconds.items()}


def main(argv):
    del argv
    samplers, prior = contenders(FLAGS.preset)
    unknown = set(FLAGS.contenders) - set(samplers)
    if unknown:
        raise app.UsageError(f"Unknown --contenders {sorted(unknown)}; known: {', '.join(samplers)}.")
    samplers = {name: samplers[name] for name in FLAGS.contenders}
    print(
        f"PixelCNNPrior.from_preset({FLAGS.preset!r}): {prior.num_layers} gated blocks, "
        f"{prior.num_filters} filters, {prior.num_attention_layers} attention layers, "
        f"{prior.num_embeddings} codes; vertical reach {prior.vertical_reach()} rows; num={FLAGS.num}."
    )
    print("| grid | window rows | ours codes/s | ours, whole grid codes/s | Python loop codes/s | ours / loop | whole grid / loop |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for grid in (int(g) for g in FLAGS.grids):
        rates = time_grid(samplers, FLAGS.num, grid, FLAGS.rounds, FLAGS.warmup)
        rate = lambda name: f"{rates[name]:.1f}" if name in rates else "-"  # noqa: E731
        loop = rates.get("Python loop")
        ratio = lambda name: f"{rates[name] / loop:.2f}" if loop and name in rates else "-"  # noqa: E731
        print(
            f"| {grid}x{grid} | {prior.sampling_window(grid)} | {rate('ours')} | {rate('ours, whole grid')} "
            f"| {rate('Python loop')} | {ratio('ours')} | {ratio('ours, whole grid')} |",
            flush=True,
        )


if __name__ == "__main__":
    app.run(main)
