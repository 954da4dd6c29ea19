"""The data-source registry: each --dataset name reaches its reader, and a source registered from
a test alone (one class, one registry line) serves read_splits and trains through training.fit."""

import numpy as np
import pytest
import tensorflow as tf

from training.data import read_splits
from training.data.folder import FolderSource
from training.data.registry import DATA_SOURCES, data_source
from training.data.sample_reader import SampleSource
from training.data.source import DataSource, Splits
from training.data.tfds_reader import TFDSSource

NOISE_PREFIX = "noise:"


class NoiseSource(DataSource):
    """`noise:N`: N seeded uniform-noise 16x16 RGB images, labelled i mod 2; every 5th held out."""

    @classmethod
    def accepts(cls, name):
        return name.startswith(NOISE_PREFIX)

    def images(self):
        count = int(self.name[len(NOISE_PREFIX):])
        return np.random.default_rng(count).integers(0, 256, size=(count, 16, 16, 3), dtype=np.uint8)

    def image_shape(self):
        return (16, 16, 3)

    def held_out_split(self):
        return "every 5th image"

    def fingerprint(self):
        return f"noise\0{self.name}"

    def open(self, with_labels, skip_bad_images, channels, covering=None):
        images = self.images()
        labels = np.arange(len(images)) % 2
        held_out = np.arange(len(images)) % 5 == 4
        split = lambda mask: tf.data.Dataset.from_tensor_slices(  # noqa: E731
            (images[mask], labels[mask]) if with_labels else images[mask]
        )
        return Splits(
            train=split(~held_out), validation=split(held_out),
            load=lambda image: (image, tf.constant(True), tf.constant(self.name)),
            num_train=int((~held_out).sum()), num_validation=int(held_out.sum()),
            variance_items=tf.data.Dataset.from_tensor_slices(images[~held_out]), image_shape=self.image_shape(),
            num_classes=2 if with_labels else None,
        )


@pytest.fixture
def noise_source(monkeypatch):
    monkeypatch.setitem(DATA_SOURCES, "noise", NoiseSource)


@pytest.mark.parametrize(
    "name, kind",
    [("cifar10_sample", SampleSource), ("folder:/data/photos", FolderSource), ("cifar10", TFDSSource),
     ("mnist", TFDSSource)],
)
def test_each_dataset_name_reaches_its_reader(name, kind):
    assert type(data_source(name, "/tfds")) is kind


def test_a_source_registered_from_a_test_serves_the_pipeline(noise_source):
    assert type(data_source("noise:25")) is NoiseSource
    train, held_out, num_classes, skipped = read_splits("noise:25", with_labels=True, image_size="8")
    images = NoiseSource("noise:25").images()
    train_images = np.stack([image for image, _ in train.as_numpy_iterator()])
    assert num_classes == 2 and skipped == [] and train_images.shape == (20, 8, 8, 3)
    held_out_labels = [int(label) for _, label in held_out.as_numpy_iterator()]
    assert held_out_labels == [i % 2 for i in range(25) if i % 5 == 4]
    # 16x16 -> 8x8 by the pipeline's antialiased resize, not by the reader
    expected = tf.image.resize(images[:1], (8, 8), antialias=True).numpy()
    assert np.abs(train_images[0].astype(float) - expected[0]).max() <= 1


@pytest.mark.large
def test_a_source_registered_from_a_test_trains_through_training_fit(noise_source, tmp_path, capsys):
    import keras

    from training import fit

    fit.FLAGS.unparse_flags()
    fit.FLAGS(["fit", "--dataset=noise:40", f"--logdir={tmp_path / 'my run'}", "--steps_per_epoch=3",
               "--validation_steps=1", "--batch_size=4", "--monitor_images=2", "--jit_compile=false"])
    try:
        path = fit.train(fit.RunConfig.from_flags(fit.FLAGS))
    finally:
        fit.FLAGS.unparse_flags()
    model = keras.saving.load_model(path)
    assert model.optimizer.iterations.numpy() == 3
    # the command it prints runs as printed: the folder's space is quoted
    assert f"(view with: tensorboard --logdir '{tmp_path / 'my run'}')" in capsys.readouterr().out
    images = NoiseSource("noise:40").images()[:2] / np.float32(255)
    assert model.reconstruct(images).shape == (2, 16, 16, 3)
