"""The folder input pipeline beside the training step; a run's memory against folder size and image size.

    nice -n 10 python -m benchmarks.input_pipeline --workdir=/tmp/input_pipeline [--memory]

1. Writes folders of 178x218 JPEG photographs (the bundled CIFAR-10 sample upscaled, the shape of
   CelebA's aligned faces; quality 90) of --small and --large files (files repeat the 1,200 sample
   images under new names).
2. Pipeline: `load_image_data(folder, image_size=64, batch_size)` on the small folder; images/s of its
   training stream (read, decode, resize, crop, batch) over --pipeline_batches batches after one.
3. Train step: `VQVAE.from_preset("cifar10")` at 64x64 (the flags' batch size), images/s of the train
   function over --train_steps steps of one repeated batch after a warm-up (the data costs nothing).
4. For each folder: `python -m training.fit --dataset=folder:DIR --image_size=64 --steps_per_epoch=20
   --validation_steps=2` in a child process: the seconds until it prints "Training" (the file list,
   the start check and the variance sample done: the first step follows), the seconds to its end,
   and its peak RSS (os.wait4's ru_maxrss of that child).
5. With --memory, instead: the peak RSS of whole training runs (`training.fit`, one child process
   each, one after the other) on folders of --memory_files JPEGs at 178x218, 512x512 and 2048x1536
   and of 32x32 PNGs (the same sample images), and on the TFDS data set --tfds (from --data_dir),
   at --image_size 64 (--steps_64 steps in epochs of --epoch_steps) and 256 (--steps_256 steps),
   with each run's training speed (images/s over its last epoch, from Keras's ms/step).
6. With --speed_against=DIR (another checkout, e.g. a worktree of an older commit), instead, on the
   same folder of --memory_files 178x218 JPEGs at --image_size=64, alternating (this, DIR, this, DIR,
   ...): the pipeline's images/s (2. above, one child process each, --pipeline_rounds times), then the
   training speed of `training.fit` runs of --speed_steps steps (--speed_rounds times) with each run's
   peak RSS.

Prints one line per figure and the load average before and after.
"""

import os
import re

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from training.data import load_image_data  # noqa: E402
from training.data.pipeline import SAMPLE_PATH  # noqa: E402
from vq_keras.zoo import VQVAE  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "/tmp/vq_keras_input_pipeline", "Where the folders and runs go.")
flags.DEFINE_integer("small", 2_000, "Files of the small folder.")
flags.DEFINE_integer("large", 20_000, "Files of the large folder.")
flags.DEFINE_integer("batch_size", 32, "Images per batch.")
flags.DEFINE_integer("pipeline_batches", 40, "Timed pipeline batches.")
flags.DEFINE_integer("train_steps", 10, "Timed train steps.")
flags.DEFINE_boolean("memory", False, "Measure the peak RSS of whole training runs instead (5. above).")
flags.DEFINE_integer("memory_files", 6_000, "Files of each folder of the memory runs.")
flags.DEFINE_integer("steps_64", 2_000, "Training steps of the memory runs at --image_size=64.")
flags.DEFINE_integer("steps_256", 20, "Training steps of the memory runs at --image_size=256.")
flags.DEFINE_integer("epoch_steps", 200, "Steps per epoch of the memory runs (every epoch end writes TensorBoard).")
flags.DEFINE_string("tfds", "cifar10", "The TFDS data set of the memory runs ('' for none).")
flags.DEFINE_string("data_dir", None, "Where --tfds is prepared.")
flags.DEFINE_list("sources", "jpeg178x218,png32x32,jpeg512x512,jpeg2048x1536,tfds", "Sources of the memory runs.")
flags.DEFINE_list("image_sizes", "64,256", "--image_size values of the memory runs.")
flags.DEFINE_string("speed_against", None, "Another checkout to compare the folder run's speed with (6. above).")
flags.DEFINE_integer("speed_steps", 300, "Training steps of each speed run (in epochs of --epoch_steps).")
flags.DEFINE_integer("speed_rounds", 2, "Training runs of each checkout in the speed comparison.")
flags.DEFINE_integer("pipeline_rounds", 6, "Pipeline measurements of each checkout in the speed comparison.")

