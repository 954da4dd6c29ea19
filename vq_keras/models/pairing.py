"""Which autoencoder a prior was trained on, recorded in the prior, and the check that the two are used
together.

A prior's codes mean something only to the codebooks and decoder whose codes it was trained on: the
same prior with another autoencoder of the same code shapes samples valid-looking codes that decode
to garbage. Stage 2 records `autoencoder_identity` in the prior it saves (`trained_on`, part of its
config); `check_trained_on` compares it with an autoencoder's weights. The identity is a SHA-256 of
the weights' values (not of the file: a copy without optimizer state is the same autoencoder).
"""

import hashlib
import re

import numpy as np

IDENTITY_KEYS = ("class", "source", "weights_sha256")


class MismatchedAutoencoder(ValueError):
    """A prior used with an autoencoder other than the one whose codes it was trained on."""


def weights_sha256(autoencoder):
    """SHA-256 (hex) of every weight's shape and values of `autoencoder`, in its weight order."""
    digest = hashlib.sha256()
    for weight in autoencoder.weights:
        value = np.asarray(weight)  # tobytes() is C order whatever the layout
        digest.update(f"{value.dtype.str}{value.shape}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def autoencoder_identity(autoencoder, source=None):
    """The record a prior keeps of the autoencoder it was trained on: its class, where it was loaded
    from (`source`: a path or zoo name, for the messages) and `weights_sha256`."""
    return {"class": type(autoencoder).__name__, "source": source, "weights_sha256": weights_sha256(autoencoder)}


def checked_identity(owner, trained_on):
    """`trained_on` (None, or a dict as `autoencoder_identity` returns) checked for `owner`'s config."""
    if trained_on is None:
        return None
    valid = isinstance(trained_on, dict) and set(trained_on) == set(IDENTITY_KEYS)
    valid = valid and re.fullmatch(r"[0-9a-f]{64}", str(trained_on.get("weights_sha256"))) is not None
    if not valid:
        raise ValueError(
            f"{owner} expects trained_on to be None or the autoencoder_identity() of the autoencoder its "
            f"codes come from: a dict with keys {IDENTITY_KEYS}. Received: trained_on={trained_on!r}"
        )
    return dict(trained_on)


def check_trained_on(autoencoder, prior):
    """Raises MismatchedAutoencoder if `prior` records an autoencoder other than `autoencoder`; a prior
    that records none (trained before priors kept the record, or built by hand) passes."""
    recorded = getattr(prior, "trained_on", None)
    if recorded is None:
        return
    actual = weights_sha256(autoencoder)
    if actual != recorded["weights_sha256"]:
        source = f" ({recorded['source']})" if recorded.get("source") else ""
        raise MismatchedAutoencoder(
            f"This prior was trained on the codes of another autoencoder: a {recorded['class']}{source} whose "
            f"weights hash to {recorded['weights_sha256'][:12]}..., not this {type(autoencoder).__name__}'s "
            f"{actual[:12]}... Its codes mean other things to this decoder, so its samples would be noise. "
            "Use the autoencoder it was trained on, or train a prior on this one's codes "
            "(training.fit --stage=prior)."
        )
