"""The quantizer study of issue #15: every quantizer kind in the cifar10 VQ-VAE, one table.

Each study entry is the zoo recipe of `zoo/vqvae_cifar10/recipe.flags` (the cifar10
preset's encoder and decoder unchanged, batch 32, Adam 1e-3 with cosine decay, XLA)
plus the entry's quantizer flags. For each entry this script

1. trains it with `python -m training.fit` (a subprocess, as a user runs it) under
   `<root>/<entry>/`, with the recipe written beside it as `recipe.flags`; a finished
   entry is not trained again (training.fit reports it), an interrupted one resumes;
2. evaluates `<root>/<entry>/model.keras` on the held-out split with training.evaluate:
   MSE / training pixel variance, PSNR, SSIM, the perplexity and the fraction of the codes
   used over the whole split (RVQ: its stages' codes pooled), written to the entry's
   `results.json`, its card's table (`README.md`) and `reconstructions.png`, and the
   study's rows to `<root>/results.json`;
3. times `--speed_steps` training steps of every entry's model (after warm-up) in this
   process, the entries in turn for `--speed_rounds` rounds so that load changes touch
   them alike, and reports each entry's median in images per second and relative to
   the EMA entry;

then prints a Markdown table. With `--phases=promote --promote=rvq,fsq_16k`, each named entry
becomes the zoo entry `zoo/vqvae_cifar10_<kind>/`: its weights, its recipe.flags (logging to
runs/), results.json and reconstructions.png from training.evaluate on the held-out split, and
a card with the results table and the validation curve every 1,000 steps from its TensorBoard
logs. The full study (10,000 steps each, on the real CIFAR-10):

    python -m benchmarks.quantizer_study --data_dir=../shared/tfds

A check that every part runs (a few steps on the bundled sample, no XLA):

    python -m benchmarks.quantizer_study --dataset=cifar10_sample --steps=4 --speed_steps=3 \\
        --nojit_compile --root=/tmp/quantizer_study
"""

import os

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
if __name__ == "__main__":
    from training.console import quiet_native_logs

    quiet_native_logs()

import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from training.data import load_image_data  # noqa: E402
from training.evaluate import CARD_BEGIN, CARD_END  # noqa: E402
from training.evaluate import run as run_evaluation  # noqa: E402
from training.fit import build_model, codebook_overrides  # noqa: E402
from training.optimizer import make_optimizer  # noqa: E402
from vq_keras.atomic import atomic_file  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

# The entries: today's EMA, EMA + restarts, cosine + codebook_dim, the rotation
# trick, FSQ at about 1,000 and about 16,000 codes (the paper's levels for 2^10 and 2^14),
# and residual VQ. Each is a set of training.fit quantizer flags.
ENTRIES = {
    "ema": {},
    "ema_restarts": {"dead_code_threshold": 0.1},
    "ema_cosine_codebook_dim": {"cosine": True, "codebook_dim": 8, "dead_code_threshold": 0.1},
    "ema_rotation": {"gradient": "rotation"},
    "fsq_1k": {"quantizer": "fsq", "fsq_levels": "8,5,5,5"},
    "fsq_16k": {"quantizer": "fsq", "fsq_levels": "8,8,8,6,5"},
    "rvq": {"quantizer": "rvq", "num_quantizers": 4, "dead_code_threshold": 0.1},
}

FLAGS = flags.FLAGS
# training.fit's own --dataset, --data_dir, --batch_size, --learning_rate and --jit_compile,
# with the zoo recipe's defaults.
FLAGS.set_default("dataset", "cifar10")
FLAGS.set_default("learning_rate", 1e-3)
FLAGS.set_default("jit_compile", True)
flags.DEFINE_list("entries", list(ENTRIES), f"Study entries to run, of: {', '.join(ENTRIES)}.")
flags.DEFINE_integer("steps", 10_000, "Training steps of every entry.")
flags.DEFINE_integer("speed_steps", 50, "Timed training steps per entry (after as many warm-up steps).")
flags.DEFINE_string("root", "runs/quantizer_study", "Where each entry's run folder goes.")
flags.DEFINE_integer("eval_batches", None, "Held-out batches to evaluate (default: the whole split).")
PHASES = ("train", "evaluate", "speed", "promote")
flags.DEFINE_list("phases", ["train", "evaluate", "speed"],
                  "Phases to run, of: train, evaluate, speed (speed reads results.json of evaluate), promote.")
flags.DEFINE_list("promote", [], "Entries the promote phase makes zoo entries (<zoo>/vqvae_cifar10_<kind>).")
flags.DEFINE_string("zoo", str(REPO / "zoo"), "The zoo folder the promote phase writes entries into.")
flags.DEFINE_integer("speed_rounds", 3, "Timing rounds; each round times every entry once, in turn.")


def write_text(path, text):
    with atomic_file(path) as temporary:
        temporary.write_text(text)


