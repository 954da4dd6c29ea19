"""A readable console for the command-line tools: `vq_keras.console`'s filter of TensorFlow's
native start-up chatter, and absl's Python logging at warnings. Called by each tool's `__main__`
only, before TensorFlow is imported: a library or a test process keeps its standard error as it is.
"""

import os


def quiet_native_logs():
    """The filter of `vq_keras.console`, set up before TensorFlow is imported (VQ_KERAS_QUIET=1 makes
    `import vq_keras` set it up first thing), and absl's Python logging to warnings (pass
    --verbosity=0 for its INFO lines)."""
    from absl import flags, logging

    flags.FLAGS.set_default("verbosity", logging.WARNING)
    os.environ["VQ_KERAS_QUIET"] = "1"
    import vq_keras  # noqa: F401
