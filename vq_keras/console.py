"""TensorFlow's native start-up chatter left out of standard error, its real errors kept.

TF_CPP_MIN_LOG_LEVEL=2 no longer silences everything it did: TensorFlow's C++ code writes some
lines to the process's standard error before its logging is set up ("All log messages before
absl::InitializeLog() ...", oneDNN and CUDA-stub notes at import), and ERROR lines that are not
failures on a CPU-only machine: the failed `cuInit` (there is no GPU); grappler's "remapper
failed" (that optimizer pass is skipped, the graph runs unoptimized by it); a dataset attribute
this build does not know, when a cached data set is read ("Unknown attributes will be ignored",
it says); oneDNN's note that an integer op falls back to Eigen on this CPU; libjpeg's "Corrupt
JPEG data" warnings about a JPEG it decoded all the same (a file it cannot decode is named by the
folder reader). The level cannot drop those without dropping every real error, so
`filter_native_logs` puts a filter on file descriptor 2 that leaves out exactly these lines and
passes every other line through; Python's own `sys.stderr` (tracebacks, warnings, absl logging)
goes around it, straight to the terminal.

Nothing here runs on its own: the tools call it first thing, a script calls `vq_keras.quiet()`
(lines from then on) or sets VQ_KERAS_QUIET=1 before `import vq_keras` (the import's lines too).
This module imports nothing of TensorFlow, so that it can be set up before TensorFlow is.
"""

import atexit
import os
import re
import sys
import threading

# Lines TensorFlow's native code writes that are not problems of the run.
HARMLESS = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]\d{4} "  # glog-style INFO and WARNING lines, which TF_CPP_MIN_LOG_LEVEL=2 means to hide
    r"|Corrupt JPEG data: "  # libjpeg recovered and decoded the image
    r"|E\d{4} .*(failed call to cuInit|remapper failed: "
    r"|NodeDef mentions attribute use_unbounded_threadpool which is not in the op definition"
    r"|oneDNN supports DT_\w+ only on platforms with AVX-512. Falling back))"
)
_installed = []  # the one filter of this process, once installed


def filter_native_logs():
    """Filters TensorFlow's harmless native lines out of standard error (see the module docstring)
    from now on, and sets TF_CPP_MIN_LOG_LEVEL=2 unless set. Calling it again does nothing."""
    if _installed:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    terminal = os.dup(2)
    sys.stderr.flush()
    sys.stderr = os.fdopen(os.dup(terminal), "w", buffering=1, encoding=sys.stderr.encoding, errors="backslashreplace")
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    forwarder = threading.Thread(target=_forward, args=(read_end, terminal), daemon=True)
    forwarder.start()
    atexit.register(_drain, forwarder, terminal)
    _installed.append(forwarder)


def _forward(read_end, terminal):
    with os.fdopen(read_end, "rb") as lines:
        for line in lines:
            if not HARMLESS.match(line.decode("utf-8", "replace")):
                os.write(terminal, line)


def _drain(forwarder, terminal):
    """At exit: closes the filter's input (descriptor 2 back to the terminal) and waits for the
    lines still in it."""
    os.dup2(terminal, 2)
    forwarder.join(timeout=5)
