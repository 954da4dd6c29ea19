"""Every shipped zoo entry: it loads by name and by folder, its recipe parses with training.fit's
flags, its results.json is training.evaluate's on the full CIFAR-10 test split and its card shows
that table, and on the bundled CIFAR-10 sample it measures what the card implies."""

import copy
import json
import re

import numpy as np
import pytest
from absl import flags

from tests.conftest import REPO, SAMPLE_BITS_MARGIN, SAMPLE_MSE_MARGIN
from training import evaluate
from vq_keras.models import autoencoder_identity, check_trained_on
from vq_keras.zoo import VQVAE, VQVAE2, HierarchicalPrior, ImageClassifier, MaskGITPrior, PixelCNNPrior, TransformerPrior
from vq_keras.zoo._trained import WEIGHT_FILES, resolve, saved_class_name, trained_entries

ZOO = REPO / "zoo"
ENTRIES = sorted(folder.name for folder in ZOO.iterdir() if any((folder / name).is_file() for name in WEIGHT_FILES))
# The sample-quality classifier's entries; the others are autoencoders and priors (generators).
CLASSIFIERS = [name for name in ENTRIES if (ZOO / name / ImageClassifier.PRESET_FILE).is_file()]
GENERATORS = [name for name in ENTRIES if name not in CLASSIFIERS]
PRIOR_CLASSES = (PixelCNNPrior, TransformerPrior, MaskGITPrior, HierarchicalPrior)
CLASSES = {cls.__name__: cls for cls in (VQVAE, VQVAE2, ImageClassifier, *PRIOR_CLASSES)}
CIFAR10_TEST_IMAGES = 10_000
SAMPLE_FIGURES = {"num_samples", "seed", "classifier", "frechet_distance", "real_frechet_distance",
                  "reconstruction_frechet_distance", "feature_dim", "num_reference_images"}


def test_the_zoo_ships_the_entries():
    assert {"vqvae_cifar10", "vqvae2_cifar10", "pixelcnn_vqvae_cifar10", "pixelcnn_vqvae2_cifar10"} <= set(ENTRIES)
    assert CLASSIFIERS == ["classifier_cifar10"]


def entry_class(name):
    weights = next(ZOO / name / file for file in WEIGHT_FILES if (ZOO / name / file).is_file())
    return CLASSES[saved_class_name(weights)]


def results_of(name):
    return json.loads((ZOO / name / "results.json").read_text())


