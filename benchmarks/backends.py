"""The zoo autoencoders on two Keras backends side by side: how closely JAX (or PyTorch, `--other=torch`)
agrees with TensorFlow, and how fast each trains. Below, "JAX" stands for the `--other` backend.

Keras fixes its backend when it is imported, so every figure of a backend comes from a child
process (`python -m benchmarks.backends --child=jax ...`) started by this one; the parent starts
them one after the other, in alternating order for the speed figures, and compares what they wrote.

Equality (`--task=equality`, per model of `--models`): the first (TensorFlow) child builds the
model from its "cifar10" preset (`--size=tiny`: the tests' small widths), compiles it (Adam 3e-4)
and saves it as `start_<model>.keras`; every child loads that file (so JAX loads a file TensorFlow
wrote) and, from those weights, writes
- the reconstruction (not clipped) and the codes of the bundled sample's first 32 test images;
- the gradients of the loss (reconstruction MSE / data variance + the quantizers' losses) of
  the first training batch with respect to every trainable weight;
- every weight after one `train_on_batch` of that batch (Adam's step and the EMA codebook);
- the loss of every step of `model.fit` over `--steps` batches of 32 of the sample's training
  images, in file order, without shuffling (the same batches on both backends), and the trained
  model's file and reconstruction.
A third child runs TensorFlow again on the same batches in another order (seeded): the noise
scale a loss curve's difference is judged against; it also loads the file JAX trained and
reconstructs the images with it (a file written on JAX, read on TensorFlow). JAX traces with XLA (`jax.jit`); TensorFlow
runs `--tensorflow_jit` (default False: a tf.function graph, as training.fit).

Speed (`--task=speed`): images per second of `model.fit` on a fixed random batch of `--batch_size`
(a repeated tf.data dataset, as training.fit feeds it), after `--warmup` untimed steps: TensorFlow
as a tf.function graph and under XLA, JAX under XLA, PyTorch eagerly (Keras' default there); each child times `--rounds` rounds of
`--steps` steps (a round is one `fit` epoch, so fit's per-epoch work is inside the timing on both
backends), and the parent alternates `--process_rounds` children per backend (tensorflow, jax,
then jax, tensorflow, ...) so a changing load falls on both.

    python -m benchmarks.backends --task=equality --models=vqvae,vqvae2 --steps=300
    python -m benchmarks.backends --task=speed --models=vqvae --batch_size=32
(`python -m benchmarks.train_step --backend=jax` prints the same speed table.)
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import dataclasses  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import keras  # noqa: E402  (the backend a child's KERAS_BACKEND names)
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONTENDERS = ["tensorflow graph", "tensorflow XLA", "jax XLA", "torch eager"]  # the speed table's rows, in order
BACKEND_NAMES = {"tensorflow": "TensorFlow", "jax": "JAX", "torch": "PyTorch"}
TINY = dict(num_hiddens=16, num_residual_hiddens=8, num_residual_layers=1, embedding_dim=8, num_embeddings=32)
EVAL_IMAGES = 32
BATCH = 32

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_enum("task", "equality", ["equality", "speed"], "What to measure.")
    flags.DEFINE_enum("other", "jax", ["jax", "torch"], "The backend measured against TensorFlow.")
    flags.DEFINE_list("models", ["vqvae"], "Zoo autoencoders: vqvae, vqvae2.")
    flags.DEFINE_enum("size", "cifar10", ["cifar10", "tiny"], "The cifar10 preset, or the tests' small widths.")
    flags.DEFINE_integer("steps", 300, "Equality: fit steps of the loss curves. Speed: timed steps per round.")
    flags.DEFINE_integer("rounds", 3, "Speed: timed rounds (fit epochs) per child.")
    flags.DEFINE_integer("process_rounds", 2, "Speed: children per backend, in alternating order.")
    flags.DEFINE_integer("warmup", 5, "Speed: untimed steps (tracing, compiling) before the rounds.")
    flags.DEFINE_integer("batch_size", 32, "Speed: the batch size.")
    flags.DEFINE_boolean("tensorflow_jit", False, "Equality: TensorFlow's fit under XLA (JAX always is).")
    flags.DEFINE_string("workdir", None, "Where the children write (default: a temporary folder).")
    flags.DEFINE_string("child", None, "Internal: run as the child process of this backend.")
    flags.DEFINE_integer("order_seed", None, "Internal: the equality child's batch order (None: file order).")


@dataclasses.dataclass
class Settings:
    """What the parent passes on to its children (the flags above, but for `child` and `order_seed`)."""

    models: list
    steps: int = 300
    rounds: int = 3
    process_rounds: int = 2
    warmup: int = 5
    batch_size: int = 32
    size: str = "cifar10"
    tensorflow_jit: bool = False
    other: str = "jax"

    def backends(self):
        return ("tensorflow", self.other)

    def child_flags(self):
        return [f"--{field.name}={_flag_value(getattr(self, field.name))}" for field in dataclasses.fields(self)]


def _flag_value(value):
    return ",".join(value) if isinstance(value, list) else value


# ----------------------------------------------------------------- children


def _model_class(name):
    from vq_keras.zoo import VQVAE, VQVAE2

    return {"vqvae": VQVAE, "vqvae2": VQVAE2}[name]


def _sample():
    from training.data.pipeline import SAMPLE_PATH

    with np.load(SAMPLE_PATH) as arrays:
        train = (arrays["train_images"] / np.float32(255)).astype("float32")
        test = (arrays["test_images"] / np.float32(255)).astype("float32")
    return train, test


def _start_model(name, path, data_variance):
    """The model every child starts from: built and saved by the first child, loaded by the rest."""
    import vq_keras.zoo  # noqa: F401  (registers the classes the file names)

    if not path.exists():
        keras.utils.set_random_seed(0)
        sizes = TINY if FLAGS.size == "tiny" else {}
        model = _model_class(name).from_preset("cifar10", data_variance=data_variance, **sizes)
        model.compile(optimizer=keras.optimizers.Adam(3e-4))
        model.build_if_needed()
        model.optimizer.build(model.trainable_variables)
        model.save(path)
    model = keras.saving.load_model(path)
    # The file holds the compile arguments of the backend that wrote it; JAX always compiles with XLA,
    # PyTorch runs eagerly (Keras' default there).
    jit_compile = {"tensorflow": FLAGS.tensorflow_jit, "jax": True, "torch": False}[FLAGS.child]
    model.compile(optimizer=model.optimizer, jit_compile=jit_compile)
    return model


def _training_images(train, steps, order_seed):
    """`steps` batches of the sample's training images, cycling in file order (or a seeded order)."""
    indices = np.arange(steps * BATCH) % len(train)
    if order_seed is not None:
        batches = indices.reshape(steps, BATCH)
        indices = batches[np.random.default_rng(order_seed).permutation(steps)].ravel()
    return train[indices]


