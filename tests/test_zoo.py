"""Every shipped zoo entry: it loads by name and by folder, its recipe parses with training.fit's
flags, its results.json is training.evaluate's on the full CIFAR-10 test split and its card shows
that table, and on the bundled CIFAR-10 sample it measures what the card implies."""

import copy
import json

import numpy as np
import pytest
from absl import flags

from tests.conftest import REPO, SAMPLE_BITS_MARGIN, SAMPLE_MSE_MARGIN
from training import evaluate
from vq_keras.zoo import VQVAE, VQVAE2, HierarchicalPrior, MaskGITPrior, PixelCNNPrior, TransformerPrior
from vq_keras.zoo._trained import WEIGHT_FILES, resolve, saved_class_name, trained_entries

ZOO = REPO / "zoo"
ENTRIES = sorted(folder.name for folder in ZOO.iterdir() if any((folder / name).is_file() for name in WEIGHT_FILES))
PRIOR_CLASSES = (PixelCNNPrior, TransformerPrior, MaskGITPrior, HierarchicalPrior)
CLASSES = {cls.__name__: cls for cls in (VQVAE, VQVAE2, *PRIOR_CLASSES)}
CIFAR10_TEST_IMAGES = 10_000


def test_the_zoo_ships_the_four_entries():
    assert {"vqvae_cifar10", "vqvae2_cifar10", "pixelcnn_vqvae_cifar10", "pixelcnn_vqvae2_cifar10"} <= set(ENTRIES)


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
    """The model.keras an entry's results were measured with (`--model` took a name or a path)."""
    if results["model"] in trained_entries():
        return resolve(results["model"], "model.keras")
    return REPO / results["model"] / "model.keras" if (REPO / results["model"]).is_dir() else REPO / results["model"]


@pytest.mark.parametrize("name", ENTRIES)
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


@pytest.mark.parametrize("name", ENTRIES)
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


@pytest.mark.parametrize("name", ENTRIES)
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

