import keras
import numpy as np
import pytest

from vq_keras.zoo import ImageClassifier

TINY = dict(widths=(4, 8), blocks_per_stage=1, num_classes=2)


def test_features_are_the_pooled_last_stage_and_the_logits_a_dense_layer_of_them():
    classifier = ImageClassifier(**TINY)
    images = np.random.default_rng(0).uniform(size=(5, 16, 16, 3)).astype("float32")
    features = np.asarray(classifier.features(images))
    assert features.shape == (5, 8)
    kernel, bias = (np.asarray(w) for w in classifier.head.weights)
    np.testing.assert_allclose(np.asarray(classifier(images)), features @ kernel + bias, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(classifier.predict_labels(images)), np.argmax(features @ kernel + bias, -1))


def test_saves_and_loads_with_equal_outputs(tmp_path):
    classifier = ImageClassifier(**TINY)
    classifier.build_if_needed()
    classifier.save(tmp_path / "classifier.keras")
    loaded = keras.saving.load_model(tmp_path / "classifier.keras")
    images = np.random.default_rng(1).uniform(size=(3, 32, 32, 3)).astype("float32")
    assert loaded.get_config() == classifier.get_config()
    np.testing.assert_array_equal(np.asarray(loaded.features(images)), np.asarray(classifier.features(images)))


def test_learns_to_tell_bright_images_from_dark_ones():
    rng = np.random.default_rng(2)
    labels = np.arange(64) % 2
    images = (rng.uniform(0, 0.5, size=(64, 8, 8, 3)) + 0.5 * labels[:, None, None, None]).astype("float32")
    classifier = ImageClassifier(**TINY)
    classifier.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    classifier.fit(images, labels, batch_size=16, epochs=15, verbose=0)
    assert np.mean(np.asarray(classifier.predict_labels(images)) == labels) == 1.0


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(widths=()), r"at least one stage width. Received: widths=\(\)"),
        (dict(widths=(4, 0)), "widths"),
        (dict(blocks_per_stage=0), "blocks_per_stage"),
        (dict(dropout=1.5), "dropout"),
    ],
)
def test_bad_arguments_are_refused_by_name(arguments, message):
    with pytest.raises(ValueError, match=message):
        ImageClassifier(**{**TINY, **arguments})


def test_images_of_other_channels_are_refused_with_the_shape():
    with pytest.raises(ValueError, match=r"\(batch, height, width, 3\) in \[0, 1\]. Received: shape=\(2, 8, 8, 1\)"):
        ImageClassifier(**TINY).features(np.zeros((2, 8, 8, 1), "float32"))


def test_the_layer_harness(tmp_path):
    from tests.layer_harness import run_layer_test

    run_layer_test(
        ImageClassifier, dict(widths=(4, 8)), (2, 32, 32, 3), expected_output_shape=(2, 10), input_range=(0, 1),
        expected_num_trainable_weights=14, expected_num_non_trainable_weights=8,  # batch-norm statistics
        jit_compile=True, tmp_path=tmp_path,
    )
