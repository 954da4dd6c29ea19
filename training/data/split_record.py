"""A file-list run's split, recorded in its log directory and held to when it resumes.

A folder's validation split is every 10th file of the sorted list, and its pixel variance (the loss
normaliser) is estimated from files spread over the training part: delete one file and every later
file moves, so a resumed run would train on images it had held out, against another normaliser.
`keep_split` writes the split's file names to `<logdir>/split.json` when a run starts and, when it
resumes from a backup, stops with the files removed and added if the split is not the one recorded.
Sources whose splits are fixed by name (TFDS, the bundled sample) record nothing.
"""

import json
from pathlib import Path

from training.errors import UsageError
from vq_keras.atomic import atomic_file

SPLIT_FILE = "split.json"
SHOWN = 5  # file names shown in the message per kind of change


def keep_split(logdir, split_files, resuming):
    """Records `split_files` = (training names, validation names) in `logdir`, or, when `resuming` and
    a record exists, raises a UsageError if they differ from it. None (no file list): does nothing."""
    if split_files is None:
        return
    path = Path(logdir) / SPLIT_FILE
    split = {"train": list(split_files[0]), "validation": list(split_files[1])}
    if resuming and path.exists():
        recorded = json.loads(path.read_text())
        if recorded != split:
            raise UsageError(_changed(logdir, recorded, split))
        return
    with atomic_file(path) as temporary:
        temporary.write_text(json.dumps(split))


def _changed(logdir, recorded, split):
    before, now = {*recorded["train"], *recorded["validation"]}, {*split["train"], *split["validation"]}
    changes = [
        _listed(f"{len(before - now)} removed", before - now),
        _listed(f"{len(now - before)} added", now - before),
    ]
    what = "; ".join(change for change in changes if change) or "the same files, split otherwise"
    return (
        f"The image folder of the run in {logdir} changed since it started: {what}. Its validation split "
        "and pixel variance were drawn from the files it started with (recorded in "
        f"{Path(logdir) / SPLIT_FILE}); going on would train on images it held out. Put the files back "
        "(a file that cannot be decoded may stay: --skip_bad_images skips it), or train the run again "
        "from the start with --overwrite (or another --logdir)."
    )


def _listed(count, names):
    if not names:
        return ""
    shown = ", ".join(sorted(names)[:SHOWN])
    return f"{count} ({shown}{', ...' if len(names) > SHOWN else ''})"
