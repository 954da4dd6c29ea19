"""A quantizer registered from a test alone (one class, one registry line) is built by name by the
zoo models and trained through training.fit, with the CLI's quantizer flags derived for it."""

import keras
import numpy as np
import pytest
from keras import ops

from training import fit
from training.flags import flag_kinds
from training.errors import UsageError
from vq_keras.layers import QUANTIZERS
from vq_keras.layers._base_quantizer import Quantizer


@keras.saving.register_keras_serializable(package="tests")
class FixedCodebookQuantizer(Quantizer):
    """The nearest of num_embeddings fixed random vectors, with a straight-through gradient."""

    def __init__(self, num_embeddings, embedding_dim, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.num_embeddings, self.embedding_dim, self.seed = num_embeddings, embedding_dim, seed

    def build(self, input_shape):
        self._check_last_axis(input_shape)
        vectors = np.random.default_rng(self.seed).normal(size=(self.num_embeddings, self.embedding_dim))
        self.codebook = self.add_weight(
            shape=vectors.shape, initializer=keras.initializers.Constant(vectors), trainable=False, name="codebook"
        )

    def encode(self, inputs):
        flat = ops.reshape(ops.cast(inputs, "float32"), (-1, self.embedding_dim))
        distances = ops.sum(flat**2, 1, keepdims=True) - 2 * flat @ ops.transpose(self.codebook)
        return ops.reshape(ops.cast(ops.argmin(distances, axis=1), "int32"), ops.shape(inputs)[:-1])

    def _lookup(self, codes):
        return ops.take(self.codebook, self._checked_codes(codes), axis=0)

    def call(self, inputs, training=None, return_codes=False):
        codes = self.encode(inputs)
        quantized = self._with_gradient(ops.cast(inputs, "float32"), self._lookup(codes))
        outputs = ops.cast(quantized, self.compute_dtype)
        return (outputs, codes) if return_codes else outputs

    def get_config(self):
        return {**super().get_config(), "num_embeddings": self.num_embeddings, "embedding_dim": self.embedding_dim,
                "seed": self.seed}


@pytest.fixture
def fixed_quantizer(monkeypatch):
    monkeypatch.setitem(QUANTIZERS, "fixed", FixedCodebookQuantizer)


def test_the_cli_derives_which_flags_a_registered_quantizer_takes(fixed_quantizer):
    assert "fixed" in flag_kinds("num_embeddings") and "fixed" not in flag_kinds("codebook_dim")
    fit.FLAGS.unparse_flags()
    fit.FLAGS(["fit", "--quantizer=fixed", "--codebook_dim=8"])
    try:
        with pytest.raises(UsageError, match="--codebook_dim does not apply to --quantizer=fixed"):
            fit.codebook_overrides(fit.FLAGS)
    finally:
        fit.FLAGS.unparse_flags()


@pytest.mark.large
def test_a_quantizer_registered_from_a_test_trains_through_training_fit(fixed_quantizer, tmp_path):
    fit.FLAGS.unparse_flags()
    fit.FLAGS(["fit", "--quantizer=fixed", "--num_embeddings=32", f"--logdir={tmp_path / 'run'}",
               "--steps_per_epoch=3", "--validation_steps=1", "--batch_size=4", "--monitor_images=2",
               "--jit_compile=false"])
    try:
        path = fit.train(fit.RunConfig.from_flags(fit.FLAGS))
    finally:
        fit.FLAGS.unparse_flags()
    model = keras.saving.load_model(path)
    assert type(model.quantizer) is FixedCodebookQuantizer and model.quantizer.num_embeddings == 32
    assert model.optimizer.iterations.numpy() == 3
    images = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype("float32")
    codes = model.encode(images)
    np.testing.assert_allclose(model.decode(codes), model.reconstruct(images), atol=1e-6)
