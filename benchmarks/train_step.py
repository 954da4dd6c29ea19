"""Training-step throughput: the zoo's cifar10 presets beside the same nets in Sonnet 2.

A side-by-side benchmark, not a test. For each model in `--models` (`vqvae`:
`vq_keras.zoo.VQVAE.from_preset("cifar10")`; `vqvae2`:
`vq_keras.zoo.VQVAE2.from_preset("cifar10")`) it times one training step
(forward, EMA codebook update(s), backward, Adam) of:

* ours: the zoo model compiled as users do,
  `model.compile(optimizer=keras.optimizers.Adam(3e-4), jit_compile=X)`, and run
  through the compiled train function that `model.fit` calls
  (`model.make_train_function()`, then `model.train_function(iterator)` on an
  iterator over a repeated `tf.data.Dataset` of the batch), once with
  jit_compile=True (XLA) and once with jit_compile=False (a plain tf.function
  graph, training.fit's default), under each Keras dtype policy of
  `--precisions` (float32, and mixed_bfloat16: training.fit's
  `--mixed_precision=mixed_bfloat16`, bfloat16 layers with float32 weights, the
  quantizer's distances and EMA statistics in float32);
* the peer: the same architecture built from dm-sonnet 2 modules
  (`snt.Conv2D`, `snt.Conv2DTranspose`, `snt.nets.VectorQuantizerEMA`,
  `snt.optimizers.Adam`) with a train step written the way Sonnet's own VQ-VAE
  example writes it: a `tf.GradientTape` over the loss, the EMA update inside
  the forward pass (`is_training=True`), `optimizer.apply(grads, params)`, all
  in a `@tf.function` (the example's form) and, for a like-for-like comparison
  with our XLA step, in a `@tf.function(jit_compile=True)`; float32 only (the
  example has no mixed precision).

Building blocks (both sides; Sonnet's mirror ours, `SonnetEncoder` and
`SonnetDecoder` taking the number of stride-2 stages as our `Encoder` and
`Decoder` do):

* residual stack: 2 x [relu, conv3x3 32, relu, conv1x1 128, add] -> relu;
* Encoder(n): n conv4x4/2 (the first 64 filters, the rest 128), each + relu ->
  conv3x3 128 -> residual stack;
* Decoder(C, n): conv3x3 128 -> residual stack -> n convT4x4/2, all but the
  last 64 filters + relu, the last C filters and no activation;
* VQ: VectorQuantizerEMA(K=512, D=64, beta=0.25, decay=0.99, eps=1e-5).

VQVAE (cifar10): images - 0.5 -> Encoder(2) -> conv1x1 64 -> VQ -> Decoder(3, 2)
-> + 0.5. Loss: MSE / data_variance + the commitment loss.

VQVAE2 (cifar10, 2 levels): images - 0.5 -> encoder_bottom = Encoder(2)
(8x8x128) -> encoder_top = Encoder(1) (4x4x128) -> conv1x1 64 -> VQ_top ->
q_top (4x4x64). conditioner_bottom = Decoder(64, 1)(q_top) (8x8x64);
concat(bottom features, conditioner) (8x8x192) -> conv1x1 64 -> VQ_bottom ->
q_bottom. upsampler_top = convT4x4/2 64 (no activation) on q_top;
Decoder(3, 2)(concat(upsampled top, q_bottom)) -> + 0.5. Loss: MSE /
data_variance + both commitment losses.

Adam with learning rate 3e-4 throughout. Every contender gets the same random
float32 batch in [0, 1] of 32x32x3 images, each through its own repeated
tf.data iterator.

Method: every contender is built and called `--warmup` times first (tracing
and XLA compilation excluded from the timings); then, in ONE process, the
contenders of one model and batch size run `--rounds` rounds of `--steps`
steps each, interleaved, the order reversed every other round, so a load that
changes over time (another job on the machine) falls on all of them alike.
Each round ends by fetching a result to the host. Reported: the median
images/second over rounds, the min-max, and ratios ours / Sonnet (ratio of the
medians, and the median of the per-round ratios).

Run from the repository root:

    pip install ".[bench]"
    python -m benchmarks.train_step
    python -m benchmarks.train_step --models=vqvae,vqvae2 --batch_sizes=32,128 --rounds=5 --steps=40
    python -m benchmarks.train_step --backend=jax --models=vqvae --batch_sizes=32 --rounds=3 --steps=40

It prints the parameter counts of both builds and markdown tables per model.
"""