def recipe(name):
    """The training.fit flags of entry `name`."""
    epochs = max(1, FLAGS.steps // 1000)
    args = [
        f"--dataset={FLAGS.dataset}", "--model=vqvae", "--preset=cifar10", f"--batch_size={FLAGS.batch_size}",
        f"--learning_rate={FLAGS.learning_rate}", "--learning_rate_decay=cosine", f"--epochs={epochs}",
        f"--steps_per_epoch={FLAGS.steps // epochs}", "--seed=0",
        f"--deterministic={str(not FLAGS.jit_compile).lower()}", f"--jit_compile={str(FLAGS.jit_compile).lower()}",
    ]
    if FLAGS.data_dir:
        args.append(f"--data_dir={FLAGS.data_dir}")
    for flag, value in ENTRIES[name].items():
        args.append(f"--{flag}" if value is True else f"--{flag}={value}")
    return args


def train(name, logdir):
    args = recipe(name)
    logdir.mkdir(parents=True, exist_ok=True)
    write_text(logdir / "recipe.flags", "\n".join([*args, f"--logdir={logdir}"]) + "\n")
    print(f"[{name}] python -m training.fit {' '.join(args)} --logdir={logdir}", flush=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, "-m", "training.fit", *args, f"--logdir={logdir}"], cwd=REPO, env=env)
    if result.returncode:
        raise SystemExit(f"[{name}] training.fit failed with exit code {result.returncode}.")


def evaluate(name, logdir):
    """training.evaluate on the held-out split, written to the entry's results.json and card."""
    results = run_evaluation(
        logdir, None, FLAGS.dataset, FLAGS.data_dir, output=logdir / "results.json", card=logdir / "README.md",
        picture=logdir / "reconstructions.png",
    )
    level = results["levels"]["codes"]
    return {
        "entry": name, "mse_over_variance": results["mse_over_variance"], "perplexity": level["perplexity"],
        "codes_used": level["codebook_usage"], "num_embeddings": level["num_embeddings"],
        "quantizer": type(keras.saving.load_model(logdir / "model.keras").quantizer).__name__,
    }


def zoo_name(name):
    """The zoo entry of a study entry: vqvae_cifar10_<kind> (rvq, fsq, ...)."""
    return f"vqvae_cifar10_{name.split('_')[0]}"


def validation_curve(logdir, steps_per_epoch):
    """Markdown rows of the validation figures training.fit logged at each epoch end."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logdir / "validation"), size_guidance={"tensors": 0})
    events.Reload()
    values = lambda tag: {e.step: float(tf.make_ndarray(e.tensor_proto)) for e in events.Tensors(tag)}  # noqa: E731
    loss, perplexity, usage = (values(f"epoch_{tag}") for tag in ("reconstruction_loss", "perplexity", "epoch_codebook_usage"))
    rows = [
        "| steps | validation MSE / variance | perplexity (mean over batches) | codes used (whole split) |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for epoch in sorted(loss):
        rows.append(f"| {(epoch + 1) * steps_per_epoch:,} | {loss[epoch]:.4f} | {perplexity[epoch]:.1f} | {usage[epoch]:.1%} |")
    return "\n".join(rows)


def promote(name, logdir):
    """Makes the trained study entry `name` the zoo entry zoo/<zoo_name(name)>/."""
    entry = zoo_name(name)
    folder = Path(os.path.relpath(Path(FLAGS.zoo) / entry))
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(logdir / "model.keras", folder / "model.keras")
    write_text(folder / "recipe.flags", "\n".join([*recipe(name), f"--logdir=runs/{entry}"]) + "\n")
    flags_text = " ".join(f"--{flag}" if value is True else f"--{flag}={value}" for flag, value in ENTRIES[name].items())
    epochs = max(1, FLAGS.steps // 1000)
    write_text(folder / "README.md", f"""# {entry}: the cifar10 VQ-VAE with {type(keras.saving.load_model(logdir / "model.keras").quantizer).__name__}

`VQVAE.from_preset("{entry}")`: the encoder and decoder of `VQVAE.from_preset("cifar10")` unchanged,
with the quantizer of `{flags_text}`; the recipe of
[vqvae_cifar10](../vqvae_cifar10/README.md) otherwise (batch 32, Adam 1e-3 decayed to zero by a cosine,
{FLAGS.steps:,} steps on the real CIFAR-10 `train` split, validated on `test`). The quantizer study
(benchmarks/RESULTS.md, `python -m benchmarks.quantizer_study`) trained it beside the other kinds.

## Measured on the CIFAR-10 test split

