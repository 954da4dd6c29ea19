"""The one atomic writer for every file and folder the project saves.

`model.keras` files, backups, the code cache, priors and SavedModel versions are
written to a hidden temporary name beside their target, fsynced, and renamed
into place. A reader (TF Serving, a resumed run, `keras.saving.load_model`)
sees the old target (or none) or the complete new one, never a part: a run
killed while writing, even with `kill -9`, leaves only a `.tmp-*` name, which
nothing reads. The name holds the writer's process id and host
(`.tmp-<pid>@<host>-<uuid>-<name>`), so `remove_abandoned_temporaries` can
delete what a dead writer left without touching one still writing.

What is published gets the permissions the user's umask gives, as any file
the user writes: `tempfile.mkdtemp` would create the folder with mode 0700,
which a server running as another user (TF Serving in a container) cannot
read.
"""

import contextlib
import errno
import os
import re
import shutil
import socket
import uuid
from pathlib import Path

TEMPORARY_PREFIX = ".tmp-"  # being written
REPLACED_PREFIX = ".old-"  # moved aside while its replacement is renamed into place
_WRITER = re.compile(re.escape(TEMPORARY_PREFIX) + r"(\d+)@(.+?)-[0-9a-f]{32}-")


def temporary_path(path):
    """A hidden name beside `path` for its content while it is written, naming this process."""
    path = Path(path)
    return path.parent / f"{TEMPORARY_PREFIX}{os.getpid()}@{socket.gethostname()}-{uuid.uuid4().hex}-{path.name}"


def remove_abandoned_temporaries(folder):
    """Deletes the temporaries in `folder` whose writer, a process on this host, has died (killed while
    writing); those of live writers, of other hosts and of unknown form are left alone."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        writer = _WRITER.match(entry.name)
        if writer and writer.group(2) == socket.gethostname() and not _alive(int(writer.group(1))):
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


@contextlib.contextmanager
def atomic_file(path):
    """Yields a hidden temporary path beside `path` (same suffix) to write, and
    renames it to `path` when the block ends: readers see the old file (or none)
    or the complete new one, never a part. If the block raises, it is removed.
    A symbolic link is written through: its target gets the new content, the link stays."""
    path = Path(os.path.realpath(path)) if os.path.islink(path) else Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_path(path)
    try:
        yield temporary
        _fsync(temporary)
        os.replace(temporary, path)
        _fsync(path.parent)
    finally:
        temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_directory(path, replace=True):
    """Yields a hidden temporary folder beside `path` and renames it to `path` when the block ends.

    Readers see the old `path` (or none) or the complete new one. Replacing an
    existing folder moves it aside first (a folder cannot be renamed over a
    non-empty one), so a kill between the two renames leaves `path` absent,
    never partial. With `replace=False` an existing `path` raises
    FileExistsError and is left as it is. If the block raises, the temporary
    folder is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_path(path)
    temporary.mkdir()  # mode 0777 & ~umask, unlike tempfile.mkdtemp's 0700
    try:
        yield temporary
        for file in sorted(temporary.rglob("*")):
            _fsync(file)
        _publish_directory(temporary, path, replace)
        _fsync(path.parent)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def _publish_directory(temporary, path, replace):
    if not os.path.lexists(path):
        os.rename(temporary, path)  # fails if another writer published `path` meanwhile
        return
    if not replace:
        raise FileExistsError(f"{path} exists and replace=False; it was left as it is.")
    old = path.parent / f"{REPLACED_PREFIX}{path.name}-{uuid.uuid4().hex}"
    os.rename(path, old)
    try:
        os.rename(temporary, path)
    except BaseException:
        os.rename(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)


def is_out_of_space(error):
    """Whether `error` is a file system out of space (or quota), whichever library raised it: an
    OSError with ENOSPC/EDQUOT, or h5py's and TensorFlow's errors that only say so in their text."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return any(text in str(error) for text in ("No space left on device", "Disk quota exceeded"))


def why_not_writable(path, folder=False):
    """Why `atomic_file(path)` would fail, or (folder=True) a new entry in the folder `path`
    (a version in an export base, `atomic_directory`), as a phrase; None if it would not.

    For checking a destination before slow work: `path` is a folder where a file is
    wanted (or a file where a folder is), a parent on the way is a file, or the
    nearest existing folder refuses a new entry (read-only, no permission), found
    by creating and removing a hidden temporary file there as the writers do.
    """
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        return f"{path} is a file, not a folder"
    if not folder and path.is_dir():
        return f"{path} is a folder"
    existing = path if folder else path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    probe = existing / f"{TEMPORARY_PREFIX}{uuid.uuid4().hex}-probe"
    try:
        probe.touch(exist_ok=False)
    except OSError as error:
        return f"{existing} does not accept new files ({error.strerror})"
    probe.unlink()
    return None


def save_model(model, path):
    """`model.save(path)` through `atomic_file`: `path` is a whole `.keras` file or absent."""
    with atomic_file(path) as temporary:
        model.save(temporary)
    return Path(path)


def _fsync(path):
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