REPO = Path(__file__).resolve().parents[1]


def write_folder(folder, count, size=(218, 178), kind="jpeg"):
    """`count` files of the sample's images resized to `size` = (height, width): JPEG (quality 90) or PNG."""
    if folder.is_dir() and len(list(folder.iterdir())) == count:
        return
    folder.mkdir(parents=True, exist_ok=True)
    with np.load(SAMPLE_PATH) as arrays:
        images = arrays["train_images"]
    encode = (lambda image: tf.io.encode_jpeg(image, quality=90)) if kind == "jpeg" else tf.io.encode_png
    encoded = [
        encode(tf.cast(tf.round(tf.image.resize(image, size, antialias=True)), tf.uint8)).numpy() for image in images
    ]
    for i in range(count):
        (folder / f"{i:06d}.{'jpg' if kind == 'jpeg' else 'png'}").write_bytes(encoded[i % len(encoded)])


def pipeline_rate(folder):
    data = load_image_data(f"folder:{folder}", batch_size=FLAGS.batch_size, image_size=64)
    stream = iter(data.train)
    next(stream)
    started = time.perf_counter()
    for _ in range(FLAGS.pipeline_batches):
        next(stream)
    return FLAGS.pipeline_batches * FLAGS.batch_size / (time.perf_counter() - started)


def train_rate():
    model = VQVAE.from_preset("cifar10", data_variance=0.06)
    model.compile()
    batch = tf.random.stateless_uniform((FLAGS.batch_size, 64, 64, 3), (0, 0))
    iterator = iter(tf.data.Dataset.from_tensors(batch).repeat())
    model.make_train_function()
    train = model.train_function
    for _ in range(3):
        train(iterator)
    started = time.perf_counter()
    for _ in range(FLAGS.train_steps):
        logs = train(iterator)
    float(logs["loss"])
    return FLAGS.train_steps * FLAGS.batch_size / (time.perf_counter() - started)


