"""`StepFlag`: what a model's train and test steps tell its forward pass, per thread."""

import contextlib
import threading


class StepFlag:
    """A flag that is on inside `with flag.on():`, in the thread that turned it on.

    Keras' steps call the model's forward pass themselves (`self(x)`, or `stateless_call` on
    JAX); a model that must run it differently inside its steps turns a flag on around
    Keras' own step. Per thread: MirroredStrategy traces every replica's step in its own thread.
    """

    def __init__(self):
        self._state = threading.local()

    @contextlib.contextmanager
    def on(self):
        previous = self.is_on()
        self._state.on = True
        try:
            yield
        finally:
            self._state.on = previous

    def is_on(self):
        return getattr(self._state, "on", False)

    def take(self):
        """Whether the flag is on; turns it off for the rest of the block (a one-shot signal)."""
        was_on = self.is_on()
        self._state.on = False
        return was_on
