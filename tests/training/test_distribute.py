import json
import os
import socket
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import REPO
from tests.training.conftest import run_module
from training.distribute import (
    check_global_batch,
    check_jit_compile,
    make_strategy,
    precision_policy,
    read_tf_config,
    worker_outputs,
)
from training.errors import UsageError

# One worker of a two-worker cluster: the CLI's own set-up (prepare_run) and
# model, a few steps on the bundled real sample, then its codebook to a file.
WORKER_SCRIPT = textwrap.dedent(
    """
    import sys
    from types import SimpleNamespace
    import keras, numpy as np
    from training.distribute import prepare_run
    from training.data import load_image_data
    from training.fit import build_model

    out, logdir = sys.argv[1], sys.argv[2]
    flags = SimpleNamespace(strategy="multi_worker", mixed_precision="none", batch_size=8, jit_compile=False, logdir=logdir)
    strategy, outputs = prepare_run(flags)
    keras.utils.set_random_seed(0)
    data = load_image_data("cifar10_sample", batch_size=8, seed=0)
    with strategy.scope():
        model = build_model("vqvae", "cifar10", None, data.data_variance, data.image_shape, "cifar10_sample")
        model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False)
    start = np.array(model.quantizer.codebook)
    logs = model.fit(data.train, epochs=1, steps_per_epoch=3, verbose=0).history
    quantizer = model.quantizer
    np.savez(out, codebook=np.array(quantizer.codebook), cluster_size=np.array(quantizer.ema_cluster_size),
             kernel=np.array(model.decoder.stages[0].kernel), start=start, loss=logs["loss"],
             replicas=strategy.num_replicas_in_sync, is_chief=outputs.is_chief, logdir=str(outputs.logdir))
    """
)


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.large
def test_two_workers_end_with_identical_codebooks(tmp_path):
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    processes = []
    try:
        for index in range(2):
            tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
            env = {**os.environ, "TF_CONFIG": json.dumps(tf_config), "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-c", WORKER_SCRIPT, str(tmp_path / f"worker{index}.npz"), str(tmp_path / "run")],
                    cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                )
            )
        for process in processes:
            _, stderr = process.communicate(timeout=240)
            assert process.returncode == 0, stderr[-3000:]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    chief, other = (np.load(tmp_path / f"worker{index}.npz") for index in range(2))
    assert int(chief["replicas"]) == int(other["replicas"]) == 2
    assert bool(chief["is_chief"]) and not bool(other["is_chief"])
    assert str(chief["logdir"]) == str(tmp_path / "run") and str(other["logdir"]) != str(tmp_path / "run")
    assert np.abs(chief["codebook"] - chief["start"]).max() > 1e-3  # the EMA moved the codebook
    for name in ("codebook", "cluster_size", "kernel", "loss"):
        np.testing.assert_array_equal(chief[name], other[name], err_msg=name)


def test_only_the_chief_writes_to_the_log_directory(tmp_path, monkeypatch):
    cluster = {"chief": ["127.0.0.1:1"], "worker": ["127.0.0.1:2"]}
    outputs = {}
    for task in ({"type": "chief", "index": 0}, {"type": "worker", "index": 0}):
        # The resolver reads TF_CONFIG whenever it is asked.
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
        outputs[task["type"]] = worker_outputs(tmp_path, SimpleNamespace(cluster_resolver=resolver))
    chief, worker = outputs["chief"], outputs["worker"]
    assert (chief.logdir, chief.backup, chief.is_chief) == (tmp_path, tmp_path / "backup", True)
    assert not worker.is_chief and worker.logdir.is_dir() and tmp_path not in worker.logdir.parents
    assert worker.backup == tmp_path / "backup-worker0"  # its own, kept across restarts
    worker.clean_up()
    assert not worker.logdir.exists()
    single = worker_outputs(tmp_path, tf.distribute.get_strategy())
    assert single.is_chief and single.logdir == tmp_path


def test_tf_config_is_checked(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(UsageError, match=r"reads the cluster from the TF_CONFIG environment variable, which is not set"):
        make_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", "{cluster")
    with pytest.raises(UsageError, match=r"TF_CONFIG is not valid JSON .* Received: '\{cluster'"):
        read_tf_config()
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}}))
    with pytest.raises(UsageError, match=r'TF_CONFIG needs a "cluster" with a non-empty "worker" list'):
        read_tf_config()
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}))
    with pytest.raises(UsageError, match=r"TF_CONFIG's task \{'type': 'worker', 'index': 1\} names no member"):
        read_tf_config()


def test_flag_values_are_checked():
    with pytest.raises(UsageError, match=r"Unknown --strategy='gpu'. Known strategies: default, mirrored, multi_worker, tpu."):
        make_strategy("gpu")
    with pytest.raises(UsageError, match=r"Unknown --mixed_precision='fp16'. Known values: none, mixed_float16, mixed_bfloat16."):
        precision_policy("fp16")
    assert precision_policy("none") == "float32"
    two_replicas = SimpleNamespace(num_replicas_in_sync=2, extended=SimpleNamespace(worker_devices=["/cpu:0", "/cpu:1"]))
    with pytest.raises(UsageError, match=r"--batch_size=7 is the global batch and must divide evenly among the 2 replicas"):
        check_global_batch(7, two_replicas)
    check_global_batch(8, two_replicas)
    with pytest.raises(UsageError, match=r"--jit_compile cannot compile a training step that spans 2 devices"):
        check_jit_compile(True, two_replicas)
    check_jit_compile(False, two_replicas)


def test_jit_compile_with_workers_needs_accelerators():
    def two_workers(device):
        return SimpleNamespace(num_replicas_in_sync=2, extended=SimpleNamespace(worker_devices=[f"/job:worker/task:0/device:{device}:0"]))

    with pytest.raises(UsageError, match=r"that all-reduces across CPU workers \(XLA has no collectives on CPUs\). Pass --jit_compile=false"):
        check_jit_compile(True, two_workers("CPU"))
    check_jit_compile(True, two_workers("GPU"))
    check_jit_compile(True, tf.distribute.get_strategy())


def test_tpu_without_a_tpu_is_a_clear_error():
    with pytest.raises(UsageError, match=r"--strategy=tpu found no TPU \(.+\)\. Run on a TPU VM or set TPU_NAME"):
        make_strategy("tpu")


@pytest.mark.parametrize(
    "flag, message",
    [
        ("--strategy=horovod", "error: Unknown --strategy='horovod'. Known strategies: default, mirrored, multi_worker, tpu."),
        ("--mixed_precision=float16", "error: Unknown --mixed_precision='float16'. Known values: none, mixed_float16, mixed_bfloat16."),
    ],
)
@pytest.mark.large
def test_cli_rejects_bad_values(flag, message):
    result = run_module("training.fit", flag)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert message in result.stderr
