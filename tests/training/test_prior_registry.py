"""A prior kind registered from a test alone (one class, one registry line) trains through
training.fit --stage=prior's code path, and an unknown kind is refused before any data is read."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from training import fit
from training.errors import UsageError
from vq_keras.models import Prior
from vq_keras.zoo import PRIORS, VQVAE
from tests.presets import TINY_AUTOENCODER as TINY


@keras.saving.register_keras_serializable(package="tests")
class PositionPrior(Prior):
    """p(codes) = prod over positions of a learned categorical per position (no context)."""

    PRESETS = {"cifar10": dict(num_embeddings=512, grid_shape=(8, 8))}

    def build(self, input_shape=None):
        self.position_logits = self.add_weight(
            shape=(*self.grid_shape, self.num_embeddings), initializer="zeros", name="position_logits"
        )

    def build_if_needed(self):
        if not self.built:
            self.build()

    def call(self, codes, labels=None, condition=None, training=None):
        return ops.broadcast_to(self.position_logits, (ops.shape(codes)[0], *self.position_logits.shape))

    def per_code_loss(self, codes, labels, condition, training):
        logits = self(codes, labels, condition, training=training)
        nll = keras.losses.sparse_categorical_crossentropy(codes, logits, from_logits=True)
        return logits, nll, None

    def check_sampling_options(self, owner, method, num_steps):
        return None

    def draw(self, num, grid_shape, labels, condition, temperature, key, method=None, top_k=None, top_p=None,
             num_steps=None, guidance=None):
        logits = tf.broadcast_to(self.position_logits, tf.stack([num, *self.position_logits.shape]))
        return self.draw_codes(logits, temperature, top_k, top_p, key)

    def get_config(self):
        config = super().get_config()
        config.update(num_embeddings=self.num_embeddings, grid_shape=self.grid_shape)
        return config


def run_fit(*args):
    fit.FLAGS.unparse_flags()
    fit.FLAGS(["fit", *args])
    try:
        return fit.train_priors(fit.RunConfig.from_flags(fit.FLAGS), fit.PRIOR_SETTINGS)
    finally:
        fit.FLAGS.unparse_flags()


@pytest.mark.large
def test_a_prior_kind_registered_from_a_test_trains_through_stage_2(monkeypatch, tmp_path):
    monkeypatch.setitem(PRIORS, "position", PositionPrior)
    autoencoder = VQVAE(**TINY)
    autoencoder.build_if_needed()
    autoencoder.save(tmp_path / "vqvae.keras")
    path = run_fit(
        "--stage=prior", "--prior=position", f"--autoencoder={tmp_path / 'vqvae.keras'}", "--epochs=1",
        "--steps_per_epoch=40", "--batch_size=30", "--learning_rate=0.05", "--jit_compile=false",
        f"--logdir={tmp_path / 'run'}",
    )
    prior = keras.saving.load_model(path)
    assert type(prior) is PositionPrior and prior.num_embeddings == 16 and prior.grid_shape == (8, 8)
    # It learned the codes' frequencies: its per-position distribution beats the uniform 4 bits.
    codes = np.load(next((tmp_path / "run" / "codes").glob("*.npz")))
    train = next(codes[key] for key in codes.files if "train" in key)
    nll = float(ops.mean(prior.per_code_loss(ops.convert_to_tensor(train), None, None, False)[1]))
    assert nll / np.log(2) < 0.9 * np.log2(16)
    assert prior.sample(3, seed=0).shape == (3, 8, 8)


def test_an_unknown_prior_kind_is_refused_before_any_data_is_read(tmp_path):
    with pytest.raises(UsageError, match="Unknown prior 'nope' \\(--prior\\). Known priors: pixelcnn, transformer"):
        run_fit("--stage=prior", "--prior=nope", f"--autoencoder={tmp_path / 'missing.keras'}",
                f"--logdir={tmp_path / 'run'}")
