"""Sampling throughput of PixelCNNPrior: cached vs full sampling, beside a Python loop and the compute floor.

A side-by-side benchmark, not a test. For each case (grid size, num) it times
drawing `num` code grids from `PixelCNNPrior.from_preset(--preset)` (random
weights: the speed does not depend on them), in one process, interleaved, the
order reversed every other round:

* cached: `prior.sample(..., method="cached")`, one compiled tf.while_loop
  that computes only the new position's features per step (the vertical
  stack once per row, the horizontal stack once per position);
* full: `prior.sample(..., method="full")`, the same loop running the
  network on the rows within reach of the drawn position at every step
  (the sampler before the cache, kept as the reference);
* Python loop: a Python loop over the positions calling the compiled network
  on the whole grid and drawing with `tfd.Categorical`, as the keras.io
  VQ-VAE example samples (with `predict`); only on small grids.

Each step of the full sampler runs the network on exactly `window` rows (the
position's row and the rows within reach above it) of the grid's width, so
its cost per code does not depend on the grid's height beyond that. With
`--full_rows=R`, cases whose full sampling would take too long time it on an
R-row grid of the same width (R >= window) and say so.

The compute floor: one position's forward multiply-adds (every gated block's
vertical, horizontal, link, output and skip convolutions, and the head) times
2 times the positions drawn, divided by the FLOP rate this CPU reaches when it
runs the same network on a whole batch of grids at once (`prior(codes)`, one
compiled call, no sampling loop).

    python -m benchmarks.sampling --cases=8:16,32:4 --rounds=3
    python -m benchmarks.sampling --cases=32:16,64:1 --contenders=cached,full --full_rows=16 --rounds=1

`--compare=kinds` times the three kinds of prior side by side instead, each at its zoo preset
(random weights, one process, interleaved rounds), for every GRID:NUM case:

* PixelCNN cached: `PixelCNNPrior` (`--preset`, 64 channels as the zoo's entry with
  `--pixelcnn_filters=64`), the whole grid;
* transformer cached and transformer full: `TransformerPrior.from_preset("cifar10")`, with the
  key/value cache and with the whole sequence through the network at every position. Both cost
  the same at every position (the cache is allocated for the whole grid), so on grids of more than
  `--positions` codes they are timed over the first `--positions` positions;
* MaskGIT: `MaskGITPrior.from_preset("cifar10")` at `--num_steps` parallel steps, the whole grid.

It also times one training step of each (batch `--train_batch` of 8x8 grids, Adam) in grids/s, in
each of `--train_dtypes` (float32 and mixed_bfloat16, as `training.fit --mixed_precision`).

    python -m benchmarks.sampling --compare=kinds --cases=8:16,32:16 --rounds=2
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import time  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402
from absl import app, flags  # noqa: E402

import keras  # noqa: E402

from vq_keras.zoo import MaskGITPrior, PixelCNNPrior, TransformerPrior  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("cases", ["8:16", "32:4"], "GRID:NUM pairs: square grid size and code grids drawn per call.")
flags.DEFINE_integer("rounds", 3, "Interleaved timed rounds; the median is reported.")
flags.DEFINE_string("preset", "cifar10", "The PixelCNNPrior preset.")
flags.DEFINE_list("contenders", ["cached", "full", "Python loop"], "Which samplers to time.")
flags.DEFINE_integer("python_loop_max_grid", 8, "Run the Python loop only on grids up to this size.")
flags.DEFINE_enum("compare", "methods", ["methods", "kinds"], "methods: the PixelCNN's samplers; kinds: the prior kinds.")
flags.DEFINE_integer("positions", 64, "--compare=kinds: autoregressive positions timed on larger grids.")
flags.DEFINE_integer("num_steps", 8, "--compare=kinds: MaskGIT's decoding steps.")
flags.DEFINE_integer("pixelcnn_filters", 64, "--compare=kinds: the PixelCNN's channels (64: the zoo entry's).")
flags.DEFINE_integer("train_batch", 32, "--compare=kinds: the batch of the timed training steps.")
flags.DEFINE_integer("train_steps", 20, "--compare=kinds: the training steps of each timed round.")
flags.DEFINE_list(
    "train_dtypes", ["float32", "mixed_bfloat16"],
    "--compare=kinds: the dtype policies the training steps are timed in (as training.fit --mixed_precision).",
)
flags.DEFINE_integer(
    "full_rows", None,
    "Time the full sampler on a grid of this many rows (and the case's width) when the case has more; "
    "its cost per code is the same once the rows cover its window.",
)


def python_loop_sampler(prior):
    """Draws codes with a Python loop over positions, as the keras.io example does."""
    forward = tf.function(lambda codes: prior(codes, training=False))

    def sample(num, seed, height, width):
        codes = np.zeros((num, height, width), np.int32)
        key = tf.constant([0, seed], tf.int32)
        for position in range(height * width):
            row, col = divmod(position, width)
            logits = forward(tf.constant(codes))[:, row, col]
            step_key = tf.random.experimental.stateless_fold_in(key, position)
            codes[:, row, col] = tfp.distributions.Categorical(logits=logits).sample(seed=step_key).numpy()
        return codes

    return sample


def samplers(prior):
    def method(name):
        return lambda num, seed, height, width: prior.sample(
            num, seed=seed, grid_shape=(height, width), method=name
        ).numpy()

    return {"cached": method("cached"), "full": method("full"), "Python loop": python_loop_sampler(prior)}


def multiply_adds_per_position(prior):
    """One position's forward multiply-adds: the gated blocks and the 1x1 head."""
    c, k, half = prior.num_filters, prior.kernel_size, prior.kernel_size // 2
    block = (half + 1) * k * c * 2 * c + (half + 1) * c * 2 * c + 2 * c * 2 * c + c * c + c * c
    return prior.num_layers * block + c * c + c * prior.num_embeddings


