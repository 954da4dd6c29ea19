"""One run owns its log directory: a lock against a second run, and a record of its settings.

`claim_run_dir(logdir, settings, results, logs, ...)` is entered by both training
stages before they read any data. Inside it:

- A second run with the same log directory stops at once with the first one's
  process id and command (an advisory `fcntl.flock` on `<logdir>/.run.lock`;
  the kernel drops the lock when its process ends, even by `kill -9`, so a
  killed run never leaves it stuck).
- `<logdir>/run.json` records the run's settings (everything that shapes the
  weights or the data) and whether it finished. Running the same command again
  resumes an unfinished run, or reports a finished one; a command with other
  settings stops with the names and values that differ, and deletes nothing,
  unless `overwrite` is set, which deletes the previous run's outputs first.
- Half-written files that a killed run left (`.tmp-*`, see vq_keras.atomic)
  are removed, since no other writer can be at work in the folder.

Why not only the settings in each backup (training/resume.py): a finished run
has no backups left, and a backup describes one stage's level, while the
record covers the whole folder before anything in it is touched.
"""

import contextlib
import datetime
import fcntl
import json
import os
import shutil
import socket
import sys
from pathlib import Path

from training.errors import UsageError
from vq_keras.atomic import TEMPORARY_PREFIX, atomic_file, why_not_writable

LOCK_FILE = ".run.lock"
RECORD_FILE = "run.json"


class RunDir:
    """A claimed log directory; `finished` when the same run has ended there already."""

    def __init__(self, logdir, settings, finished):
        self.logdir = logdir
        self.settings = settings
        self.finished = finished

    def mark_finished(self):
        """Records that the run ended and saved its results."""
        _write_record(self.logdir, self.settings, finished=True)
        self.finished = True


@contextlib.contextmanager
def claim_run_dir(logdir, settings, results, logs, overwrite=False, may_extend=(), adoptable=()):
    """Locks `logdir` for this run and checks it against the run recorded there.

    Args:
        logdir: the run's log directory (created if missing).
        settings: dict of JSON values, every setting that shapes the weights or the data.
        results: glob patterns (relative to `logdir`) of the trained work a run
            leaves there: its result, its backups, trained parts. While any exists,
            a command with other settings is refused (unless `overwrite`), and so
            is a folder holding any without a record.
        logs: glob patterns of everything else a run writes there; `overwrite`
            deletes these and the results.
        overwrite: delete the previous run's results and logs and start anew,
            instead of stopping.
        may_extend: names of settings an unfinished run may change when it is
            resumed (e.g. "epochs" under a constant learning rate).
        adoptable: result patterns a new run takes over when they are found
            without a record (trained parts put there by hand to be reused).

    Yields a `RunDir`. Raises UsageError when another run holds `logdir`, when the
    folder cannot be written, or when it holds another run and `overwrite` is False.
    """
    logdir = Path(logdir)
    _check_writable(logdir)
    with _lock(logdir):
        if overwrite:
            _delete(logdir, (*results, *logs, RECORD_FILE))
        record = _read_record(logdir)
        if record is None:
            _refuse_unrecorded(logdir, [pattern for pattern in results if pattern not in adoptable])
        _remove_temporaries(logdir)
        finished = record is not None and record["finished"]
        if record is not None and _found(logdir, results):
            _check_same_run(logdir, record, settings, () if finished else may_extend)
        else:
            finished = False  # nothing trained is left to protect (e.g. a run that stopped on a usage error)
        if not finished:
            _write_record(logdir, settings, finished=False)
        yield RunDir(logdir, settings, finished)


def _check_writable(logdir):
    problem = why_not_writable(logdir, folder=True)
    if problem:
        raise UsageError(f"--logdir={logdir}: {problem}. Pass a folder you can write for the run's logs and model.")
    logdir.mkdir(parents=True, exist_ok=True)


@contextlib.contextmanager
def _lock(logdir):
    with open(logdir / LOCK_FILE, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise UsageError(
                f"--logdir={logdir} is in use by another run ({handle.read().strip() or 'unknown process'}). "
                "Two runs in one log directory would mix their logs and delete each other's backups: wait "
                "for that run to end, or pass another --logdir."
            ) from None
        try:
            handle.truncate(0)
            started = datetime.datetime.now().isoformat(timespec="seconds")
            handle.write(f"pid {os.getpid()} on {socket.gethostname()}, started {started}: {' '.join(sys.argv)}\n")
            handle.flush()
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def is_unfinished_run(logdir):
    """Whether `logdir` is the log folder of a run that recorded its settings and has not finished."""
    try:
        record = _read_record(Path(logdir))
    except UsageError:
        return False
    return record is not None and not record["finished"]


def _read_record(logdir):
    path = logdir / RECORD_FILE
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
        if not isinstance(record.get("settings"), dict) or not isinstance(record.get("finished"), bool):
            raise ValueError("expected {'settings': {...}, 'finished': true|false}")
    except (OSError, ValueError, AttributeError) as error:
        raise UsageError(
            f"The run record {path} is unreadable ({error}). Nothing was changed: pass --overwrite to replace "
            "the run in this folder, or another --logdir."
        ) from None
    return record


def _write_record(logdir, settings, finished):
    with atomic_file(logdir / RECORD_FILE) as temporary:
        temporary.write_text(json.dumps({"settings": settings, "finished": finished}, indent=1, sort_keys=True))


def _check_same_run(logdir, record, settings, may_extend):
    saved = record["settings"]
    changed = sorted(
        name for name in {*saved, *settings} if name not in may_extend and saved.get(name) != settings.get(name)
    )
    if not changed:
        return
    before = ", ".join(f"{name}={saved.get(name)!r}" for name in changed)
    now = ", ".join(f"{name}={settings.get(name)!r}" for name in changed)
    state = "finished run" if record["finished"] else "run that has not finished (its backups resume it)"
    raise UsageError(
        f"--logdir={logdir} holds a {state} with {before}; this command has {now}. Nothing was changed. "
        "Run the same command to " + ("see its result" if record["finished"] else "resume it")
        + ", pass another --logdir for a new run, or --overwrite to delete that run and start this one."
    )


def _found(logdir, patterns):
    return sorted(str(path.relative_to(logdir)) for pattern in patterns for path in logdir.glob(pattern))


def _refuse_unrecorded(logdir, results):
    found = _found(logdir, results)
    if found:
        raise UsageError(
            f"--logdir={logdir} holds {', '.join(found)} of a run that recorded no settings (an earlier "
            "vq_keras, or copied in), so this command cannot tell whether it is the same run. Nothing was "
            "changed: pass another --logdir, or --overwrite to delete them and start this run."
        )


def _delete(logdir, patterns):
    for pattern in patterns:
        for path in logdir.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()


def _remove_temporaries(logdir):
    for folder, names, files in os.walk(logdir):
        for name in [*names, *files]:
            if name.startswith(TEMPORARY_PREFIX):
                path = Path(folder) / name
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        names[:] = [name for name in names if not name.startswith(TEMPORARY_PREFIX)]
