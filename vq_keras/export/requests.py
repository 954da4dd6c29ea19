"""Checks of a signature's request inside the graph: its rank read at run time and Assert ops
whose message names the signature and what it expected."""

import tensorflow as tf

RANK_SCOPE = "rank_of_request"  # the only ops that read a request before its rank is checked


def shape_of(request):
    """The int32 shape vector of a request as it arrives, whatever the signature says.

    A signature called as a function (`tf.saved_model.load`) is optimized by
    Grappler for its traced input spec, which folds Rank(request) (and Size of
    Shape(request)) to the signature's rank: a rank-3 request would pass the rank
    check and then fail in an unrelated op ("slice index 3 of dimension 0 out of
    bounds"). A round trip through SerializeTensor/ParseTensor (a few bytes)
    hides the static shape, so the rank is read from the request at run time.
    """
    shape = tf.raw_ops.Shape(input=request, out_type=tf.int32)
    return tf.raw_ops.ParseTensor(serialized=tf.raw_ops.SerializeTensor(tensor=shape), out_type=tf.int32)


def rank_of(request):
    with tf.name_scope(RANK_SCOPE):
        if request.shape.is_fully_defined():
            # Grappler folds the Shape of a fully known static shape (a scalar
            # signature input) too: the request itself goes through the round trip.
            request = tf.raw_ops.ParseTensor(
                serialized=tf.raw_ops.SerializeTensor(tensor=request), out_type=request.dtype
            )
        return tf.raw_ops.Size(input=shape_of(request), out_type=tf.int32)


def graph_assert(condition, message, *values):
    """An Assert op: fails the request with `message` and `values` when `condition` is False."""
    return tf.debugging.Assert(condition, [message, *values], summarize=16)
