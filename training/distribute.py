"""`--strategy` and `--mixed_precision` of training.fit: tf.distribute strategies,
the global batch, the Keras dtype policy, and where each worker writes."""

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf

from training.errors import UsageError

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
PRECISIONS = {"none": "float32", "mixed_float16": "mixed_float16", "mixed_bfloat16": "mixed_bfloat16"}
TF_CONFIG_EXAMPLE = (
    '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}'
)


def make_strategy(name):
    """The tf.distribute strategy `name`; create it before any other TensorFlow
    work (MultiWorkerMirroredStrategy must start before the runtime does)."""
    if name not in STRATEGIES:
        raise UsageError(f"Unknown --strategy={name!r}. Known strategies: {', '.join(STRATEGIES)}.")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(local_devices())
    if name == "multi_worker":
        read_tf_config()
        return ScalarSafeMultiWorkerStrategy()
    if name == "tpu":
        return tpu_strategy()
    return tf.distribute.get_strategy()


class ScalarSafeMultiWorkerStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """MultiWorkerMirroredStrategy whose `reduce` accepts scalars with axis=0.

    Keras 3's fit reduces every per-step log with `reduce("MEAN", value, axis=0)`
    under a multi-worker strategy, which fails for scalar logs ("Invalid
    reduction dimension 0 for input with 0 dimensions", tensorflow#72388).
    A scalar has no batch axis: it is reduced across replicas only.
    """

    def reduce(self, reduce_op, value, axis):
        parts = value.values if isinstance(value, tf.distribute.DistributedValues) else (value,)
        if axis is not None and all(getattr(part, "shape", None) is not None and part.shape.rank == 0 for part in parts):
            axis = None
        return super().reduce(reduce_op, value, axis)


def local_devices():
    """Every local GPU, or, without GPUs, every (logical) CPU device."""
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return [device.name for device in devices]


def read_tf_config():
    """The TF_CONFIG cluster description, checked: a worker list and this task's place in it."""
    text = os.environ.get("TF_CONFIG")
    if not text:
        raise UsageError(
            "--strategy=multi_worker reads the cluster from the TF_CONFIG environment variable, "
            f"which is not set. Set it on every worker, e.g. TF_CONFIG='{TF_CONFIG_EXAMPLE}' "
            "(index 0 on the first worker, 1 on the second, ...)."
        )
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise UsageError(f"TF_CONFIG is not valid JSON ({error}). Received: {text!r}. Expected e.g. {TF_CONFIG_EXAMPLE}") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    workers = cluster.get("worker") if isinstance(cluster, dict) else None
    if not (isinstance(workers, list) and workers and isinstance(task, dict)):
        raise UsageError(
            "TF_CONFIG needs a \"cluster\" with a non-empty \"worker\" list of host:port addresses and "
            f"a \"task\" with this process's \"type\" and \"index\". Received: {text!r}. Expected e.g. {TF_CONFIG_EXAMPLE}"
        )
    members = cluster.get(task.get("type"))
    index = task.get("index")
    if not (isinstance(members, list) and isinstance(index, int) and 0 <= index < len(members)):
        raise UsageError(
            f"TF_CONFIG's task {task!r} names no member of its cluster {cluster!r}: \"type\" must be a "
            "key of \"cluster\" and \"index\" a position in its list."
        )
    return config


def tpu_strategy():
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as error:
        raise UsageError(
            f"--strategy=tpu found no TPU ({error}). Run on a TPU VM or set TPU_NAME, or pick another "
            f"--strategy ({', '.join(s for s in STRATEGIES if s != 'tpu')})."
        ) from None
    return tf.distribute.TPUStrategy(resolver)


def precision_policy(name):
    """The Keras dtype policy for `--mixed_precision=name`."""
    if name not in PRECISIONS:
        raise UsageError(f"Unknown --mixed_precision={name!r}. Known values: {', '.join(PRECISIONS)}.")
    return PRECISIONS[name]


def check_global_batch(batch_size, strategy):
    """--batch_size is the global batch: every replica gets an equal share."""
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise UsageError(
            f"--batch_size={batch_size} is the global batch and must divide evenly among the "
            f"{replicas} replicas of the strategy. Use a multiple of {replicas}, e.g. "
            f"--batch_size={max(1, batch_size // replicas) * replicas}."
        )


def check_jit_compile(jit_compile, strategy):
    """XLA compiles the whole step for one device; it cannot reach other local
    devices' variables, nor (on CPUs) run the all-reduce between workers."""
    if not jit_compile or strategy.num_replicas_in_sync == 1 or isinstance(strategy, tf.distribute.TPUStrategy):
        return
    devices = strategy.extended.worker_devices
    if len(devices) > 1:
        reason = f"spans {len(devices)} devices of one process (XLA cannot reach the other devices' variables)"
    elif tf.DeviceSpec.from_string(devices[0]).device_type == "CPU":
        reason = "all-reduces across CPU workers (XLA has no collectives on CPUs)"
    else:
        return
    raise UsageError(
        f"--jit_compile cannot compile a training step that {reason}. Pass --jit_compile=false with this --strategy."
    )


@dataclass
class WorkerOutputs:
    """Where this worker writes: the chief its log directory, others a temporary one."""

    logdir: Path  # TensorBoard logs, VQMonitor images and model.keras
    backup: Path  # BackupAndRestore state, kept until the run ends on every worker
    is_chief: bool

    def clean_up(self):
        """Removes a non-chief worker's temporary log directory."""
        if not self.is_chief:
            shutil.rmtree(self.logdir, ignore_errors=True)


def worker_outputs(logdir, strategy):
    """The chief (or the only worker) writes to `logdir`; every other worker
    writes its logs and model to a temporary directory (as Keras' multi-worker
    guide recommends), and backs up to its own `<logdir>/backup-worker<i>`,
    so that it resumes from its own state."""
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type, task_id = (resolver.task_type, resolver.task_id) if resolver else (None, None)
    has_chief = bool(resolver) and "chief" in resolver.cluster_spec().as_dict()
    is_chief = task_type in (None, "chief") or (task_type == "worker" and task_id == 0 and not has_chief)
    if is_chief:
        return WorkerOutputs(logdir, logdir / "backup", True)
    temporary = Path(tempfile.mkdtemp(prefix=f"vq_keras-{task_type}{task_id}-"))
    return WorkerOutputs(temporary, logdir / f"backup-{task_type}{task_id}", False)


def prepare_run(argv_flags):
    """Checks and applies --strategy, --mixed_precision, --batch_size and
    --jit_compile; returns the strategy and this worker's `WorkerOutputs`."""
    policy = precision_policy(argv_flags.mixed_precision)
    strategy = make_strategy(argv_flags.strategy)
    # Global, before any model is built; under mixed_float16 `compile` then
    # wraps the optimizer in a LossScaleOptimizer.
    keras.config.set_dtype_policy(policy)
    check_global_batch(argv_flags.batch_size, strategy)
    check_jit_compile(argv_flags.jit_compile, strategy)
    return strategy, worker_outputs(Path(argv_flags.logdir).absolute(), strategy)
