"""Argument checks shared by the layers and models, with messages that explain.

Python numbers and NumPy scalars are taken alike (`numbers.Integral`, `numbers.Real`); booleans are
not numbers here, and a float must be finite.
"""

import functools
import inspect
import math
import numbers

import numpy as np


def require_positive_int(owner, argument, value, allow_zero=False):
    low = 0 if allow_zero else 1
    if _is_bool(value) or not isinstance(value, numbers.Integral) or value < low:
        kind = "a non-negative integer" if allow_zero else "a positive integer"
        raise ValueError(f"{owner} expects {argument} to be {kind}. Received: {argument}={value!r}")


def require_number(owner, argument, value, low, high=None, low_inclusive=True):
    """Checks low <= value (< or <=) high; high=None means unbounded."""
    number = not _is_bool(value) and isinstance(value, numbers.Real)
    ok = number and math.isfinite(value) and (value >= low if low_inclusive else value > low)
    ok = ok and (high is None or value < high)
    if not ok:
        interval = f"{'[' if low_inclusive else '('}{low}, {'inf' if high is None else high})"
        if number and not math.isfinite(value):
            interval = f"to be a finite number (in {interval})"
        else:
            interval = f"in {interval}"
        raise ValueError(f"{owner} expects {argument} {interval}. Received: {argument}={value!r}")


def require_choice(owner, argument, value, choices):
    """Checks that `value` is one of the strings in `choices`."""
    if value not in choices:
        raise ValueError(
            f"{owner} expects {argument} to be one of {', '.join(map(repr, choices))}. "
            f"Received: {argument}={value!r}"
        )


def _is_bool(value):
    return isinstance(value, (bool, np.bool_))


def takes_numpy_scalars(init):
    """Wraps a public constructor so that NumPy scalars (np.int64(4), np.float32(0.25), also inside a
    tuple or list) arrive as the Python numbers they hold: Keras's own layers refuse them (Dense's
    units, Embedding's input_dim), and a config of Python numbers is plain JSON."""

    @functools.wraps(init)
    def wrapped(self, *args, **kwargs):
        return init(self, *map(_python_number, args), **{key: _python_number(value) for key, value in kwargs.items()})

    wrapped.__signature__ = inspect.signature(init)  # Keras reads the constructor's arguments from it
    return wrapped


def _python_number(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, list)) and any(isinstance(item, np.generic) for item in value):
        return type(value)(_python_number(item) for item in value)
    return value
