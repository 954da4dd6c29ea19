import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.training.conftest import FIT_RUN_ARGS

NATIVE_LOG_LINE = re.compile(r"^[IWEF]\d{4} |absl::InitializeLog", re.MULTILINE)


def run_python(code):
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_the_filter_drops_tensorflows_harmless_lines_and_keeps_real_errors():
    lines = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1796277719.108882    3593 port.cc:153] oneDNN custom operations are on.",
        "W0000 00:00:1796277719.109443    3593 some.cc:31] a warning TF_CPP_MIN_LOG_LEVEL=2 hides",
        "E0000 00:00:1796277728.875127    3593 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error",
        "E0000 00:00:1796277739.544819    3593 meta_optimizer.cc:967] remapper failed: INVALID_ARGUMENT: Mutation",
        "E0000 00:00:1796278362.164462    6032 node_def_util.cc:682] NodeDef mentions attribute "
        "use_unbounded_threadpool which is not in the op definition: Op<name=MapDataset; ...",
        "E0000 00:00:1796278761.415040    6514 util.cc:131] oneDNN supports DT_INT32 only on platforms with "
        "AVX-512. Falling back to the default Eigen-based implementation if present.",
        "Corrupt JPEG data: 2 extraneous bytes before marker 0xd9",
        "E0000 00:00:1796277739.544819    3593 kernel.cc:1] OOM when allocating tensor: a real error",
        "F0000 00:00:1796277739.544819    3593 check.cc:1] Check failed: a real crash",
        "a line of a child process",
    ]
    code = (
        "import os, sys\n"
        "from training.console import quiet_native_logs\n"
        "quiet_native_logs()\n"
        f"os.write(2, {''.join(line + chr(10) for line in lines).encode()!r})\n"
        "print('python stderr', file=sys.stderr)\n"
        "raise RuntimeError('a traceback')\n"
    )
    result = run_python(code)
    assert result.returncode == 1
    kept = result.stderr.splitlines()
    assert [line for line in kept if line in lines] == lines[8:]
    assert "python stderr" in kept and "RuntimeError: a traceback" in kept


@pytest.mark.large
def test_the_readme_main_command_prints_no_native_log_lines(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = str(REPO)
    result = subprocess.run(
        [sys.executable, "-m", "training.fit", *FIT_RUN_ARGS, f"--logdir={tmp_path / 'run'}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert not NATIVE_LOG_LINE.search(result.stderr), result.stderr[:3000]
    assert "Saved model:" in result.stdout


@pytest.mark.large
def test_a_usage_error_still_reaches_the_terminal():
    result = run_python(
        "import runpy, sys\n"
        "sys.argv = ['training.fit', '--batch_size=0']\n"
        "runpy.run_module('training.fit', run_name='__main__')\n"
    )
    assert result.returncode != 0
    assert "batch_size" in result.stderr and not NATIVE_LOG_LINE.search(result.stderr)