class StepLosses(keras.callbacks.Callback):
    """fit's per-step loss, from the running mean of the epoch it logs after every batch."""

    def __init__(self):
        super().__init__()
        self.means = []

    def on_train_batch_end(self, batch, logs=None):
        self.means.append(float(logs["loss"]))

    def per_step(self):
        sums = np.asarray(self.means, "float64") * np.arange(1, len(self.means) + 1)
        return np.diff(sums, prepend=0.0)


def equality_child(name, workdir):
    from keras import ops

    from tests.backend import gradients, to_numpy

    train, test = _sample()
    data_variance = float(np.var(train))
    model = _start_model(name, workdir / f"start_{name}.keras", data_variance)
    first = train[:BATCH]
    figures = {}
    if FLAGS.order_seed is None:
        reconstruction, codes = model(test[:EVAL_IMAGES], training=False, return_codes=True)
        figures["reconstruction"] = to_numpy(reconstruction)
        figures.update({f"codes_{i}": to_numpy(level) for i, level in enumerate(codes)})
        x = ops.convert_to_tensor(first)

        def loss():
            return ops.mean(ops.square(model(x, training=False) - x)) / data_variance

        for i, gradient in enumerate(gradients(loss, model.trainable_variables, with_losses_of=model)):
            figures[f"gradient_{i}"] = gradient
        model.train_on_batch(first)
        figures.update({f"weight_{i}": to_numpy(w) for i, w in enumerate(model.weights)})
        model = _start_model(name, workdir / f"start_{name}.keras", data_variance)
    losses = StepLosses()
    images = _training_images(train, FLAGS.steps, FLAGS.order_seed)
    model.fit(images, batch_size=BATCH, epochs=1, shuffle=False, verbose=0, callbacks=[losses])
    figures["losses"] = losses.per_step()
    if FLAGS.order_seed is None:  # the trained model, for the other backend to load
        figures["trained_reconstruction"] = to_numpy(model(test[:EVAL_IMAGES], training=False))
        model.save(workdir / f"trained_{name}_{FLAGS.child}.keras")
    else:  # the last child: the file the other backend trained
        trained = keras.saving.load_model(workdir / f"trained_{name}_{FLAGS.other}.keras")
        figures["other_trained_reconstruction"] = to_numpy(trained(test[:EVAL_IMAGES], training=False))
    tag = FLAGS.child if FLAGS.order_seed is None else f"{FLAGS.child}_order{FLAGS.order_seed}"
    np.savez(workdir / f"{name}_{tag}.npz", **figures, paths=np.array([w.path for w in model.weights]))