import os

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"

import gc  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

import keras  # noqa: E402
import sonnet as snt  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.sonnet_builds import (  # noqa: E402
    EMBEDDING_DIM,
    IMAGE_SHAPE,
    LEARNING_RATE,
    MODELS,
    NUM_EMBEDDINGS,
    PRESET,
    make_sonnet_step,
)

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["vqvae", "vqvae2"], "Comma-separated models to time: vqvae, vqvae2.")
flags.DEFINE_integer("steps", 20, "Timed training steps per contender per round.")
flags.DEFINE_integer("rounds", 5, "Interleaved rounds; the median over rounds is reported.")
flags.DEFINE_integer("warmup", 5, "Untimed steps per contender before timing (trace/compile and a few more).")
flags.DEFINE_list("batch_sizes", ["32", "128"], "Comma-separated batch sizes.")
flags.DEFINE_integer("seed", 0, "Seed of the batch and of the weights.")
flags.DEFINE_boolean("sonnet_xla", True, "Also time Sonnet's step as a tf.function(jit_compile=True).")
flags.DEFINE_enum(
    "backend", "tensorflow", ["tensorflow", "jax", "torch"],
    "tensorflow: ours beside Sonnet (this module). jax, torch: the models' model.fit on JAX (XLA) or PyTorch "
    "(eager) beside TensorFlow's graph and XLA, one child process per backend (benchmarks/backends.py "
    "--task=speed, with --steps and --rounds; batch size: the first of --batch_sizes).",
)
flags.DEFINE_list(
    "precisions", ["float32", "mixed_bfloat16"],
    "Keras dtype policies to time ours under (training.fit's --mixed_precision); Sonnet's step is float32.",
)


# --------------------------------------------------------------------------
# Contenders: each is a callable running one step and returning a scalar.
# --------------------------------------------------------------------------


def repeated_iterator(batch):
    return iter(tf.data.Dataset.from_tensors(batch).repeat())


class Contender:
    def __init__(self, name, side, jit, model, step, variables_fn):
        self.name = name
        self.side = side
        self.jit = jit
        self.model = model
        self.step = step  # () -> scalar tensor (the loss)
        self.variables_fn = variables_fn  # () -> (trainable, non-trainable) weights
        self.first_call_seconds = None
        self.rates = []  # images/second, one per round

    def run(self, steps):
        loss = None
        for _ in range(steps):
            loss = self.step()
        return loss


def keras_contender(spec, batch, data_variance, jit, precision="float32"):
    model = spec.keras_class.from_preset(PRESET, data_variance=data_variance, dtype=precision)
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE), jit_compile=jit)
    model.make_train_function()  # what model.fit calls; sets model.train_function
    train_function = model.train_function
    iterator = repeated_iterator(batch)

    def step():
        return train_function(iterator)["loss"]

    def variables():
        return model.trainable_weights, model.non_trainable_weights

    suffix = "" if precision == "float32" else f", {precision}"
    label = ("XLA" if jit else "graph") + suffix
    name = f"vq_keras fit step, jit_compile={jit}" + suffix
    return Contender(name, "ours", label, model, step, variables)


