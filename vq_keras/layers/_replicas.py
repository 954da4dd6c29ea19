"""Collective ops over tf.distribute replicas; identities outside a multi-replica context."""

import keras


def _replica_context():
    """The current replica context if there are several replicas, else None."""
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None
    return context


def sum_over_replicas(value):
    """Sums `value` across tf.distribute replicas so each sees the global batch."""
    context = _replica_context()
    if context is None:
        return value
    import tensorflow as tf

    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def gather_over_replicas(value):
    """Concatenates every replica's `value` on axis 0, in replica order, on every replica."""
    context = _replica_context()
    return value if context is None else context.all_gather(value, axis=0)