def speed_child(name, workdir):
    import tensorflow as tf

    batch = np.random.default_rng(0).uniform(size=(FLAGS.batch_size, 32, 32, 3)).astype("float32")
    dataset = tf.data.Dataset.from_tensors(batch).repeat()
    jits = {"tensorflow": [False, True], "jax": [True], "torch": [False]}[FLAGS.child]
    rates = {}
    models = {}
    for jit in jits:
        keras.utils.set_random_seed(0)
        model = models[jit] = _model_class(name).from_preset("cifar10", data_variance=0.06)
        model.compile(optimizer=keras.optimizers.Adam(3e-4), jit_compile=jit)
        model.fit(dataset, steps_per_epoch=FLAGS.warmup, epochs=1, verbose=0)
        rates[_contender(jit)] = []
    for round_index in range(FLAGS.rounds):
        for jit in jits if round_index % 2 == 0 else jits[::-1]:
            start = time.perf_counter()
            models[jit].fit(dataset, steps_per_epoch=FLAGS.steps, epochs=1, verbose=0)
            rates[_contender(jit)].append(FLAGS.steps * FLAGS.batch_size / (time.perf_counter() - start))
    (workdir / f"speed_{name}_{FLAGS.child}_{os.getpid()}.json").write_text(json.dumps(rates))


def _contender(jit):
    return f"{FLAGS.child} {'XLA' if jit else 'graph' if FLAGS.child == 'tensorflow' else 'eager'}"


# ------------------------------------------------------------------- parent


def run_child(backend, workdir, task, settings, extra=()):
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [
        sys.executable, "-m", "benchmarks.backends", f"--child={backend}", f"--task={task}", f"--workdir={workdir}",
        *settings.child_flags(), *extra,
    ]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"the {backend} child failed:\n{result.stderr[-4000:]}")