def sonnet_contender(spec, batch, data_variance, jit):
    model, train_step = make_sonnet_step(spec.sonnet_class, data_variance, jit)
    iterator = repeated_iterator(batch)

    def step():
        return train_step(next(iterator))["loss"]

    def variables():
        trainable = list(model.trainable_variables)
        trainable_ids = {id(v) for v in trainable}
        return trainable, [v for v in model.variables if id(v) not in trainable_ids]

    label = "XLA" if jit else "graph"
    return Contender(
        f"Sonnet @tf.function(jit_compile={jit})", "sonnet", label, model, step, variables
    )


def count(variables):
    return int(sum(np.prod(v.shape) for v in variables))


def first_of_each_side(contenders):
    return {side: next(c for c in contenders if c.side == side) for side in ("ours", "sonnet")}


def print_parameter_counts(spec, contenders):
    """Parameters of both builds (after the warm-up, when every variable exists)."""
    print(f"\n{spec.title} parameters (weights only, optimizer slots excluded):")
    trainable_counts = {}
    for side, contender in first_of_each_side(contenders).items():
        trainable, non_trainable = contender.variables_fn()
        trainable_counts[side] = count(trainable)
        print(
            f"  {side:7s} trainable={count(trainable):,}  "
            f"non-trainable={count(non_trainable):,}  "
            f"({', '.join(sorted({v.name.split('/')[-1].split(':')[0] for v in non_trainable}))})"
        )
    equal = trainable_counts["ours"] == trainable_counts["sonnet"]
    print(f"  trainable counts equal: {'yes' if equal else 'NO'}")
    extra = spec.num_quantizers * (NUM_EMBEDDINGS + NUM_EMBEDDINGS * EMBEDDING_DIM + 1)
    print(
        "  Both codebooks are non-trainable (EMA). Sonnet's ExponentialMovingAverage keeps a\n"
        "  hidden and an average copy of each statistic and a counter per statistic; ours\n"
        "  keeps one copy and one step counter, so Sonnet's non-trainable count is larger by\n"
        f"  {spec.num_quantizers} x (K + K*D + 1) = {extra:,}."
    )
    return equal


def check_trainable_shapes(contenders):
    """The trainable variables must pair up shape for shape (sorted by size)."""
    sides = first_of_each_side(contenders)
    ours_shapes = sorted(tuple(v.shape) for v in sides["ours"].variables_fn()[0])
    sonnet_shapes = sorted(tuple(v.shape) for v in sides["sonnet"].variables_fn()[0])
    # Sonnet's conv-transpose kernels are (h, w, out, in) like Keras's; conv
    # kernels (h, w, in, out) in both. Compare as multisets of shapes.
    if ours_shapes != sonnet_shapes:
        print("WARNING: the trainable variable shapes differ:")
        print("  ours:  ", ours_shapes)
        print("  sonnet:", sonnet_shapes)
        return False
    print(f"  trainable variable shapes match one for one ({len(ours_shapes)} variables)")
    return True


def benchmark_batch_size(spec, batch_size, seed):
    rng = np.random.default_rng(seed)
    batch = rng.random((batch_size, *IMAGE_SHAPE), dtype=np.float32)
    data_variance = float(np.var(batch))

    keras.utils.set_random_seed(seed)
    contenders = [
        keras_contender(spec, batch, data_variance, jit, precision)
        for precision in FLAGS.precisions
        for jit in (True, False)
    ]
    contenders.append(sonnet_contender(spec, batch, data_variance, jit=False))
    if FLAGS.sonnet_xla:
        contenders.append(sonnet_contender(spec, batch, data_variance, jit=True))

    print(
        f"\n=== {spec.title}, batch size {batch_size}: warm-up ({FLAGS.warmup} steps each) ===",
        flush=True,
    )
    for contender in contenders:
        start = time.perf_counter()
        contender.step().numpy()  # trace (+ XLA compile) and variable creation
        contender.first_call_seconds = time.perf_counter() - start
        if FLAGS.warmup > 1:
            contender.run(FLAGS.warmup - 1).numpy()
        print(f"  {contender.name}: first call {contender.first_call_seconds:.1f} s", flush=True)

    print_parameter_counts(spec, contenders)
    check_trainable_shapes(contenders)

    for round_index in range(FLAGS.rounds):
        order = contenders if round_index % 2 == 0 else contenders[::-1]
        for contender in order:
            start = time.perf_counter()
            contender.run(FLAGS.steps).numpy()  # .numpy() waits for the last step
            elapsed = time.perf_counter() - start
            contender.rates.append(FLAGS.steps * batch_size / elapsed)
        print(
            f"  round {round_index + 1}/{FLAGS.rounds}: "
            + ", ".join(f"{c.side}/{c.jit} {c.rates[-1]:.0f} img/s" for c in contenders),
            flush=True,
        )
    return contenders


