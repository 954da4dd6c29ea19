"""training/run_dir.py: one run owns its log directory; a rerun resumes, reports, or refuses."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import REPO
from training.errors import UsageError
from training.run_dir import LOCK_FILE, RECORD_FILE, claim_run_dir

SETTINGS = {"batch_size": 8, "num_embeddings": 512, "epochs": 2, "seed": 0}
RESULTS = ("model.keras", "backup")
LOGS = ("train",)


def _claim(logdir, settings=SETTINGS, overwrite=False, may_extend=("epochs",), adoptable=()):
    return claim_run_dir(logdir, settings, RESULTS, LOGS, overwrite, may_extend, adoptable)


def _finished_run(logdir, settings=SETTINGS):
    with _claim(logdir, settings) as run:
        (logdir / "train").mkdir()
        (logdir / "model.keras").write_text("trained")
        run.mark_finished()


def _killed_run(logdir, settings=SETTINGS):
    """What a run killed after its first backup leaves."""
    with _claim(logdir, settings):
        (logdir / "backup" / "step-000000002").mkdir(parents=True)
        (logdir / "backup" / ".tmp-step-000000004-x").mkdir()  # killed while writing the next one


def _refusal(logdir, settings=SETTINGS, **kwargs):
    """The message of the UsageError that claiming `logdir` raises."""
    with pytest.raises(UsageError) as error:
        with _claim(logdir, settings, **kwargs):
            pytest.fail("the claim must be refused")
    return str(error.value)


def _listing(logdir):
    return sorted(str(path.relative_to(logdir)) for path in logdir.rglob("*") if path.name != LOCK_FILE)


def test_a_new_run_records_its_settings_and_the_same_command_finds_it_finished(tmp_path):
    logdir = tmp_path / "run"
    with _claim(logdir) as run:
        assert not run.finished
        assert json.loads((logdir / RECORD_FILE).read_text()) == {"settings": SETTINGS, "finished": False}
        (logdir / "model.keras").write_text("trained")
        run.mark_finished()
    with _claim(logdir) as run:
        assert run.finished
    assert (logdir / "model.keras").read_text() == "trained"


def test_another_command_in_a_finished_run_is_refused_and_nothing_changes(tmp_path):
    logdir = tmp_path / "run"
    _finished_run(logdir)
    before = _listing(logdir)
    for changed in ({**SETTINGS, "epochs": 0}, {**SETTINGS, "epochs": 3}, {**SETTINGS, "seed": 1}):
        name = next(key for key in changed if changed[key] != SETTINGS[key])
        assert _refusal(logdir, changed) == (
            f"--logdir={logdir} holds a finished run with {name}={SETTINGS[name]!r}; this command has "
            f"{name}={changed[name]!r}. Nothing was changed. Run the same command to see its result, pass another "
            "--logdir for a new run, or --overwrite to delete that run and start this one."
        )
    assert _listing(logdir) == before and (logdir / "model.keras").read_text() == "trained"


def test_resuming_with_a_setting_that_shapes_the_weights_is_refused_and_the_backups_kept(tmp_path):
    logdir = tmp_path / "run"
    _killed_run(logdir)
    assert _refusal(logdir, {**SETTINGS, "num_embeddings": 16, "batch_size": 4}).startswith(
        f"--logdir={logdir} holds a run that has not finished (its backups resume it) with batch_size=8, "
        "num_embeddings=512; this command has batch_size=4, num_embeddings=16. Nothing was changed. Run the same "
        "command to resume it,"
    )
    assert (logdir / "backup" / "step-000000002").is_dir()


def test_an_unfinished_run_may_be_extended_and_its_record_follows(tmp_path):
    logdir = tmp_path / "run"
    _killed_run(logdir)
    with _claim(logdir, {**SETTINGS, "epochs": 5}) as run:
        assert not run.finished
        assert json.loads((logdir / RECORD_FILE).read_text())["settings"]["epochs"] == 5
        # The half-written backup of the killed run is gone; its complete one is kept.
        assert _listing(logdir / "backup") == ["step-000000002"]
    with pytest.raises(UsageError, match="has not finished"):
        with _claim(logdir, {**SETTINGS, "epochs": 6}, may_extend=()):  # e.g. a cosine-decayed run
            pass


def test_a_run_that_left_nothing_trained_is_replaced_by_the_next_command(tmp_path):
    # E.g. a run that stopped on a usage error before its first backup: nothing to protect.
    logdir = tmp_path / "run"
    with _claim(logdir):
        (logdir / "train").mkdir()
    with _claim(logdir, {**SETTINGS, "batch_size": 4}) as run:
        assert not run.finished
    assert json.loads((logdir / RECORD_FILE).read_text())["settings"]["batch_size"] == 4


def test_results_without_a_record_are_refused_unless_adoptable_or_overwritten(tmp_path):
    logdir = tmp_path / "run"
    logdir.mkdir()
    (logdir / "model.keras").write_text("someone's model")
    assert _refusal(logdir) == (
        f"--logdir={logdir} holds model.keras of a run that recorded no settings (an earlier vq_keras, or copied "
        "in), so this command cannot tell whether it is the same run. Nothing was changed: pass another --logdir, "
        "or --overwrite to delete them and start this run."
    )
    with _claim(logdir, adoptable=("model.keras",)) as run:
        assert not run.finished and (logdir / "model.keras").exists()


def test_overwrite_deletes_the_previous_runs_results_and_logs_only(tmp_path):
    logdir = tmp_path / "run"
    _finished_run(logdir)
    (logdir / "notes.txt").write_text("the user's")
    with _claim(logdir, {**SETTINGS, "seed": 1}, overwrite=True) as run:
        assert not run.finished
        assert _listing(logdir) == ["notes.txt", RECORD_FILE]


def test_a_second_run_in_the_same_logdir_stops_naming_the_first(tmp_path):
    logdir = tmp_path / "run"
    with _claim(logdir):
        with pytest.raises(UsageError) as error:
            with _claim(logdir):
                pytest.fail("two runs in one log directory")
        message = str(error.value)
        assert message.startswith(f"--logdir={logdir} is in use by another run (pid {os.getpid()} on ")
        assert message.endswith(
            "Two runs in one log directory would mix their logs and delete each other's backups: wait for that "
            "run to end, or pass another --logdir."
        )
    with _claim(logdir) as run:  # released when the first run ends
        assert run.finished is False


@pytest.mark.large
def test_a_killed_run_leaves_no_stuck_lock(tmp_path):
    logdir = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", (
            "import sys, time\nfrom training.run_dir import claim_run_dir\n"
            f"with claim_run_dir({str(logdir)!r}, {{}}, (), ()):\n    print('locked', flush=True)\n    time.sleep(600)\n"
        )],
        stdout=subprocess.PIPE, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(UsageError, match=rf"is in use by another run \(pid {holder.pid} on "):
            with _claim(logdir):
                pass
    finally:
        holder.kill()  # SIGKILL: no clean-up runs
        holder.wait()
    with _claim(logdir) as run:
        assert not run.finished


def test_a_logdir_that_is_a_file_or_not_writable_is_refused(tmp_path, read_only_folder):
    (tmp_path / "file").write_text("")
    for logdir in (tmp_path / "file", tmp_path / "file" / "run"):
        assert _refusal(logdir) == (
            f"--logdir={logdir}: {tmp_path / 'file'} is a file, not a folder. Pass a folder you can write for the "
            "run's logs and model."
        )
    with pytest.raises(UsageError, match=rf"^--logdir={read_only_folder}/run: {read_only_folder} does not accept new "
                                         r"files \(.*\)\. Pass a folder you can write"):
        with _claim(read_only_folder / "run"):
            pass


def _as_nobody(code, pythonpath):
    return subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-c", code],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": pythonpath}, cwd="/",
    )


@pytest.fixture
def open_folder():
    """A folder that every user can reach (pytest's tmp_path is private to root), removed afterwards."""
    folder = Path(tempfile.mkdtemp())
    os.chmod(folder, 0o755)
    yield folder
    shutil.rmtree(folder)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv to run as nobody")
@pytest.mark.large
def test_a_read_only_logdir_is_refused_as_another_user(open_folder):
    # Root writes anywhere, so a user without write permission is played by `nobody`.
    for package in ("training", "vq_keras"):
        shutil.copytree(REPO / package, open_folder / "src" / package, ignore=shutil.ignore_patterns("__pycache__"))
    logdir = open_folder / "run"
    code = (
        "from training.errors import UsageError\nfrom training.run_dir import claim_run_dir\n"
        f"try:\n    claim_run_dir({str(logdir)!r}, {{}}, (), ()).__enter__()\n"
        "except UsageError as error:\n    print(error)\n"
    )
    result = _as_nobody(code, str(open_folder / "src"))
    assert result.stdout.strip() == (
        f"--logdir={logdir}: {open_folder} does not accept new files (Permission denied). Pass a folder you can "
        "write for the run's logs and model."
    ), result.stderr[-2000:]
    logdir.mkdir(mode=0o755)
    result = _as_nobody(code, str(open_folder / "src"))
    assert result.stdout.strip() == (
        f"--logdir={logdir}: {logdir} does not accept new files (Permission denied). Pass a folder you can write "
        "for the run's logs and model."
    ), result.stderr[-2000:]
