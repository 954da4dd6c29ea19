"""One way to test under MirroredStrategy on a CPU-only machine: a fresh Python process whose CPU is
split into two logical devices (which must happen before TensorFlow touches a device, hence the
process), with the replicas checked against a single-device run by `assert_replicas_equal`."""

import os
import subprocess
import sys
import textwrap

from tests.conftest import REPO

TWO_CPUS = """
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from tests.mirrored import assert_replicas_equal
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
assert strategy.num_replicas_in_sync == 2
"""


def run_on_two_cpus(script, timeout=300):
    """Runs `script` (dedented) after TWO_CPUS, which defines np, tf, `strategy` over the two
    logical CPUs and `assert_replicas_equal`; returns its stdout, asserting it exited 0."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, "-c", TWO_CPUS + textwrap.dedent(script)], cwd=REPO, env=env, capture_output=True,
        text=True, timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def assert_replicas_equal(strategy, variable, expected, rtol=1e-5, atol=1e-5, name=None):
    """Every replica's copy of the mirrored `variable` equals `expected` (the single-device value);
    returns the largest difference."""
    import numpy as np

    replicas = [np.asarray(value) for value in strategy.experimental_local_results(variable.value)]
    assert len(replicas) == strategy.num_replicas_in_sync
    for value in replicas:
        np.testing.assert_allclose(value, np.asarray(expected), rtol=rtol, atol=atol, err_msg=name or variable.path)
    return max(float(np.abs(value - np.asarray(expected)).max()) for value in replicas)
