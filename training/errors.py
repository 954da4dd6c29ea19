class UsageError(ValueError):
    """A problem with the command line or the data that the user can fix.

    The command-line tools print its message as one paragraph, without a traceback.
    """


class TrainingDiverged(RuntimeError):
    """Training produced a non-finite loss or weights; the last good backup is kept.

    The command-line tools print its message as one paragraph, without a traceback.
    """
