"""Build and run a list of layers in order, shapes only at build time."""


def build_in_sequence(layers, input_shape):
    """Builds each layer on the previous one's output shape; returns the last shape."""
    shape = tuple(input_shape)
    for layer in layers:
        if not layer.built:
            layer.build(shape)
        shape = tuple(layer.compute_output_shape(shape))
    return shape


def output_shape_in_sequence(layers, input_shape):
    shape = tuple(input_shape)
    for layer in layers:
        shape = tuple(layer.compute_output_shape(shape))
    return shape


def call_in_sequence(layers, inputs, **kwargs):
    outputs = inputs
    for layer in layers:
        outputs = layer(outputs, **kwargs)
    return outputs
