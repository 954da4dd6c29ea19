"""Every `>>>` example in vq_keras's docstrings runs, in a namespace holding the names they use
(real CIFAR-10 images from the bundled sample, codes, labels, a model file at the path they name)."""

import doctest
import importlib
import pkgutil

import keras
import numpy as np
import pytest
import tensorflow as tf

import vq_keras
from training.data.sample_reader import SAMPLE_PATH

# Examples that train full-size networks, sample 1,000 images or evaluate: run by CI only.
LARGE = (
    "vq_keras.sample_quality", "vq_keras.evaluation", "vq_keras.zoo.hierarchical_prior.HierarchicalPrior",
    "vq_keras.zoo.pixelcnn_prior.PixelCNNPrior", "vq_keras.zoo.transformer_prior.TransformerPrior",
    "vq_keras.zoo.maskgit_prior.MaskGITPrior",
)


def _docstring_examples():
    finder = doctest.DocTestFinder(recurse=True)
    tests = []
    for module_info in pkgutil.walk_packages(vq_keras.__path__, "vq_keras."):
        module = importlib.import_module(module_info.name)
        tests += [test for test in finder.find(module) if test.examples and test.name.startswith(module.__name__)]
    return {test.name: test for test in tests}


EXAMPLES = _docstring_examples()


class _ShownOutputOnly(doctest.OutputChecker):
    """An example that shows no output may print (fit's progress, a returned History); one that
    shows its output must print it. Exceptions fail either way."""

    def check_output(self, want, got, optionflags):
        return not want or super().check_output(want, got, optionflags)


@pytest.fixture(scope="module")
def namespace(tmp_path_factory):
    """The names the examples take as given, and the folder holding runs/cifar10/model.keras."""
    root = tmp_path_factory.mktemp("examples")
    return _namespace(root), root


def _namespace(tmp_path):
    from vq_keras.zoo import VQVAE, VQVAE2, HierarchicalPrior, ImageClassifier, PixelCNNPrior

    with np.load(SAMPLE_PATH) as arrays:
        images = (arrays["test_images"][:8] / 255.0).astype("float32")
        labels = arrays["test_labels"][:8].astype("int32")
        many = (arrays["train_images"] / 255.0).astype("float32")  # 1,200: enough for num_samples=1000
    vqvae = VQVAE.from_preset("vqvae_cifar10")
    (tmp_path / "runs" / "cifar10").mkdir(parents=True)
    vqvae.save(tmp_path / "runs" / "cifar10" / "model.keras")
    codes = vqvae.encode(images)
    return dict(
        keras=keras, tf=tf, np=np, images=images, labels=labels, codes=codes, vqvae=vqvae,
        prior=PixelCNNPrior.from_preset("pixelcnn_vqvae_cifar10"), z_e=keras.random.normal((2, 8, 8, 64)),
        test_batches=np.split(many, 12), train_images=np.split(many, 12), VQVAE=VQVAE, VQVAE2=VQVAE2,
        HierarchicalPrior=HierarchicalPrior, PixelCNNPrior=PixelCNNPrior, ImageClassifier=ImageClassifier,
    )


@pytest.mark.parametrize(
    "name", [pytest.param(name, marks=pytest.mark.large) if name.startswith(LARGE) else name for name in sorted(EXAMPLES)]
)
def test_the_docstring_example_runs(name, namespace, tmp_path, monkeypatch):
    names, root = namespace
    (tmp_path / "runs").symlink_to(root / "runs")
    monkeypatch.chdir(tmp_path)  # what the examples write (exports/...) goes here
    test = EXAMPLES[name]
    test.globs = {**test.globs, **names}
    report = []
    runner = doctest.DocTestRunner(_ShownOutputOnly(), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    result = runner.run(test, out=report.append, clear_globs=False)
    assert result.failed == 0, "".join(report)


def test_the_examples_are_found():
    assert {"vq_keras.zoo.vqvae.VQVAE", "vq_keras.layers.vector_quantizer.VectorQuantizer",
            "vq_keras.zoo.generation.generate"} <= set(EXAMPLES)
