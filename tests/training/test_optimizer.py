import math

import keras
import numpy as np
import pytest

from training.errors import UsageError
from training.optimizer import make_optimizer, resume_settings
from training.resume import Backups


def _learning_rates(optimizer, steps):
    """The learning rate each of `steps` Adam updates of a one-weight model used."""
    weight = keras.Variable(np.ones(1, "float32"))
    rates = []
    for _ in range(steps):
        rates.append(float(optimizer.learning_rate))
        optimizer.apply([keras.ops.ones(1)], [weight])
    return rates


def test_constant_learning_rate_by_default():
    assert _learning_rates(make_optimizer(1e-3, "none", 10), 5) == pytest.approx([1e-3] * 5)


def test_cosine_decay_follows_half_a_cosine_to_zero():
    total = 8
    want = [2e-3 * 0.5 * (1 + math.cos(math.pi * step / total)) for step in range(total + 2)]
    want[-1] = 0.0  # held at zero after the run's length
    np.testing.assert_allclose(_learning_rates(make_optimizer(2e-3, "cosine", total), total + 2), want, atol=1e-9)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"decay must be one of none, cosine. Received: decay='linear'"):
        make_optimizer(1e-3, "linear", 10)
    with pytest.raises(ValueError, match=r"needs at least one training step. Received: total_steps=0"):
        make_optimizer(1e-3, "cosine", 0)


def test_a_run_may_be_extended_unless_its_learning_rate_decays_over_its_length():
    assert resume_settings({"epochs": 3, "seed": 0, "learning_rate_decay": "none"}) == {
        "seed": 0, "learning_rate_decay": "none"
    }
    assert resume_settings({"epochs": 3, "seed": 0, "learning_rate_decay": "cosine"})["epochs"] == 3


def test_a_cosine_run_is_not_resumed_with_another_length(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=make_optimizer(1e-3, "cosine", 20), loss="mse")
    model.fit(np.ones((4, 3)), np.ones((4, 1)), verbose=0)
    Backups(tmp_path, resume_settings({"epochs": 2, "learning_rate_decay": "cosine"})).save(model, 1)
    with pytest.raises(UsageError, match=r"written by a run with epochs=2, but this run has epochs=3"):
        Backups(tmp_path, resume_settings({"epochs": 3, "learning_rate_decay": "cosine"})).restore(model)
