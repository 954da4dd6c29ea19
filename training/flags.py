"""Flags more than one tool defines, each defined and checked in one place."""

import math

from absl import flags

from training.errors import UsageError


# `generate`'s sampling arguments, each the flag of its name (--seed aside: every tool has one).
SAMPLING_FLAGS = ("temperature", "top_k", "top_p", "num_steps", "guidance")


def define_sampling_flags(seed_help):
    """--seed and the SAMPLING_FLAGS: how images are drawn from a prior."""
    flags.DEFINE_integer("seed", 0, seed_help)
    flags.DEFINE_float("temperature", 1.0, "Softmax temperature (> 0); below 1 sharpens the distribution.")
    flags.DEFINE_integer("top_k", None, "Draw each code among its top_k most probable codes (default: all).")
    flags.DEFINE_float(
        "top_p", None, "Nucleus sampling: draw among the most probable codes whose probabilities sum to top_p, in (0, 1]."
    )
    flags.DEFINE_integer("num_steps", None, "Masked priors (MaskGIT): parallel decoding steps (default: the prior's).")
    flags.DEFINE_float(
        "guidance", None,
        "Classifier-free guidance scale (>= 0) for priors trained with --label_dropout: above 1 steers each "
        "image harder towards its class (default: none).",
    )


def sampling_arguments(flag_values):
    """The parsed SAMPLING_FLAGS, as `generate`'s keyword arguments."""
    return {name: getattr(flag_values, name) for name in SAMPLING_FLAGS}


def check_sampling(seed, temperature=1.0, top_k=None, top_p=None, num_steps=None, guidance=None):
    """UsageErrors for sampling flags out of range, naming the value received."""
    if not 0 <= seed < 2**31:
        raise UsageError(f"--seed must be an integer in [0, 2**31) = [0, {2**31 - 1}]. Received: --seed={seed}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise UsageError(
            "--temperature must be a finite number > 0 (1 samples the prior as trained; below 1 sharpens it, "
            f"above 1 flattens it). Received: --temperature={temperature}"
        )
    if top_k is not None and top_k < 1:
        raise UsageError(
            f"--top_k must be at least 1 (draw each code among its top_k most probable codes), or left out to draw "
            f"among all. Received: --top_k={top_k}"
        )
    if top_p is not None and not 0 < top_p <= 1:
        raise UsageError(
            "--top_p must be in (0, 1] (draw among the most probable codes whose probabilities sum to top_p), or "
            f"left out to draw among all. Received: --top_p={top_p}"
        )
    if num_steps is not None and num_steps < 1:
        raise UsageError(
            f"--num_steps must be at least 1 (the parallel decoding steps of a masked prior), or left out for "
            f"the prior's own. Received: --num_steps={num_steps}"
        )
    if guidance is not None and not (math.isfinite(guidance) and guidance >= 0):
        raise UsageError(
            "--guidance must be a finite number >= 0 (the classifier-free guidance scale: 1 samples as without "
            f"it, above 1 steers each image towards its class), or left out. Received: --guidance={guidance}"
        )
