import os
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.presets import TINY_AUTOENCODER


def run_module(module, *args, timeout=300):
    """Runs `python -m module args...` from the repository root, as a user would."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


FIT_RUN_ARGS = ("--epochs=2", "--steps_per_epoch=3", "--validation_steps=2", "--batch_size=8", "--jit_compile=false")


@pytest.fixture(scope="session")
def fit_run(tmp_path_factory):
    """One short `python -m training.fit` run on the bundled sample: (logdir, CompletedProcess)."""
    logdir = tmp_path_factory.mktemp("fit") / "run"
    result = run_module("training.fit", *FIT_RUN_ARGS, f"--logdir={logdir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return logdir, result


TINY_CLASSIFIER = dict(widths=(4, 8), blocks_per_stage=1)


@pytest.fixture(scope="session")
def tiny_model_files(tmp_path_factory):
    """A folder with an untrained tiny VQVAE (model.keras), a PixelCNNPrior over its 8x8 codes
    (prior.keras), a class-conditional one with 3 classes (conditional_prior.keras) and an
    ImageClassifier (classifier.keras)."""
    from vq_keras.zoo import VQVAE, ImageClassifier, PixelCNNPrior

    root = tmp_path_factory.mktemp("tiny_models")
    autoencoder = VQVAE(**TINY_AUTOENCODER)
    autoencoder.build_if_needed()
    autoencoder.save(root / "model.keras")
    for name, num_classes in (("prior.keras", None), ("conditional_prior.keras", 3)):
        prior = PixelCNNPrior(16, num_layers=1, num_filters=8, grid_shape=(8, 8), num_classes=num_classes)
        prior.build_if_needed()
        prior.save(root / name)
    classifier = ImageClassifier(**TINY_CLASSIFIER)
    classifier.build_if_needed()
    classifier.save(root / "classifier.keras")
    return root


def photo_folder(folder, count=40):
    """A folder of `count` real photographs (the bundled CIFAR-10 sample's first training images upscaled)
    as a user's camera or scraper leaves them: mostly 178x218 JPEGs, PNGs of odd sizes, a grayscale and an
    RGBA PNG, a 16-bit PNG, and one truncated JPEG. Returns (the truncated file's path, {path: the uint8
    pixels written, for the lossless files})."""
    import numpy as np
    import tensorflow as tf

    from training.data.pipeline import SAMPLE_PATH

    with np.load(SAMPLE_PATH) as arrays:
        images = arrays["train_images"][:count]
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for i, image in enumerate(images):
        kind = ("png_odd", "gray", "rgba", "png16")[i // 3] if i < 12 and i % 3 == 0 else "jpeg"
        size = {"png_odd": (97, 131), "gray": (200, 150)}.get(kind, (218, 178))
        pixels = tf.cast(tf.clip_by_value(tf.round(tf.image.resize(image, size, antialias=True)), 0, 255), tf.uint8)
        path = folder / f"{i:03d}_{kind}.{'jpg' if kind == 'jpeg' else 'png'}"
        if kind == "jpeg":
            tf.io.write_file(str(path), tf.io.encode_jpeg(pixels, quality=95))
            continue
        if kind == "gray":
            pixels = tf.image.rgb_to_grayscale(pixels)
        if kind == "rgba":
            pixels = tf.concat([pixels, tf.fill((*size, 1), tf.constant(128, tf.uint8))], -1)
        encoded = tf.io.encode_png(tf.cast(pixels, tf.uint16) * 257 if kind == "png16" else pixels)
        tf.io.write_file(str(path), encoded)
        written[path] = pixels.numpy()
    jpeg = (folder / "001_jpeg.jpg").read_bytes()
    truncated = folder / "017_truncated.jpg"
    truncated.write_bytes(jpeg[: len(jpeg) // 2])
    return truncated, written