def median(values):
    return statistics.median(values)


def print_tables(spec, results):
    title = f"{spec.title} ({PRESET})"
    print(f"\n## {title}: images per second of one training step (median over rounds; higher is better)\n")
    print("| batch | contender | compiled as | median img/s | min-max img/s | median ms/step | first call s |")
    print("|---:|---|---|---:|---:|---:|---:|")
    for batch_size, contenders in results.items():
        for c in contenders:
            med = median(c.rates)
            print(
                f"| {batch_size} | {c.name} | {c.jit} | {med:,.0f} | "
                f"{min(c.rates):,.0f}-{max(c.rates):,.0f} | {1000 * batch_size / med:.1f} | "
                f"{c.first_call_seconds:.1f} |"
            )

    print(f"\n## {title}: ratios ours / Sonnet (> 1: ours is faster)\n")
    print("| batch | ours | Sonnet | ratio of medians | median of per-round ratios |")
    print("|---:|---|---|---:|---:|")
    for batch_size, contenders in results.items():
        ours = [c for c in contenders if c.side == "ours"]
        peers = [c for c in contenders if c.side == "sonnet"]
        for o in ours:
            for p in peers:
                per_round = [a / b for a, b in zip(o.rates, p.rates)]
                print(
                    f"| {batch_size} | {o.jit} | {p.jit} | "
                    f"{median(o.rates) / median(p.rates):.2f} | {median(per_round):.2f} |"
                )
    sys.stdout.flush()


def main(argv):
    del argv
    if FLAGS.backend != "tensorflow":
        from benchmarks import backends

        settings = backends.Settings(
            models=FLAGS.models, steps=FLAGS.steps, rounds=FLAGS.rounds, warmup=FLAGS.warmup,
            batch_size=int(FLAGS.batch_sizes[0]), other=FLAGS.backend,
        )
        backends.print_versions(settings)
        backends.speed_table(settings)
        return
    unknown = [m for m in FLAGS.models if m not in MODELS]
    if unknown or not FLAGS.models:
        raise app.UsageError(
            f"--models takes a comma-separated subset of {', '.join(MODELS)}. Received: {FLAGS.models}"
        )
    batch_sizes = [int(b) for b in FLAGS.batch_sizes]
    print(
        f"tensorflow {tf.__version__}, keras {keras.__version__}, dm-sonnet {snt.__version__}, "
        f"python {platform.python_version()}, {os.cpu_count()} CPU cores, "
        f"GPUs: {len(tf.config.list_physical_devices('GPU'))}"
    )
    print(
        f"models={FLAGS.models} steps={FLAGS.steps} rounds={FLAGS.rounds} warmup={FLAGS.warmup} "
        f"batch_sizes={batch_sizes} seed={FLAGS.seed}"
    )

    all_results = {}
    for model_name in FLAGS.models:
        spec = MODELS[model_name]
        results = all_results[model_name] = {}
        for batch_size in batch_sizes:
            results[batch_size] = benchmark_batch_size(spec, batch_size, FLAGS.seed)
            # Keep only the numbers; free the models before the next run.
            for contender in results[batch_size]:
                contender.model = contender.step = contender.variables_fn = None
            gc.collect()

    for model_name, results in all_results.items():
        print_tables(MODELS[model_name], results)


if __name__ == "__main__":
    app.run(main)