def equality_figures(workdir, name, other="jax"):
    """Differences between the backends' figures of `name` (see the module docstring)."""
    ours, theirs = (np.load(workdir / f"{name}_{backend}.npz") for backend in ("tensorflow", other))
    noise = np.load(workdir / f"{name}_tensorflow_order1.npz")
    paths = list(ours["paths"])

    def largest(prefix, keys=None):
        keys = keys if keys is not None else [k for k in ours.files if k.startswith(prefix)]
        return max(float(np.max(np.abs(ours[k] - theirs[k]))) for k in keys)

    gradient_keys = [k for k in ours.files if k.startswith("gradient_")]
    relative = max(
        float(np.max(np.abs(ours[k] - theirs[k])) / max(np.max(np.abs(ours[k])), 1e-30)) for k in gradient_keys
    )
    state = [f"weight_{i}" for i, path in enumerate(paths) if "quantizer" in path]
    code_keys = [k for k in ours.files if k.startswith("codes_")]
    curve_ours, curve_theirs, curve_noise = ours["losses"], theirs["losses"], noise["losses"]
    tail = max(len(curve_ours) // 6, 1)
    return {
        "reconstruction": largest("reconstruction"),
        "codes_equal": float(np.mean([np.mean(ours[k] == theirs[k]) for k in code_keys])),
        "gradient": largest("gradient_"),
        "gradient_relative": relative,
        "quantizer_state_after_one_step": largest("weight_", state),
        "other_file_on_tensorflow": float(
            np.max(np.abs(noise["other_trained_reconstruction"] - theirs["trained_reconstruction"]))
        ),
        "weights_after_one_step": largest("weight_"),
        "loss_first": (float(curve_ours[0]), float(curve_theirs[0])),
        "loss_steps_1_10": float(np.max(np.abs(curve_ours[:10] - curve_theirs[:10]))),
        "loss_curve_mean_difference": float(np.mean(np.abs(curve_ours - curve_theirs))),
        "noise_curve_mean_difference": float(np.mean(np.abs(curve_ours - curve_noise))),
        "loss_last": (float(np.mean(curve_ours[-tail:])), float(np.mean(curve_theirs[-tail:]))),
        "steps": len(curve_ours),
    }


def run_equality(workdir, settings):
    run_child("tensorflow", workdir, "equality", settings)
    run_child(settings.other, workdir, "equality", settings)
    run_child("tensorflow", workdir, "equality", settings, extra=("--order_seed=1",))
    return {name: equality_figures(workdir, name, settings.other) for name in settings.models}


def print_equality(results, other):
    other = BACKEND_NAMES[other]
    print(f"\n## {other} against TensorFlow from the same .keras file (max |difference| unless said)\n")
    print("| model | reconstruction | codes equal | gradients (relative) | quantizer state, 1 step | all weights, "
          "1 step | loss, steps 1-10 | loss curve: mean diff (noise: TF, other batch order) | last-sixth mean loss "
          f"TF / {other} | {other}'s trained file on TF |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, f in results.items():
        print(
            f"| {name} | {f['reconstruction']:.1e} | {f['codes_equal']:.2%} | {f['gradient']:.1e} "
            f"({f['gradient_relative']:.1e}) | {f['quantizer_state_after_one_step']:.1e} | "
            f"{f['weights_after_one_step']:.1e} | {f['loss_steps_1_10']:.1e} | "
            f"{f['loss_curve_mean_difference']:.1e} ({f['noise_curve_mean_difference']:.1e}) over {f['steps']} steps | "
            f"{f['loss_last'][0]:.4f} / {f['loss_last'][1]:.4f} | {f['other_file_on_tensorflow']:.1e} |"
        )


def run_speed(workdir, settings):
    for round_index in range(settings.process_rounds):
        for backend in settings.backends() if round_index % 2 == 0 else settings.backends()[::-1]:
            run_child(backend, workdir, "speed", settings)
    results = {}
    for name in settings.models:
        rates = results[name] = {}
        for path in sorted(workdir.glob(f"speed_{name}_*.json")):
            for contender, values in json.loads(path.read_text()).items():
                rates.setdefault(contender, []).extend(values)
    return results


def print_speed(results, settings):
    print(f"\n## model.fit images/s, batch {settings.batch_size} (median over {settings.rounds} rounds x "
          f"{settings.process_rounds} processes of {settings.steps} steps; higher is better)\n")
    print("| model | contender | median img/s | min-max | / TensorFlow graph | / TensorFlow XLA |")
    print("|---|---|---:|---:|---:|---:|")
    for name, rates in results.items():
        medians = {contender: statistics.median(values) for contender, values in rates.items()}
        for contender in sorted(rates, key=CONTENDERS.index):
            values = rates[contender]
            print(
                f"| {name} | {contender} | {medians[contender]:,.0f} | {min(values):,.0f}-{max(values):,.0f} | "
                f"{medians[contender] / medians['tensorflow graph']:.2f} | "
                f"{medians[contender] / medians['tensorflow XLA']:.2f} |"
            )


def speed_table(settings, workdir=None):
    """Runs the speed children and prints the table (for benchmarks.train_step --backend=jax too)."""
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(workdir or scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        print_speed(run_speed(workdir, settings), settings)


def print_versions(settings):
    import importlib.metadata

    versions = ", ".join(f"{name} {importlib.metadata.version(name)}" for name in (*settings.backends(), "keras"))
    print(f"{versions}, {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.2f} at the start")


def main(argv):
    del argv
    unknown = [m for m in FLAGS.models if m not in ("vqvae", "vqvae2")]
    if unknown or not FLAGS.models:
        raise app.UsageError(f"--models takes vqvae and/or vqvae2. Received: {FLAGS.models}")
    if FLAGS.child:
        workdir = Path(FLAGS.workdir)
        for name in FLAGS.models:
            (equality_child if FLAGS.task == "equality" else speed_child)(name, workdir)
        return
    settings = Settings(**{field.name: getattr(FLAGS, field.name) for field in dataclasses.fields(Settings)})
    print_versions(settings)
    if FLAGS.task == "speed":
        speed_table(settings, FLAGS.workdir)
    else:
        with tempfile.TemporaryDirectory() as scratch:
            workdir = Path(FLAGS.workdir or scratch)
            workdir.mkdir(parents=True, exist_ok=True)
            print_equality(run_equality(workdir, settings), settings.other)
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    define_flags()
    app.run(main)