def flop_rate(prior, grid, num, rounds=3):
    """FLOP/s of the whole network on `num` grids at once, as counted by multiply_adds_per_position."""
    forward = tf.function(lambda codes: prior(codes, training=False))
    codes = tf.zeros((num, grid, grid), tf.int32)
    forward(codes)
    seconds = []
    for _ in range(rounds):
        start = time.perf_counter()
        forward(codes).numpy()
        seconds.append(time.perf_counter() - start)
    return 2 * multiply_adds_per_position(prior) * num * grid * grid / float(np.median(seconds))


def time_case(chosen, num, grid, rounds, full_rows):
    """codes/s of each chosen sampler, and the rows the full sampler ran on."""
    rows = {name: grid for name in chosen}
    if full_rows and "full" in chosen and grid > full_rows:
        rows["full"] = full_rows
    for name, sample in chosen.items():
        sample(num, 0, rows[name], grid)  # trace and compile
    seconds = {name: [] for name in chosen}
    for round_index in range(rounds):
        order = list(chosen) if round_index % 2 == 0 else list(reversed(chosen))
        for name in order:
            start = time.perf_counter()
            chosen[name](num, round_index + 1, rows[name], grid)
            seconds[name].append(time.perf_counter() - start)
    rates = {name: num * rows[name] * grid / float(np.median(times)) for name, times in seconds.items()}
    return rates, rows


