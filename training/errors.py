"""The errors the command-line tools report without a traceback, and how their `main` reports them."""

import sys

from absl import app


class UsageError(ValueError):
    """A problem with the command line or the data that the user can fix.

    The command-line tools print its message as one paragraph, without a traceback.
    """


class TrainingDiverged(RuntimeError):
    """Training produced a non-finite loss or weights; the last good backup is kept.

    The command-line tools print its message as one paragraph, without a traceback.
    """


class exiting_on_usage_errors:
    """The tools' `main`: refuses positional arguments, and inside it a UsageError ends the process
    with its one-paragraph `error:` on stderr and exit code 2 (no traceback)."""

    def __init__(self, argv):
        if len(argv) > 1:
            raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if isinstance(error, UsageError):
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
        return False
