"""Argument checks shared by the layers and models, with messages that explain."""


def require_positive_int(owner, argument, value, allow_zero=False):
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        kind = "a non-negative integer" if allow_zero else "a positive integer"
        raise ValueError(f"{owner} expects {argument} to be {kind}. Received: {argument}={value!r}")


def require_number(owner, argument, value, low, high=None, low_inclusive=True):
    """Checks low <= value (< or <=) high; high=None means unbounded."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float))
    ok = ok and (value >= low if low_inclusive else value > low)
    ok = ok and (high is None or value < high)
    if not ok:
        left = "[" if low_inclusive else "("
        right = "inf)" if high is None else f"{high})"
        raise ValueError(
            f"{owner} expects {argument} in {left}{low}, {right}. Received: {argument}={value!r}"
        )


def require_choice(owner, argument, value, choices):
    """Checks that `value` is one of the strings in `choices`."""
    if value not in choices:
        raise ValueError(
            f"{owner} expects {argument} to be one of {', '.join(map(repr, choices))}. "
            f"Received: {argument}={value!r}"
        )
