"""A prior records the autoencoder it was trained on; the pair is checked (vq_keras/models/pairing.py)."""

import hashlib

import keras
import numpy as np
import pytest

from tests.presets import TINY_AUTOENCODER
from vq_keras.models import MismatchedAutoencoder, autoencoder_identity, check_trained_on
from vq_keras.zoo import VQVAE, HierarchicalPrior, PixelCNNPrior


def _autoencoder(seed):
    keras.utils.set_random_seed(seed)
    model = VQVAE(**TINY_AUTOENCODER)
    model.build_if_needed()
    return model


def test_the_identity_is_the_hash_of_the_weights_values():
    model = _autoencoder(0)
    digest = hashlib.sha256()  # the reference: shape, dtype and bytes of each weight, in order
    for weight in model.weights:
        value = np.asarray(weight)
        digest.update(f"{value.dtype.str}{value.shape}".encode() + value.tobytes())
    identity = autoencoder_identity(model, source="runs/a/model.keras")
    assert identity == {"class": "VQVAE", "source": "runs/a/model.keras", "weights_sha256": digest.hexdigest()}


def test_a_saved_copy_is_the_same_autoencoder_and_changed_weights_are_not(tmp_path):
    model = _autoencoder(0)
    model.save(tmp_path / "copy.keras")
    copy = keras.saving.load_model(tmp_path / "copy.keras", compile=False)
    assert autoencoder_identity(copy)["weights_sha256"] == autoencoder_identity(model)["weights_sha256"]
    weight = copy.quantizers[0].weights[0]
    weight.assign(np.asarray(weight) + np.float32(1e-6))  # one nudge of the codebook: another autoencoder
    assert autoencoder_identity(copy)["weights_sha256"] != autoencoder_identity(model)["weights_sha256"]


@pytest.mark.parametrize("hierarchical", [False, True])
def test_a_prior_keeps_the_record_through_save_and_load_and_refuses_another_autoencoder(tmp_path, hierarchical):
    trained_on, other = _autoencoder(0), _autoencoder(1)
    prior = PixelCNNPrior(16, num_layers=1, num_filters=8, trained_on=autoencoder_identity(trained_on, "a"))
    if hierarchical:
        top = PixelCNNPrior(16, num_layers=1, num_filters=8)
        bottom = PixelCNNPrior(16, num_layers=1, num_filters=8, condition_num_embeddings=16, condition_upsampling=2)
        prior = HierarchicalPrior([top, bottom], trained_on=autoencoder_identity(trained_on, "a"))
    prior.build_if_needed()
    prior.save(tmp_path / "prior.keras")
    loaded = keras.saving.load_model(tmp_path / "prior.keras")
    assert loaded.trained_on == autoencoder_identity(trained_on, "a")
    check_trained_on(trained_on, loaded)
    with pytest.raises(MismatchedAutoencoder) as error:
        check_trained_on(other, loaded)
    recorded, actual = autoencoder_identity(trained_on)["weights_sha256"], autoencoder_identity(other)["weights_sha256"]
    assert str(error.value).startswith(
        f"This prior was trained on the codes of another autoencoder: a VQVAE (a) whose weights hash to "
        f"{recorded[:12]}..., not this VQVAE's {actual[:12]}... Its codes mean other things to this decoder"
    )
    check_trained_on(other, PixelCNNPrior(16))  # no record (built by hand, or saved before the record): passes


@pytest.mark.parametrize("bad", [{"weights_sha256": "abc"}, "vqvae", {"class": "VQVAE", "source": None,
                                                                       "weights_sha256": "xyz" * 21 + "x"}])
def test_a_malformed_record_is_refused(bad):
    with pytest.raises(ValueError, match=r"PixelCNNPrior expects trained_on to be None or the autoencoder_identity"):
        PixelCNNPrior(16, trained_on=bad)
