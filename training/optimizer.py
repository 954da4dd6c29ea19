"""The optimizer both training stages use: Adam, its learning rate held or decayed."""

import keras

LEARNING_RATE_DECAYS = ("none", "cosine")


def make_optimizer(learning_rate, decay, total_steps):
    """Adam at `learning_rate`, constant (`decay="none"`, the papers' choice) or
    cosine-decayed to zero over the run's `total_steps` (`decay="cosine"`)."""
    if decay not in LEARNING_RATE_DECAYS:
        raise ValueError(f"decay must be one of {', '.join(LEARNING_RATE_DECAYS)}. Received: decay={decay!r}")
    if decay == "none":
        return keras.optimizers.Adam(learning_rate)
    if total_steps < 1:
        raise ValueError(f"A cosine decay needs at least one training step. Received: total_steps={total_steps}")
    return keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=total_steps))


def extendable_settings(hparams):
    """The settings an unfinished run may change when it resumes: `epochs` (a run
    may be extended), unless the learning rate decays over the run's length."""
    return ("epochs",) if hparams.get("learning_rate_decay", "none") == "none" else ()


def resume_settings(hparams):
    """What a resumed run must share with the run that wrote its backup: every
    hyperparameter but the extendable ones."""
    extendable = extendable_settings(hparams)
    return {name: value for name, value in hparams.items() if name not in extendable}
