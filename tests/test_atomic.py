import os
import stat

import pytest

from vq_keras.atomic import atomic_directory, atomic_file, save_model, why_not_writable


def _modes(root):
    """Permission bits of `root` and of every folder and file below it."""
    paths = [root, *root.rglob("*")]
    return {path.relative_to(root).as_posix(): stat.S_IMODE(path.stat().st_mode) for path in paths}


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def test_atomic_file_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "model.keras"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_file(target) as temporary:
            assert temporary.parent == tmp_path and temporary.suffix == ".keras"
            temporary.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["model.keras"]
    with atomic_file(target) as temporary:
        temporary.write_text("new")
        assert target.read_text() == "old"  # untouched until the block ends
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["model.keras"]



def test_atomic_directory_replaces_whole_or_refuses(tmp_path):
    target = tmp_path / "1"
    with atomic_directory(target) as folder:
        (folder / "sub").mkdir()
        (folder / "sub" / "a").write_text("first")
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_directory(target) as folder:
            (folder / "sub").mkdir()
            (folder / "sub" / "a").write_text("half")
            raise RuntimeError("killed")
    assert (target / "sub" / "a").read_text() == "first" and os.listdir(tmp_path) == ["1"]
    with pytest.raises(FileExistsError, match="replace=False"):
        with atomic_directory(target, replace=False) as folder:
            (folder / "a").write_text("second")
    assert (target / "sub" / "a").read_text() == "first" and os.listdir(tmp_path) == ["1"]
    with atomic_directory(target) as folder:
        (folder / "b").write_text("second")
    assert os.listdir(target) == ["b"] and os.listdir(tmp_path) == ["1"]


def test_published_files_get_the_umask_permissions(tmp_path, umask_027):
    # tempfile.mkdtemp would give the folder 0700: unreadable for a server of another user in the group.
    with atomic_directory(tmp_path / "version") as folder:
        (folder / "variables").mkdir()
        (folder / "variables" / "data").write_text("x")
        (folder / "saved_model.pb").write_text("x")
    with atomic_file(tmp_path / "model.keras") as temporary:
        temporary.write_text("x")
    assert _modes(tmp_path / "version") == {".": 0o750, "variables": 0o750, "variables/data": 0o640, "saved_model.pb": 0o640}
    assert _modes(tmp_path / "model.keras") == {".": 0o640}


def test_save_model_writes_a_loadable_file_or_none(tmp_path):
    import keras
    import numpy as np

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    path = save_model(model, tmp_path / "model.keras")
    reloaded = keras.saving.load_model(path)
    x = np.ones((1, 3), np.float32)
    np.testing.assert_array_equal(reloaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert os.listdir(tmp_path) == ["model.keras"]


SAVE_IN_A_LOOP = r'''
import sys

import keras

from vq_keras.atomic import save_model

model = keras.Sequential([keras.Input((1024,)), keras.layers.Dense(4096), keras.layers.Dense(1024)])  # ~32 MB
for round in range(1000):
    save_model(model, sys.argv[1])
    print("saved", round, flush=True)
'''


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.large
def test_a_kill_during_save_model_leaves_the_old_file_or_none(tmp_path, seed):
    import random
    import signal
    import subprocess
    import sys
    import time

    import keras

    from tests.conftest import REPO

    path = tmp_path / "model.keras"
    process = subprocess.Popen(
        [sys.executable, "-c", SAVE_IN_A_LOOP, str(path)], cwd=REPO, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    try:
        if seed:  # seed 0 kills during the first save, when there is no old file
            assert process.stdout.readline().startswith("saved 0")
        deadline = time.monotonic() + 120
        while not any(p.name.startswith(".tmp-") for p in tmp_path.iterdir()):
            assert time.monotonic() < deadline, "save_model wrote no temporary file beside the target"
            time.sleep(0.001)
        time.sleep(random.Random(seed).uniform(0, 0.3))
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    names = [p.name for p in tmp_path.iterdir()]
    assert all(name.startswith(".tmp-") for name in names if name != "model.keras")
    if seed:
        assert len(keras.saving.load_model(path).weights) == 4
    else:
        assert "model.keras" not in names or len(keras.saving.load_model(path).weights) == 4


def test_why_not_writable_names_what_stops_the_writer(tmp_path, read_only_folder):
    (tmp_path / "file").write_text("")
    (tmp_path / "folder").mkdir()
    assert why_not_writable(tmp_path / "new" / "deeper" / "grid.png") is None
    assert why_not_writable(tmp_path / "file") is None  # replaced atomically
    assert why_not_writable(tmp_path / "folder", folder=True) is None
    assert why_not_writable(tmp_path / "folder") == f"{tmp_path / 'folder'} is a folder"
    assert why_not_writable(tmp_path / "file", folder=True) == f"{tmp_path / 'file'} is a file, not a folder"
    for folder in (False, True):
        assert why_not_writable(tmp_path / "file" / "x" / "y", folder) == f"{tmp_path / 'file'} is a file, not a folder"
        problem = why_not_writable(read_only_folder / "new" / "grid.png", folder)
        assert problem.startswith(f"{read_only_folder} does not accept new files (")
        assert problem.endswith(("(Permission denied)", "(Operation not permitted)", "(Read-only file system)"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder", "read_only"]  # no probe left


def test_only_the_temporaries_of_dead_writers_on_this_host_are_removed(tmp_path):
    import socket
    import subprocess
    import sys

    from vq_keras.atomic import remove_abandoned_temporaries, temporary_path

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    mine = temporary_path(tmp_path / "1")
    mine.mkdir()
    abandoned = tmp_path / f".tmp-{dead_pid}@{socket.gethostname()}-{'a' * 32}-2"
    abandoned.mkdir()
    (abandoned / "saved_model.pb").write_text("half")
    abandoned_file = tmp_path / f".tmp-{dead_pid}@{socket.gethostname()}-{'b' * 32}-model.keras"
    abandoned_file.write_text("half")
    elsewhere = tmp_path / f".tmp-{dead_pid}@another-host.example-{'c' * 32}-3"
    elsewhere.mkdir()
    unknown = tmp_path / ".tmp-9-abc"
    unknown.mkdir()
    remove_abandoned_temporaries(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, elsewhere.name, unknown.name])
    assert mine.name.startswith(f".tmp-{os.getpid()}@{socket.gethostname()}-") and mine.name.endswith("-1")


def test_a_symbolic_link_is_written_through_not_replaced(tmp_path):
    from vq_keras.atomic import atomic_file

    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "v1.json").write_text("old")
    (tmp_path / "latest.json").symlink_to(tmp_path / "results" / "v1.json")
    with atomic_file(tmp_path / "latest.json") as temporary:
        temporary.write_text("new")
    assert (tmp_path / "latest.json").is_symlink()
    assert (tmp_path / "results" / "v1.json").read_text() == "new"
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["v1.json"]
