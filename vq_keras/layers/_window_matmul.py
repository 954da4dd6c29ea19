"""A convolution's output at one position, as one matrix product."""

from keras import ops


def conv_at_one_position(conv, window):
    """`conv` (a built keras Conv2D with "valid" padding, strides 1, no dilation)
    applied to exactly one kernel window: (batch, kh, kw, c_in) or, for a 1x1
    kernel, (batch, c_in) -> (batch, filters).

    The same sum as `conv(window)[:, 0, 0]` (up to float rounding): the window
    flattened in (kh, kw, c_in) order times the kernel reshaped to
    (kh * kw * c_in, filters), plus the bias, then the activation. Incremental
    sampling computes one position per step, where a Conv2D call on a 1x1
    output costs several times its arithmetic in per-call overhead.
    """
    batch = ops.shape(window)[0]
    kernel = ops.cast(conv.kernel, conv.compute_dtype)
    outputs = ops.matmul(ops.reshape(window, (batch, -1)), ops.reshape(kernel, (-1, conv.filters)))
    if conv.use_bias:
        outputs = outputs + ops.cast(conv.bias, conv.compute_dtype)
    return conv.activation(outputs) if conv.activation is not None else outputs
