"""What a train step needs to be correct under tf.distribute (one replica or many).

Each replica computes its loss as the mean over its share of the global batch;
the optimizer then sums the replicas' gradients. Dividing the loss by the
number of replicas makes that sum the gradient of the global-batch mean, as
Keras' own TensorFlow trainer does (`scale_loss_for_distribution`).

tf.distribute is TensorFlow's: on other Keras backends there is one replica and every
function here returns its value unchanged.
"""

import tensorflow as tf

from vq_keras._backend import IS_TENSORFLOW


def num_replicas():
    """Replicas in sync under the current tf.distribute strategy (1 without one)."""
    if not IS_TENSORFLOW:
        return 1
    return tf.distribute.get_strategy().num_replicas_in_sync


def _replica_context():
    """The tf.distribute replica context, or None (cross-replica, or not TensorFlow)."""
    return tf.distribute.get_replica_context() if IS_TENSORFLOW else None


def _all_reduce(reduce_op, value):
    context = _replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(reduce_op, value)


def sum_over_replicas(value):
    """`value` summed across the replicas, so each replica sees the global batch's sum."""
    return _all_reduce(tf.distribute.ReduceOp.SUM, value)


def mean_over_replicas(value):
    """`value` averaged across the replicas (the global-batch mean of per-replica means)."""
    return _all_reduce(tf.distribute.ReduceOp.MEAN, value)


def gather_over_replicas(value):
    """Every replica's `value` concatenated on axis 0, in replica order, on every replica."""
    context = _replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_gather(value, axis=0)


def share_of_replica(loss):
    """The global-batch mean `loss` as this replica's share: the loss a Keras `compute_loss`
    returns (the optimizer sums the replicas' gradients)."""
    return loss / float(num_replicas())


def own_losses(losses):
    """The `add_loss` tensors this replica created, from a layer's `losses`.

    MirroredStrategy traces every local replica's step in its own thread, but a
    layer keeps one list of added losses; a replica resumed after a collective
    (the EMA all-reduce inside the quantizer's call) then also sees the losses
    of the replicas before it. Each replica's ops sit on its own device.
    """
    if not IS_TENSORFLOW or not tf.distribute.has_strategy():
        return list(losses)
    context = tf.distribute.get_replica_context()
    devices = tf.distribute.get_strategy().extended.worker_devices
    if context is None or len(devices) < 2:
        return list(losses)
    replica = tf.get_static_value(context.replica_id_in_sync_group)
    device = tf.DeviceSpec.from_string(devices[replica % len(devices)])
    return [loss for loss in losses if tf.DeviceSpec.from_string(loss.device) == device]
