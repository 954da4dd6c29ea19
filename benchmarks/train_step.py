"""Training-step throughput: `VQVAE.from_preset("cifar10")` beside the same net in Sonnet 2.

A side-by-side benchmark, not a test. It times one training step (forward,
EMA codebook update, backward, Adam) of:

* ours: `vq_keras.zoo.VQVAE.from_preset("cifar10")` compiled as users do,
  `model.compile(optimizer=keras.optimizers.Adam(3e-4), jit_compile=X)`, and run
  through the compiled train function that `model.fit` calls
  (`model.make_train_function()`, then `model.train_function(iterator)` on an
  iterator over a repeated `tf.data.Dataset` of the batch), once with
  jit_compile=True (XLA, the default of `python -m training.fit`) and once with
  jit_compile=False (a plain tf.function graph);
* the peer: the same architecture built from dm-sonnet 2 modules
  (`snt.Conv2D`, `snt.Conv2DTranspose`, `snt.nets.VectorQuantizerEMA`,
  `snt.optimizers.Adam`) with a train step written the way Sonnet's own VQ-VAE
  example writes it: a `tf.GradientTape` over the loss, the EMA update inside
  the forward pass (`is_training=True`), `optimizer.apply(grads, params)`, all
  in a `@tf.function` (the example's form) and, for a like-for-like comparison
  with our XLA default, in a `@tf.function(jit_compile=True)`.

Architecture (both): images - 0.5 -> conv4x4/2 64 relu -> conv4x4/2 128 relu ->
conv3x3 128 -> 2 x [relu, conv3x3 32, relu, conv1x1 128, add] -> relu ->
conv1x1 64 -> VectorQuantizerEMA(K=512, D=64, beta=0.25, decay=0.99,
eps=1e-5) -> conv3x3 128 -> the same residual stack -> convT4x4/2 64 relu ->
convT4x4/2 3 -> + 0.5. Loss: MSE / data_variance + the commitment loss. Adam
with learning rate 3e-4. Both contenders get the same random float32 batch in
[0, 1] of 32x32x3 images, each through its own repeated tf.data iterator.

Method: every contender is built and called `--warmup` times first (tracing
and XLA compilation excluded from the timings); then, in ONE process, the
contenders run `--rounds` rounds of `--steps` steps each, interleaved, the
order reversed every other round, so a load that changes over time (another
job on the machine) falls on all of them alike. Each round ends by fetching a
result to the host. Reported: the median images/second over rounds, the
min-max, and ratios ours / Sonnet (ratio of the medians, and the median of the
per-round ratios).

Run from the repository root:

    pip install ".[bench]"
    python -m benchmarks.train_step
    python -m benchmarks.train_step --batch_sizes=32,128 --rounds=5 --steps=20

It prints the parameter counts of both builds and a markdown table.
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

from vq_keras.zoo import VQVAE  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps", 20, "Timed training steps per contender per round.")
flags.DEFINE_integer("rounds", 5, "Interleaved rounds; the median over rounds is reported.")
flags.DEFINE_integer("warmup", 5, "Untimed steps per contender before timing (trace/compile and a few more).")
flags.DEFINE_list("batch_sizes", ["32", "128"], "Comma-separated batch sizes.")
flags.DEFINE_integer("seed", 0, "Seed of the batch and of the weights.")
flags.DEFINE_boolean("sonnet_xla", True, "Also time Sonnet's step as a tf.function(jit_compile=True).")

LEARNING_RATE = 3e-4
IMAGE_SHAPE = (32, 32, 3)
PIXEL_SHIFT = 0.5
# The cifar10 preset's hyper-parameters, spelled out for the Sonnet build.
NUM_HIDDENS = 128
NUM_RESIDUAL_HIDDENS = 32
NUM_RESIDUAL_LAYERS = 2
EMBEDDING_DIM = 64
NUM_EMBEDDINGS = 512
COMMITMENT_COST = 0.25
DECAY = 0.99
EPSILON = 1e-5


# --------------------------------------------------------------------------
# The peer: the same network from Sonnet 2 modules.
# --------------------------------------------------------------------------


class SonnetResidualStack(snt.Module):
    """x + conv1x1(relu(conv3x3(relu(x)))) per block, then a ReLU."""

    def __init__(self, num_hiddens, num_residual_hiddens, num_residual_layers, name=None):
        super().__init__(name=name)
        self.blocks = [
            (
                snt.Conv2D(num_residual_hiddens, 3, padding="SAME", name=f"block{i}_conv3x3"),
                snt.Conv2D(num_hiddens, 1, padding="SAME", name=f"block{i}_conv1x1"),
            )
            for i in range(num_residual_layers)
        ]

    def __call__(self, x):
        for conv3, conv1 in self.blocks:
            x = x + conv1(tf.nn.relu(conv3(tf.nn.relu(x))))
        return tf.nn.relu(x)


class SonnetVQVAE(snt.Module):
    """The cifar10 VQ-VAE preset, module for module, in Sonnet 2."""

    def __init__(self, name="sonnet_vqvae"):
        super().__init__(name=name)
        self.down0 = snt.Conv2D(NUM_HIDDENS // 2, 4, stride=2, padding="SAME", name="down0")
        self.down1 = snt.Conv2D(NUM_HIDDENS, 4, stride=2, padding="SAME", name="down1")
        self.enc_conv3x3 = snt.Conv2D(NUM_HIDDENS, 3, padding="SAME", name="enc_conv3x3")
        self.enc_stack = SonnetResidualStack(
            NUM_HIDDENS, NUM_RESIDUAL_HIDDENS, NUM_RESIDUAL_LAYERS, name="enc_stack"
        )
        self.pre_quantizer = snt.Conv2D(EMBEDDING_DIM, 1, padding="SAME", name="pre_quantizer")
        self.quantizer = snt.nets.VectorQuantizerEMA(
            embedding_dim=EMBEDDING_DIM,
            num_embeddings=NUM_EMBEDDINGS,
            commitment_cost=COMMITMENT_COST,
            decay=DECAY,
            epsilon=EPSILON,
            name="quantizer",
        )
        self.dec_conv3x3 = snt.Conv2D(NUM_HIDDENS, 3, padding="SAME", name="dec_conv3x3")
        self.dec_stack = SonnetResidualStack(
            NUM_HIDDENS, NUM_RESIDUAL_HIDDENS, NUM_RESIDUAL_LAYERS, name="dec_stack"
        )
        self.up0 = snt.Conv2DTranspose(NUM_HIDDENS // 2, 4, stride=2, padding="SAME", name="up0")
        self.up1 = snt.Conv2DTranspose(IMAGE_SHAPE[-1], 4, stride=2, padding="SAME", name="up1")

    def __call__(self, images, is_training):
        x = tf.nn.relu(self.down0(images - PIXEL_SHIFT))
        x = tf.nn.relu(self.down1(x))
        x = self.enc_stack(self.enc_conv3x3(x))
        vq_output = self.quantizer(self.pre_quantizer(x), is_training=is_training)
        x = self.dec_stack(self.dec_conv3x3(vq_output["quantize"]))
        x = tf.nn.relu(self.up0(x))
        return {"x_recon": self.up1(x) + PIXEL_SHIFT, "vq_output": vq_output}


def make_sonnet_step(data_variance, jit_compile):
    """A fresh Sonnet model, optimizer and train step (the example's form)."""
    model = SonnetVQVAE()
    optimizer = snt.optimizers.Adam(learning_rate=LEARNING_RATE)

    def train_step(images):
        with tf.GradientTape() as tape:
            model_output = model(images, is_training=True)
            recon_error = tf.reduce_mean((model_output["x_recon"] - images) ** 2) / data_variance
            loss = recon_error + model_output["vq_output"]["loss"]
        parameters = model.trainable_variables
        gradients = tape.gradient(loss, parameters)
        optimizer.apply(gradients, parameters)
        return {
            "loss": loss,
            "recon_error": recon_error,
            "perplexity": model_output["vq_output"]["perplexity"],
        }

    return model, tf.function(train_step, jit_compile=jit_compile)


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
        self.variables_fn = variables_fn
        self.first_call_seconds = None
        self.rates = []  # images/second, one per round

    def run(self, steps):
        loss = None
        for _ in range(steps):
            loss = self.step()
        return loss


def keras_contender(batch, data_variance, jit):
    model = VQVAE.from_preset("cifar10", data_variance=data_variance)
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE), jit_compile=jit)
    model.make_train_function()  # what model.fit calls; sets model.train_function
    train_function = model.train_function
    iterator = repeated_iterator(batch)

    def step():
        return train_function(iterator)["loss"]

    def variables():
        return model.trainable_weights, model.non_trainable_weights + model.optimizer.variables

    label = "XLA" if jit else "graph"
    return Contender(f"vq_keras fit step, jit_compile={jit}", "ours", label, model, step, variables)


