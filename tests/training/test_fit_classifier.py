import json

import keras
import numpy as np
import pytest

from tests.training.conftest import run_module
from training import fit_classifier
from training.data.pipeline import SAMPLE_PATH
from training.errors import UsageError


@pytest.mark.large
def test_trains_and_writes_the_classifier_and_its_measured_test_accuracy(tmp_path):
    result = run_module(
        "training.fit_classifier", "--dataset=cifar10_sample", "--epochs=2", "--batch_size=64", f"--output={tmp_path}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    classifier = keras.saving.load_model(tmp_path / "classifier.keras")
    assert getattr(classifier, "optimizer", None) is None  # shipped without training state
    with np.load(SAMPLE_PATH) as arrays:
        images, labels = arrays["test_images"] / np.float32(255), arrays["test_labels"]
    predicted = np.asarray(classifier.predict_labels(images.astype("float32")))
    assert results["test_accuracy"] == pytest.approx(np.mean(predicted == labels), abs=1e-6)
    assert (results["dataset"], results["split"], results["num_images"], results["epochs"]) == (
        "cifar10_sample", "test", len(labels), 2,
    )
    assert f"Test accuracy on cifar10_sample test ({len(labels)} images): {results['test_accuracy']:.4f}" in result.stdout


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(epochs=0), "--epochs must be a positive integer. Received: --epochs=0"),
        (dict(output=None), "--output is required"),
        (dict(preset="imagenet"), "Unknown --preset='imagenet'. ImageClassifier presets: cifar10"),
    ],
)
def test_bad_flags_are_usage_errors_with_the_value(arguments, message, tmp_path):
    flags = dict(dataset="cifar10_sample", data_dir=None, preset="cifar10", epochs=1, batch_size=8, learning_rate=1e-3,
                 weight_decay=0.0, seed=0, output=tmp_path)
    with pytest.raises(UsageError, match=message):
        fit_classifier.run(**{**flags, **arguments})