def fit_run(dataset, logdir, *flags_, repo=REPO):
    """(seconds to the "Training" line, seconds to the end, peak RSS in MB, output lines) of a training.fit
    of `dataset` with --image_size=64 --epochs=1 --steps_per_epoch=20 --validation_steps=2, or `flags_`,
    from the checkout `repo`."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(repo), "CI": "1"}
    flags_ = flags_ or ("--image_size=64", "--epochs=1", "--steps_per_epoch=20", "--validation_steps=2")
    args = [
        sys.executable, "-m", "training.fit", f"--dataset={dataset}", *flags_, f"--batch_size={FLAGS.batch_size}",
        "--overwrite", f"--logdir={logdir}",
    ]
    started = time.perf_counter()
    process = subprocess.Popen(args, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ready, lines = [], []

    def read():
        for line in process.stdout:
            lines.append(line)
            if line.startswith("Training") and not ready:
                ready.append(time.perf_counter() - started)

    reader = threading.Thread(target=read)
    reader.start()
    _, status, usage = os.wait4(process.pid, 0)
    ended = time.perf_counter() - started
    reader.join()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError("".join(lines)[-3000:])
    return ready[0], ended, usage.ru_maxrss / 1024, lines


MEMORY_FOLDERS = {  # source name -> (height, width), format
    "jpeg178x218": ((218, 178), "jpeg"),
    "png32x32": ((32, 32), "png"),
    "jpeg512x512": ((512, 512), "jpeg"),
    "jpeg2048x1536": ((1536, 2048), "jpeg"),
}


def last_step_seconds(lines):
    """Seconds per step of the last epoch Keras logged ("... - 226ms/step - ..." or "4s/step")."""
    value, unit = re.findall(r" (\d+(?:\.\d+)?)(ms|s)/step", "".join(lines))[-1]
    return float(value) / (1000 if unit == "ms" else 1)


def memory_runs(workdir):
    """Prints peak RSS and images/s of a training.fit run per source and image size."""
    for source in FLAGS.sources:
        if source == "tfds":
            if not FLAGS.tfds:
                continue
            dataset, data_flags = FLAGS.tfds, [f"--data_dir={FLAGS.data_dir}"] if FLAGS.data_dir else []
        else:
            size, kind = MEMORY_FOLDERS[source]
            folder = workdir / f"{source}_{FLAGS.memory_files}"
            write_folder(folder, FLAGS.memory_files, size, kind)
            dataset, data_flags = f"folder:{folder}", []
        for image_size in map(int, FLAGS.image_sizes):
            steps = FLAGS.steps_64 if image_size <= 64 else FLAGS.steps_256
            per_epoch = min(steps, FLAGS.epoch_steps)
            _, ended, rss, lines = fit_run(
                dataset, workdir / f"run_{source}_{image_size}", f"--image_size={image_size}",
                f"--epochs={steps // per_epoch}", f"--steps_per_epoch={per_epoch}", "--validation_steps=2", *data_flags,
            )
            speed = FLAGS.batch_size / last_step_seconds(lines)
            print(f"{source} --image_size={image_size}, {steps // per_epoch * per_epoch} steps: peak RSS {rss:.0f} MB, "
                  f"last epoch {speed:.1f} images/s, {ended:.0f} s in all (load {os.getloadavg()[0]:.2f})", flush=True)


def speed_runs(workdir):
    """Prints images/s and peak RSS of this checkout's and --speed_against's folder runs, alternating."""
    size, kind = MEMORY_FOLDERS["jpeg178x218"]
    folder = workdir / f"jpeg178x218_{FLAGS.memory_files}"
    write_folder(folder, FLAGS.memory_files, size, kind)
    checkouts = (("this checkout", REPO), (FLAGS.speed_against, Path(FLAGS.speed_against)))
    measure = (
        "from pathlib import Path; from benchmarks import input_pipeline as b; "
        f"b.FLAGS(['x', '--batch_size={FLAGS.batch_size}', '--pipeline_batches={FLAGS.pipeline_batches}']); "
        f"print(b.pipeline_rate(Path({str(folder)!r})))"
    )
    for round_ in range(FLAGS.pipeline_rounds):
        for name, repo in checkouts:
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(repo)}
            output = subprocess.run([sys.executable, "-c", measure], cwd=repo, env=env, capture_output=True, text=True,
                                    check=True).stdout
            print(f"round {round_ + 1}, {name}: pipeline {float(output.split()[-1]):.0f} images/s "
                  f"(load {os.getloadavg()[0]:.2f})", flush=True)
    per_epoch = min(FLAGS.speed_steps, FLAGS.epoch_steps)
    for round_ in range(FLAGS.speed_rounds):
        for name, repo in checkouts:
            _, ended, rss, lines = fit_run(
                f"folder:{folder}", workdir / "run_speed", "--image_size=64",
                f"--epochs={FLAGS.speed_steps // per_epoch}", f"--steps_per_epoch={per_epoch}", "--validation_steps=2",
                repo=repo,
            )
            print(f"round {round_ + 1}, {name}: last epoch {FLAGS.batch_size / last_step_seconds(lines):.1f} images/s, "
                  f"peak RSS {rss:.0f} MB, {ended:.0f} s in all (load {os.getloadavg()[0]:.2f})", flush=True)


def main(argv):
    workdir = Path(FLAGS.workdir)
    print(f"load average before: {os.getloadavg()}")
    if FLAGS.speed_against:
        speed_runs(workdir)
        print(f"load average after: {os.getloadavg()}")
        return
    if FLAGS.memory:
        memory_runs(workdir)
        print(f"load average after: {os.getloadavg()}")
        return
    folders = {count: workdir / f"jpeg_{count}" for count in (FLAGS.small, FLAGS.large)}
    for count, folder in folders.items():
        write_folder(folder, count)
    rate = pipeline_rate(folders[FLAGS.small])
    print(f"pipeline, 178x218 JPEG -> 64x64, batch {FLAGS.batch_size}: {rate:.0f} images/s")
    step = train_rate()
    print(f"train step, VQVAE cifar10 preset at 64x64, batch {FLAGS.batch_size}: {step:.0f} images/s")
    for count, folder in folders.items():
        ready, ended, rss, _ = fit_run(f"folder:{folder}", workdir / f"run_{count}")
        print(f"training.fit on {count} files, 20 steps: first step after {ready:.1f} s, end after {ended:.1f} s, "
              f"peak RSS {rss:.0f} MB")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    app.run(main)