def sonnet_contender(batch, data_variance, jit):
    model, train_step = make_sonnet_step(data_variance, jit)
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


def print_parameter_counts(contenders):
    """Parameters of both builds (after the warm-up, when every variable exists)."""
    print("\nParameters (weights only, optimizer slots excluded):")
    seen = set()
    for contender in contenders:
        if contender.side in seen:
            continue
        seen.add(contender.side)
        if contender.side == "ours":
            model = contender.model
            trainable = model.trainable_weights
            non_trainable = model.non_trainable_weights
        else:
            trainable, non_trainable = contender.variables_fn()
        print(
            f"  {contender.side:7s} trainable={count(trainable):,}  "
            f"non-trainable={count(non_trainable):,}  "
            f"({', '.join(sorted({v.name.split('/')[-1].split(':')[0] for v in non_trainable}))})"
        )
    print(
        "  Trainable counts should be equal. Both codebooks are non-trainable (EMA). Sonnet's\n"
        "  ExponentialMovingAverage keeps a hidden and an average copy of each statistic and a\n"
        "  counter per statistic; ours keeps one copy and one step counter, so Sonnet's\n"
        "  non-trainable count is larger by K + K*D + 1 = 33,281."
    )


def check_trainable_shapes(ours, sonnet):
    """The trainable variables must pair up shape for shape (sorted by size)."""
    ours_shapes = sorted(tuple(v.shape) for v in ours.model.trainable_weights)
    sonnet_shapes = sorted(tuple(v.shape) for v in sonnet.variables_fn()[0])
    # Sonnet's conv-transpose kernels are (h, w, out, in) like Keras's; conv
    # kernels (h, w, in, out) in both. Compare as multisets of shapes.
    if ours_shapes != sonnet_shapes:
        print("WARNING: the trainable variable shapes differ:")
        print("  ours:  ", ours_shapes)
        print("  sonnet:", sonnet_shapes)
        return False
    return True