def first_positions(prior, method, num, grid, positions):
    """A compiled function drawing the first `positions` codes of `num` grid x grid grids with the
    autoregressive prior's `method` sampler (the others stay 0), as its `draw` loop does."""

    @tf.function
    def run(seed):
        state, step = (prior.cached_sampler if method == "cached" else prior.full_sampler)(num, grid, grid, None, None)

        def body(position, codes, state):
            logits, state = step(state, codes, position)
            drawn = prior.draw_codes(logits, 1.0, None, None, tf.stack([seed, position]))
            rows = tf.stack([tf.range(num), tf.fill([num], position // grid), tf.fill([num], position % grid)], 1)
            return position + 1, tf.tensor_scatter_nd_update(codes, rows, drawn), state

        start = (tf.constant(0), tf.zeros((num, grid, grid), tf.int32), state)
        return tf.while_loop(lambda position, *_: position < positions, body, start)[1]

    return lambda seed: run(tf.constant(seed, tf.int32)).numpy()


def kind_samplers(num, grid):
    """name -> (function of a seed, codes it draws per call)."""
    pixelcnn = PixelCNNPrior.from_preset(FLAGS.preset, num_filters=FLAGS.pixelcnn_filters, dropout=0.0)
    transformer = TransformerPrior.from_preset("cifar10", dropout=0.0, grid_shape=(grid, grid))
    maskgit = MaskGITPrior.from_preset("cifar10", dropout=0.0, grid_shape=(grid, grid))
    positions = min(FLAGS.positions, grid * grid)
    whole = lambda prior, **options: lambda seed: prior.sample(  # noqa: E731
        num, seed=seed, grid_shape=(grid, grid), **options
    ).numpy()
    return {
        "PixelCNN cached": (whole(pixelcnn), num * grid * grid),
        "transformer cached": (first_positions(transformer, "cached", num, grid, positions), num * positions),
        "transformer full": (first_positions(transformer, "full", num, grid, positions), num * positions),
        f"MaskGIT {FLAGS.num_steps} steps": (whole(maskgit, num_steps=FLAGS.num_steps), num * grid * grid),
    }


def training_rates(batch, rounds, dtypes, steps):
    """{(kind, dtype policy): grids/s} of one Adam training step on 8x8 grids of 512 codes."""
    codes = np.random.default_rng(0).integers(0, 512, (batch * steps, 8, 8)).astype(np.int32)
    data = tf.data.Dataset.from_tensor_slices({"codes": codes}).batch(batch).repeat()
    priors = {}
    for dtype in dtypes:
        priors["PixelCNN", dtype] = PixelCNNPrior.from_preset(
            FLAGS.preset, num_filters=FLAGS.pixelcnn_filters, dropout=0.0, dtype=dtype
        )
        priors["transformer", dtype] = TransformerPrior.from_preset("cifar10", dtype=dtype)
        priors["MaskGIT", dtype] = MaskGITPrior.from_preset("cifar10", dtype=dtype)
    for prior in priors.values():
        prior.compile(optimizer=keras.optimizers.Adam(1e-3))
        prior.fit(data, steps_per_epoch=3, epochs=1, verbose=0)  # trace
    seconds = {name: [] for name in priors}
    for round_index in range(rounds):
        for name in priors if round_index % 2 == 0 else reversed(list(priors)):
            start = time.perf_counter()
            priors[name].fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
            seconds[name].append(time.perf_counter() - start)
    return {name: batch * steps / float(np.median(times)) for name, times in seconds.items()}


def compare_kinds():
    print(f"The prior kinds at their cifar10 presets, random weights; load {os.getloadavg()}")
    print("| grid | num | " + " | ".join(f"{name} codes/s" for name in kind_samplers(1, 8)) +
          " | MaskGIT / PixelCNN cached | transformer cached / full |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for case in FLAGS.cases:
        grid, num = (int(v) for v in case.split(":"))
        chosen = kind_samplers(num, grid)
        for function, _ in chosen.values():
            function(0)  # trace and compile
        seconds = {name: [] for name in chosen}
        for round_index in range(FLAGS.rounds):
            for name in chosen if round_index % 2 == 0 else reversed(list(chosen)):
                start = time.perf_counter()
                chosen[name][0](round_index + 1)
                seconds[name].append(time.perf_counter() - start)
        rates = {name: chosen[name][1] / float(np.median(times)) for name, times in seconds.items()}
        names = list(rates)
        print(
            f"| {grid}x{grid} | {num} | " + " | ".join(f"{rates[name]:.0f}" for name in names)
            + f" | {rates[names[3]] / rates[names[0]]:.2f} | {rates[names[1]] / rates[names[2]]:.1f} |",
            flush=True,
        )
    rates = training_rates(FLAGS.train_batch, FLAGS.rounds, FLAGS.train_dtypes, FLAGS.train_steps)
    first = FLAGS.train_dtypes[0]
    print(f"Training step, batch {FLAGS.train_batch} of 8x8 grids, grids/s (/ {first}):")
    for (kind, dtype), rate in rates.items():
        print(f"  {kind} {dtype}: {rate:.0f} ({rate / rates[kind, first]:.2f})")
    print(f"load after: {os.getloadavg()}")


def main(argv):
    del argv
    if FLAGS.compare == "kinds":
        return compare_kinds()
    prior = PixelCNNPrior.from_preset(FLAGS.preset, dropout=0.0)
    every = samplers(prior)
    unknown = set(FLAGS.contenders) - set(every)
    if unknown:
        raise app.UsageError(f"Unknown --contenders {sorted(unknown)}; known: {', '.join(every)}.")
    flops = 2 * multiply_adds_per_position(prior)
    print(
        f"PixelCNNPrior.from_preset({FLAGS.preset!r}): {prior.num_layers} gated blocks, {prior.num_filters} "
        f"filters, {prior.num_embeddings} codes; {flops / 1e6:.2f} MFLOP per position; load {os.getloadavg()}"
    )
    print("| grid | num | cached codes/s | full codes/s | Python loop codes/s | cached / full | cached / loop "
          "| floor codes/s | floor / cached |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for case in FLAGS.cases:
        grid, num = (int(v) for v in case.split(":"))
        chosen = {
            name: every[name] for name in FLAGS.contenders
            if name != "Python loop" or grid <= FLAGS.python_loop_max_grid
        }
        rates, rows = time_case(chosen, num, grid, FLAGS.rounds, FLAGS.full_rows)
        floor = flop_rate(prior, grid, num) / flops
        shown = lambda name: f"{rates[name]:.0f}" if name in rates else "-"  # noqa: E731
        ratio = lambda a, b: f"{rates[a] / rates[b]:.1f}" if a in rates and b in rates else "-"  # noqa: E731
        full = shown("full") + (f" ({rows['full']}x{grid} grid)" if rows.get("full", grid) != grid else "")
        print(
            f"| {grid}x{grid} | {num} | {shown('cached')} | {full} | {shown('Python loop')} "
            f"| {ratio('cached', 'full')} | {ratio('cached', 'Python loop')} | {floor:.0f} "
            f"| {floor / rates['cached']:.1f} |" if "cached" in rates else "",
            flush=True,
        )
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    app.run(main)
