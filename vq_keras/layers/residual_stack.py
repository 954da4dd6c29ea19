import keras
from keras import layers as keras_layers
from keras import ops

from vq_keras._conv_init import conv_kernel_initializer
from vq_keras.layers._sequence import build_in_sequence, call_in_sequence
from vq_keras.layers._validation import require_positive_int, takes_numpy_scalars


@keras.saving.register_keras_serializable(package="vq_keras")
class ResidualStack(keras.layers.Layer):
    """A stack of residual blocks: x + conv1x1(relu(conv3x3(relu(x)))), then a ReLU.

    Args:
        num_hiddens: channels of the input and output (the residual width).
        num_residual_hiddens: channels of each block's 3x3 bottleneck.
        num_residual_layers: the number of residual blocks (0 gives just a ReLU).
        **kwargs: standard `keras.layers.Layer` arguments.

    Input shape:
        (batch, height, width, num_hiddens).

    Output shape:
        Same as the input.

    Example:
        >>> stack = ResidualStack(num_hiddens=128, num_residual_hiddens=32, num_residual_layers=2)
        >>> y = stack(keras.random.normal((1, 8, 8, 128)))

    Reference:
        van den Oord et al., 2017, arXiv:1711.00937, section 4.1.
    """

    @takes_numpy_scalars
    def __init__(self, num_hiddens, num_residual_hiddens, num_residual_layers, **kwargs):
        super().__init__(**kwargs)
        require_positive_int("ResidualStack", "num_hiddens", num_hiddens)
        require_positive_int("ResidualStack", "num_residual_hiddens", num_residual_hiddens)
        require_positive_int("ResidualStack", "num_residual_layers", num_residual_layers, allow_zero=True)
        self.num_hiddens = num_hiddens
        self.num_residual_hiddens = num_residual_hiddens
        self.num_residual_layers = num_residual_layers
        dtype = self.dtype_policy  # Keras does not pass a (mixed) policy on to sublayers
        self.blocks = [
            [
                keras_layers.ReLU(dtype=dtype),
                keras_layers.Conv2D(
                    num_residual_hiddens, 3, padding="same", name=f"block{i}_conv3x3",
                    kernel_initializer=conv_kernel_initializer(), dtype=dtype,
                ),
                keras_layers.ReLU(dtype=dtype),
                keras_layers.Conv2D(
                    num_hiddens, 1, name=f"block{i}_conv1x1", kernel_initializer=conv_kernel_initializer(), dtype=dtype
                ),
            ]
            for i in range(num_residual_layers)
        ]

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] != self.num_hiddens:
            raise ValueError(
                "ResidualStack expects 4D inputs (batch, height, width, "
                f"num_hiddens={self.num_hiddens}). Received: input_shape={tuple(input_shape)}"
            )
        for block in self.blocks:
            build_in_sequence(block, input_shape)

    def call(self, inputs):
        outputs = inputs
        for block in self.blocks:
            outputs = outputs + call_in_sequence(block, outputs)
        return ops.relu(outputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            num_hiddens=self.num_hiddens,
            num_residual_hiddens=self.num_residual_hiddens,
            num_residual_layers=self.num_residual_layers,
        )
        return config
