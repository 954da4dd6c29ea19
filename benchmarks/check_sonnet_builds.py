"""Checks that the Sonnet builds in `benchmarks/sonnet_builds.py` are the zoo's nets.

For each cifar10 preset (VQVAE, VQVAE2) it builds ours and the Sonnet build,
copies our weights into the Sonnet modules by path (Sonnet's `w`/`b` are our
`kernel`/`bias`; Sonnet's codebook `embeddings` is (D, K), ours `codebook` is
(K, D)), runs both forwards in inference mode on the same random images, and
prints the largest reconstruction difference and whether the codes agree.
Exits with status 1 if they do not match.

    python -m benchmarks.check_sonnet_builds
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import sys  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.sonnet_builds import IMAGE_SHAPE, MODELS, PRESET  # noqa: E402

TOLERANCE = 1e-5
CODEBOOK_SCALE = 0.05


def our_weight_for(sonnet_path, ours):
    """Our weight matching a Sonnet variable path (without the module prefix)."""
    head, leaf = sonnet_path.rsplit("/", 1)
    if leaf == "embeddings":
        return ours[f"{head}/codebook"], True
    leaf = {"w": "kernel", "b": "bias"}[leaf]
    if f"{head}/{leaf}" in ours:
        return ours[f"{head}/{leaf}"], False
    matches = [w for path, w in ours.items() if path.startswith(head + "/") and path.endswith("/" + leaf)]
    if len(matches) == 1:  # e.g. upsampler_top/<conv2d_transpose>/kernel inside a Sequential
        return matches[0], False
    candidates = [p for p in ours if p.startswith(head)]
    raise KeyError(f"no unique weight of ours for Sonnet's {sonnet_path}: {candidates}")


def check(name, spec, images):
    ours_model = spec.keras_class.from_preset(PRESET)
    # Fresh codebooks are much wider than a fresh encoder's outputs, so nearly
    # every vector maps to the one shortest code; shrink them so that many codes
    # (and their lookups) take part in the comparison.
    for quantizer in ours_model.quantizers:
        quantizer.codebook.assign(quantizer.codebook * CODEBOOK_SCALE)
    recon_ours, codes_ours = ours_model(images, training=False, return_codes=True)
    ours = {w.path.split("/", 1)[1]: w for w in ours_model.weights}

    sonnet_model = spec.sonnet_class()
    sonnet_model(images, is_training=False)  # creates the variables
    for variable in sonnet_model.variables:
        path = variable.name.split(":")[0].split("/", 1)[1]
        if "/ema_" in path:
            continue  # EMA statistics: not used by an inference forward
        weight, transpose = our_weight_for(path, ours)
        value = weight.numpy()
        variable.assign(value.T if transpose else value)

    output = sonnet_model(images, is_training=False)
    codes_sonnet = [vq["encoding_indices"] for vq in output["vq_outputs"]]
    diff = float(tf.reduce_max(tf.abs(output["x_recon"] - recon_ours)))
    codes_equal = [np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(codes_ours, codes_sonnet)]
    ok = diff < TOLERANCE and len(codes_ours) == len(codes_sonnet) and all(codes_equal)
    print(
        f"{name}: max |reconstruction difference| = {diff:.2e}, codes equal per level (top first) = "
        f"{codes_equal}, distinct codes = {[len(np.unique(np.asarray(c))) for c in codes_ours]}: "
        f"{'OK' if ok else 'MISMATCH'}"
    )
    return ok


def main():
    keras.utils.set_random_seed(0)
    images = tf.constant(np.random.default_rng(1).random((4, *IMAGE_SHAPE), dtype=np.float32))
    results = [check(name, spec, images) for name, spec in MODELS.items()]
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