@pytest.mark.parametrize("name", ENTRIES)
def test_loads_by_name_and_by_folder_with_the_same_weights(name):
    cls = entry_class(name)
    by_name, by_folder = cls.from_preset(name), cls.from_preset(ZOO / name)
    assert type(by_name) is cls and name in cls.presets() and cls.presets()[name].startswith("trained: ")
    for a, b in zip(by_name.weights, by_folder.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def measured_model(results):
    """The model.keras an entry's results were measured with (`--autoencoder` took a name or a path)."""
    if results["model"] in trained_entries():
        return resolve(results["model"], "model.keras")
    return REPO / results["model"] / "model.keras" if (REPO / results["model"]).is_dir() else REPO / results["model"]


@pytest.mark.parametrize("name", GENERATORS)
def test_recipe_parses_with_training_fit_flags(name):
    import training.fit  # noqa: F401  (defines the flags)

    parsed = copy.deepcopy(flags.FLAGS)
    parsed.unparse_flags()
    parsed(["training.fit", f"--flagfile={ZOO / name / 'recipe.flags'}"])
    results = results_of(name)
    assert parsed.dataset == results["dataset"]
    if entry_class(name) in PRIOR_CLASSES:
        assert parsed.stage == "prior"  # trained on the codes of the autoencoder its results were measured with
        assert (REPO / parsed.autoencoder).resolve() == measured_model(results).resolve()


@pytest.mark.parametrize("name", GENERATORS)
def test_results_are_training_evaluate_on_the_full_test_split_and_the_card_shows_them(name):
    results = results_of(name)
    assert {"mse_over_variance", "psnr", "ssim", "levels", "commit", "dataset", "split"} <= set(results)
    assert (results["dataset"], results["split"], results["num_images"]) == ("cifar10", "test", CIFAR10_TEST_IMAGES)
    is_prior = entry_class(name) in PRIOR_CLASSES
    masked = entry_class(name) is MaskGITPrior  # no exact likelihood: a masked-token loss instead of bits
    for level in results["levels"].values():
        assert {"perplexity", "codebook_usage", "bits_per_code"} <= set(level)
        assert (level["bits_per_code"] is not None) == (is_prior and not masked)
        assert ("masked_token_loss" in level) == masked
    card = (ZOO / name / "README.md").read_text()
    assert f"{evaluate.CARD_BEGIN}\n{evaluate.table(results)}\n{evaluate.CARD_END}" in card


@pytest.mark.parametrize("name", [name for name in GENERATORS if entry_class(name) in PRIOR_CLASSES])
def test_every_prior_has_its_samples_measured_on_the_shipped_classifier(name):
    results = results_of(name)
    figures = results["samples"]
    assert SAMPLE_FIGURES <= set(figures) and figures["classifier"] == "classifier_cifar10"
    assert figures["num_samples"] == 1000 and figures["num_reference_images"] == 50_000
    conditional = entry_class(name).from_preset(name).num_classes is not None
    assert {"class_accuracy", "real_class_accuracy", "reconstruction_class_accuracy"} <= set(figures) or not conditional
    # the scale: held-out real images are closer to the training images than anything generated, and
    # without guidance so are their reconstructions (guidance draws class-typical images, which can beat them)
    assert figures["real_frechet_distance"] < min(figures["reconstruction_frechet_distance"], figures["frechet_distance"])
    if figures["sampling"].get("guidance") in (None, 1.0):
        assert figures["reconstruction_frechet_distance"] < figures["frechet_distance"]


@pytest.mark.parametrize("name", [name for name in GENERATORS if entry_class(name) in PRIOR_CLASSES])
def test_every_prior_records_the_autoencoder_its_recipe_trained_it_on(name):
    recipe = (ZOO / name / "recipe.flags").read_text()
    source = re.search(r"--autoencoder=zoo/(\w+)/model.keras", recipe).group(1)
    prior, autoencoder = entry_class(name).from_preset(name), entry_class(source).from_preset(source)
    assert prior.trained_on == autoencoder_identity(autoencoder, source=source)
    check_trained_on(autoencoder, prior)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_the_classifier_recipe_parses_with_fit_classifier_flags_and_its_card_gives_its_accuracy(name):
    from training import fit_classifier

    parsed = flags.FlagValues()
    fit_classifier.define_flags(parsed)
    parsed(["training.fit_classifier", f"--flagfile={ZOO / name / 'recipe.flags'}"])
    results = results_of(name)
    assert (parsed.dataset, parsed.epochs, parsed.seed) == (results["dataset"], results["epochs"], results["seed"])
    assert (results["dataset"], results["split"], results["num_images"]) == ("cifar10", "test", CIFAR10_TEST_IMAGES)
    assert f"{results['test_accuracy']:.2%}" in (ZOO / name / "README.md").read_text()


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_the_classifier_on_the_bundled_sample_scores_what_its_card_says(name):
    from training.data.pipeline import SAMPLE_PATH

    with np.load(SAMPLE_PATH) as arrays:
        images, labels = (arrays["test_images"] / np.float32(255)).astype("float32"), arrays["test_labels"]
    accuracy = np.mean(np.asarray(ImageClassifier.from_preset(name).predict_labels(images)) == labels)
    # 300 images: a standard error of about 2.5 points
    assert abs(accuracy - results_of(name)["test_accuracy"]) < 0.08


@pytest.mark.parametrize("name", GENERATORS)
@pytest.mark.large
def test_on_the_bundled_sample_it_measures_what_the_card_implies(name):
    card = results_of(name)
    prior = card["prior"] and ZOO / name
    sample = evaluate.run(measured_model(card), prior, "cifar10_sample")
    assert sample["mse_over_variance"] == pytest.approx(card["mse_over_variance"], rel=SAMPLE_MSE_MARGIN)
    for level, figures in card["levels"].items():
        if figures["bits_per_code"] is not None:
            assert abs(sample["levels"][level]["bits_per_code"] - figures["bits_per_code"]) < SAMPLE_BITS_MARGIN
        if "masked_token_loss" in figures:  # nats per masked code, within the same margin
            assert abs(sample["levels"][level]["masked_token_loss"] - figures["masked_token_loss"]) < SAMPLE_BITS_MARGIN