`training.evaluate` on all 10,000 `test` images (perplexity and codes used over the whole split, a
residual quantizer's stages pooled; MSE over the pixel variance of the whole `train` split):

    python -m training.evaluate --model={entry} --dataset=cifar10 \\
        --data_dir=../shared/tfds --output=zoo/{entry}/results.json --card=zoo/{entry}/README.md

{CARD_BEGIN}
{CARD_END}

## Training

    python -m training.fit --flagfile=zoo/{entry}/recipe.flags

Logged by training.fit at each epoch end (its MSE normaliser is the variance of the first 1,000
training images, 0.4% below the whole split's):

{validation_curve(logdir, FLAGS.steps // epochs)}

![8 test images (top) and their reconstructions (bottom), each pixel shown 4x4](reconstructions.png)
""")
    run_evaluation(
        folder, None, FLAGS.dataset, FLAGS.data_dir, output=folder / "results.json", card=folder / "README.md",
        picture=folder / "reconstructions.png",
    )
    print(f"[{name}] zoo entry written: {folder}")


def train_step(name, data):
    """The entry's compiled train step (the model training.fit builds), warmed up."""
    values = {"model": "vqvae", "preset": "cifar10", **ENTRIES[name]}
    values["fsq_levels"] = values["fsq_levels"].split(",") if "fsq_levels" in values else None
    overrides = codebook_overrides(type("Flags", (), values))
    keras.utils.set_random_seed(0)
    model = build_model("vqvae", "cifar10", None, data.data_variance, data.image_shape, FLAGS.dataset, overrides)
    model.compile(optimizer=make_optimizer(FLAGS.learning_rate, "none", 1), jit_compile=FLAGS.jit_compile)
    model.make_train_function()
    batches = iter(data.train.repeat())
    for _ in range(FLAGS.speed_steps):
        model.train_function(batches)
    return lambda: model.train_function(batches)


def images_per_second(step):
    start = time.perf_counter()
    for _ in range(FLAGS.speed_steps):
        logs = step()
    float(tf.convert_to_tensor(logs["loss"]))  # wait for the last step
    return FLAGS.speed_steps * FLAGS.batch_size / (time.perf_counter() - start)


def median_speeds(names, data):
    steps = {name: train_step(name, data) for name in names}
    rounds = [{name: images_per_second(step) for name, step in steps.items()} for _ in range(FLAGS.speed_rounds)]
    return {name: sorted(speeds[name] for speeds in rounds)[len(rounds) // 2] for name in names}


def print_table(rows):
    ema = next((row.get("images_per_second") for row in rows if row["entry"] == "ema"), None)
    print(f"\n{FLAGS.dataset}, {FLAGS.steps} steps, batch {FLAGS.batch_size}, jit_compile={FLAGS.jit_compile}\n")
    print("| entry | quantizer | codes | val MSE/variance | perplexity | codes used | train images/s | vs EMA |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        speed = row.get("images_per_second")
        ratio = f"{speed / ema:.2f}" if speed and ema else "-"
        print(
            f"| {row['entry']} | {row['quantizer']} | {row['num_embeddings']} | {row['mse_over_variance']:.4f} | "
            f"{row['perplexity']:.1f} | {row['codes_used']:.1%} | {f'{speed:.0f}' if speed else '-'} | {ratio} |"
        )


def main(argv):
    del argv
    unknown = [name for name in FLAGS.entries if name not in ENTRIES]
    unknown += [name for name in FLAGS.promote if name not in ENTRIES]
    unknown_phases = [phase for phase in FLAGS.phases if phase not in PHASES]
    if unknown or unknown_phases:
        raise app.UsageError(
            f"Unknown entries {unknown} or phases {unknown_phases}. "
            f"Known entries: {', '.join(ENTRIES)}; phases: {', '.join(PHASES)}."
        )
    root = Path(FLAGS.root)
    if "train" in FLAGS.phases:
        for name in FLAGS.entries:
            train(name, root / name)
    for name in FLAGS.promote if "promote" in FLAGS.phases else []:
        promote(name, root / name)
    if not {"evaluate", "speed"} & set(FLAGS.phases):
        return
    # The study's rows, one per entry evaluated so far (a later run updates its own entries).
    rows_path = root / "results.json"
    rows = {row["entry"]: row for row in json.loads(rows_path.read_text())} if rows_path.exists() else {}
    if "evaluate" in FLAGS.phases:
        for name in FLAGS.entries:
            rows[name] = {**rows.get(name, {}), **evaluate(name, root / name)}
        write_text(rows_path, json.dumps([rows[name] for name in ENTRIES if name in rows], indent=1) + "\n")
    if "speed" in FLAGS.phases:  # builds the entries' models afresh: it needs no trained weights
        data = load_image_data(FLAGS.dataset, FLAGS.data_dir, FLAGS.batch_size, seed=0)
        for name, speed in median_speeds(FLAGS.entries, data).items():
            rows.setdefault(name, {"entry": name})["images_per_second"] = speed
        write_text(rows_path, json.dumps([rows[name] for name in ENTRIES if name in rows], indent=1) + "\n")
    print_table([rows[name] for name in ENTRIES if "mse_over_variance" in rows.get(name, {})])


if __name__ == "__main__":
    app.run(main)