def benchmark_batch_size(batch_size, seed):
    rng = np.random.default_rng(seed)
    batch = rng.random((batch_size, *IMAGE_SHAPE), dtype=np.float32)
    data_variance = float(np.var(batch))

    keras.utils.set_random_seed(seed)
    contenders = [
        keras_contender(batch, data_variance, jit=True),
        keras_contender(batch, data_variance, jit=False),
        sonnet_contender(batch, data_variance, jit=False),
    ]
    if FLAGS.sonnet_xla:
        contenders.append(sonnet_contender(batch, data_variance, jit=True))

    print(f"\n=== batch size {batch_size}: warm-up ({FLAGS.warmup} steps each) ===", flush=True)
    for contender in contenders:
        start = time.perf_counter()
        contender.step().numpy()  # trace (+ XLA compile) and variable creation
        contender.first_call_seconds = time.perf_counter() - start
        contender.run(max(FLAGS.warmup - 1, 0)).numpy()
        print(f"  {contender.name}: first call {contender.first_call_seconds:.1f} s", flush=True)

    print_parameter_counts(contenders)
    check_trainable_shapes(contenders[0], contenders[2])

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


def main(argv):
    del argv
    batch_sizes = [int(b) for b in FLAGS.batch_sizes]
    print(
        f"tensorflow {tf.__version__}, keras {keras.__version__}, dm-sonnet {snt.__version__}, "
        f"python {platform.python_version()}, {os.cpu_count()} CPU cores, "
        f"GPUs: {len(tf.config.list_physical_devices('GPU'))}"
    )
    print(
        f"steps={FLAGS.steps} rounds={FLAGS.rounds} warmup={FLAGS.warmup} "
        f"batch_sizes={batch_sizes} seed={FLAGS.seed}"
    )

    results = {}
    for batch_size in batch_sizes:
        results[batch_size] = benchmark_batch_size(batch_size, FLAGS.seed)
        # Keep only the numbers; free the models before the next batch size.
        for contender in results[batch_size]:
            contender.model = contender.step = contender.variables_fn = None
        gc.collect()

    print("\n## Images per second of one training step (median over rounds; higher is better)\n")
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

    print("\n## Ratios ours / Sonnet (> 1: ours is faster)\n")
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


if __name__ == "__main__":
    app.run(main)
