from setuptools import find_packages, setup

setup(
    name="vq_keras",
    version="0.1.0",
    description="VQ-VAE and VQ-VAE-2 for Keras 3 / TensorFlow: quantizer layers, zoo models, priors.",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # The trained zoo entries (zoo/) install as the package data vq_keras/trained, read by
    # from_preset("<entry>") (vq_keras/zoo/_trained.py); the sample pictures stay in the repository.
    packages=[*find_packages(include=["vq_keras", "vq_keras.*"]), "vq_keras.trained"],
    package_dir={"vq_keras.trained": "zoo"},
    package_data={"vq_keras.trained": ["*.md", "*/*.keras", "*/results.json", "*/recipe.flags", "*/README.md"]},
    include_package_data=True,
    install_requires=[
        "tensorflow>=2.16",  # the first release that uses Keras 3
        "keras>=3.3",
        "tensorflow-datasets>=4.9",
        "importlib_resources",  # TFDS's download_and_prepare imports it; its own requirements leave it out
        "tensorflow-probability[tf]>=0.24",  # [tf] brings tf-keras, which TFP needs
        "absl-py>=2.0",
        "tensorboard>=2.16",
        "numpy",
    ],
    extras_require={
        "test": ["pytest>=8"],
        "bench": ["dm-sonnet>=2.0.2", "dm-tree"],
        "jax": ["jax>=0.4.36"],  # CPU; the layers of README's backend table run on it
        "torch": ["torch>=2.4"],  # the registry's build (CPU here); README's backend table
    },
)
