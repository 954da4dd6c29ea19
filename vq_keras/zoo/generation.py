"""New images from a trained autoencoder and a prior over its codes."""

from keras import ops

from vq_keras.models.prior import Prior
from vq_keras.zoo._common import require_one_code_per_position
from vq_keras.zoo.hierarchical_prior import HierarchicalPrior


def generate(
    autoencoder, prior, num, seed=0, labels=None, image_size=None, temperature=1.0, method=None,
    top_k=None, top_p=None, num_steps=None, guidance=None, return_codes=False,
):
    """Samples codes from `prior` and decodes them into new images.

    Args:
        autoencoder: a trained `VQVAE` (one code grid) or `VQVAE2` (several).
        prior: a prior (`vq_keras.models.Prior`, e.g. `PixelCNNPrior`) over a
            VQVAE's codes, or a `HierarchicalPrior` over a VQVAE2's levels (top first).
        num: the number of images.
        seed: an int in [0, 2**31); the same seed gives the same images.
        labels: int class labels (num,) or one int, for class-conditional priors.
        image_size: (height, width) of the images; by default the prior's
            `grid_shape` (the top prior's for a HierarchicalPrior) sets it.
        temperature: > 0, the sampling temperature.
        method: autoregressive priors: "cached" (None, the default) or
            "full", as in `Prior.sample`; both give the same images.
        top_k: None, or draw each code among its top_k most probable codes.
        top_p: None, or nucleus sampling: among the most probable codes whose
            probabilities sum to top_p, in (0, 1].
        num_steps: masked priors (MaskGITPrior): the parallel decoding steps
            (None: the prior's own).
        guidance: None, or the classifier-free guidance scale (>= 0; 1 draws what None
            draws) for priors trained with label_dropout, as in `Prior.sample`.
        return_codes: also return the codes the images were decoded from.

    Returns:
        float32 images (num, height, width, channels) in [0, 1]; with return_codes,
        (images, codes): codes an int32 (num, h, w) grid for one level, else a list of
        grids, top first.

    Example:
        >>> images = generate(vqvae, prior, num=16, seed=0, image_size=(32, 32))
    """
    shapes = generation_grids(autoencoder, prior, image_size)
    codes = prior.sample(
        num, labels=labels, temperature=temperature, seed=seed, grid_shape=shapes[0], method=method,
        top_k=top_k, top_p=top_p, num_steps=num_steps, guidance=guidance,
    )
    images = ops.cast(autoencoder.decode(codes), "float32")
    return (images, codes) if return_codes else images


def generation_grids(autoencoder, prior, image_size=None):
    """Checks that `prior` models the codes of `autoencoder`; returns the code
    grid (height, width) of every level, top first, for `image_size` (by
    default the prior's grid_shape)."""
    levels = len(getattr(autoencoder, "level_names", ()))
    if levels == 0 or not hasattr(autoencoder, "decode"):
        raise TypeError(
            "generate expects a vq_keras autoencoder (VQVAE or VQVAE2) as `autoencoder`. "
            f"Received: {type(autoencoder).__name__}"
        )
    if isinstance(prior, HierarchicalPrior):
        priors = prior.priors
    elif isinstance(prior, Prior):
        priors = [prior]
    else:
        raise TypeError(
            "generate expects a prior (e.g. PixelCNNPrior) for a VQVAE or a HierarchicalPrior for a "
            f"VQVAE2 as `prior`. Received: {type(prior).__name__}"
        )
    require_one_code_per_position(autoencoder, "generate")
    if len(priors) != levels:
        hint = "a HierarchicalPrior" if levels > 1 else "a PixelCNNPrior"
        raise ValueError(
            f"generate: {type(autoencoder).__name__} has {levels} code level(s) but the prior models "
            f"{len(priors)}. Use {hint} for this autoencoder."
        )
    for level, level_prior in enumerate(priors):
        if level_prior.num_embeddings != autoencoder.num_embeddings:
            raise ValueError(
                f"generate: the prior of level {level} models num_embeddings={level_prior.num_embeddings} "
                f"codes but {type(autoencoder).__name__} has num_embeddings={autoencoder.num_embeddings}."
            )
    if image_size is not None:
        shapes = [tuple(s) for s in autoencoder.code_shapes(tuple(image_size))]
    else:
        shapes = [priors[0].grid_shape]
        if shapes[0] is None:
            raise ValueError(
                "generate needs the image size. Received: image_size=None, and the prior has no "
                "grid_shape. Pass image_size=(height, width)."
            )
        for level_prior in priors[1:]:
            shapes.append(tuple(s * level_prior.condition_upsampling for s in shapes[-1]))
    if isinstance(prior, HierarchicalPrior):
        expected = prior.grid_shapes(grid_shape=shapes[0])
        if expected != shapes:
            raise ValueError(
                f"generate: the priors' grids {expected} (from condition_upsampling) do not match "
                f"the autoencoder's code grids {shapes}."
            )
    return shapes
