"""The folder input pipeline beside the training step, and its memory and start-up time against folder size.

    nice -n 10 python -m benchmarks.input_pipeline --workdir=/tmp/input_pipeline

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

Prints one line per figure and the load average before and after.
"""

import os

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

REPO = Path(__file__).resolve().parents[1]


def write_folder(folder, count):
    if folder.is_dir() and len(list(folder.iterdir())) == count:
        return
    folder.mkdir(parents=True, exist_ok=True)
    with np.load(SAMPLE_PATH) as arrays:
        images = arrays["train_images"]
    encoded = [
        tf.io.encode_jpeg(tf.cast(tf.round(tf.image.resize(image, (218, 178), antialias=True)), tf.uint8), quality=90)
        .numpy()
        for image in images
    ]
    for i in range(count):
        (folder / f"{i:06d}.jpg").write_bytes(encoded[i % len(encoded)])


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


def fit_run(folder, logdir):
    """(seconds to the "Training" line, seconds to the end, peak RSS in MB) of a 20-step training.fit."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO), "CI": "1"}
    args = [
        sys.executable, "-m", "training.fit", f"--dataset=folder:{folder}", "--image_size=64", "--epochs=1",
        "--steps_per_epoch=20", "--validation_steps=2", f"--batch_size={FLAGS.batch_size}", "--overwrite",
        f"--logdir={logdir}",
    ]
    started = time.perf_counter()
    process = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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
    return ready[0], ended, usage.ru_maxrss / 1024


def main(argv):
    workdir = Path(FLAGS.workdir)
    print(f"load average before: {os.getloadavg()}")
    folders = {count: workdir / f"jpeg_{count}" for count in (FLAGS.small, FLAGS.large)}
    for count, folder in folders.items():
        write_folder(folder, count)
    rate = pipeline_rate(folders[FLAGS.small])
    print(f"pipeline, 178x218 JPEG -> 64x64, batch {FLAGS.batch_size}: {rate:.0f} images/s")
    step = train_rate()
    print(f"train step, VQVAE cifar10 preset at 64x64, batch {FLAGS.batch_size}: {step:.0f} images/s")
    for count, folder in folders.items():
        ready, ended, rss = fit_run(folder, workdir / f"run_{count}")
        print(f"training.fit on {count} files, 20 steps: first step after {ready:.1f} s, end after {ended:.1f} s, "
              f"peak RSS {rss:.0f} MB")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    app.run(main)
