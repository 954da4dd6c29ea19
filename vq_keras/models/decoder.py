import keras
from keras import layers as keras_layers

from vq_keras._conv_init import conv_kernel_initializer, transposed_kernel_initializer
from vq_keras.layers._sequence import build_in_sequence, call_in_sequence, output_shape_in_sequence
from vq_keras.layers._validation import require_positive_int, takes_numpy_scalars
from vq_keras.layers.residual_stack import ResidualStack


@keras.saving.register_keras_serializable(package="vq_keras")
class Decoder(keras.layers.Layer):
    """The mirror of `Encoder`: a 3x3 convolution, a residual stack, then
    `num_upsamples` stride-2 4x4 transposed convolutions.

    The transposed convolutions have num_hiddens // 2 filters and a ReLU, except
    the last, which has `output_channels` filters and no activation.

    Args:
        num_hiddens: channels after the first convolution.
        num_residual_hiddens: bottleneck channels of the residual blocks.
        num_residual_layers: number of residual blocks.
        output_channels: channels of the output (3 for RGB images).
        num_upsamples: number of stride-2 transposed convolutions (upsampling 2**n).
        **kwargs: standard `keras.layers.Layer` arguments.

    Input shape:
        (batch, height, width, channels).

    Output shape:
        (batch, height * 2**n, width * 2**n, output_channels).

    Example:
        >>> decoder = Decoder(128, 32, 2, output_channels=3)
        >>> tuple(decoder(keras.random.normal((1, 8, 8, 64))).shape)
        (1, 32, 32, 3)

    Reference:
        van den Oord et al., 2017, arXiv:1711.00937, section 4.1.
    """

    @takes_numpy_scalars
    def __init__(
        self, num_hiddens, num_residual_hiddens, num_residual_layers, output_channels, num_upsamples=2, **kwargs
    ):
        super().__init__(**kwargs)
        require_positive_int("Decoder", "num_hiddens", num_hiddens)
        require_positive_int("Decoder", "output_channels", output_channels)
        require_positive_int("Decoder", "num_upsamples", num_upsamples)
        self.num_hiddens = num_hiddens
        self.num_residual_hiddens = num_residual_hiddens
        self.num_residual_layers = num_residual_layers
        self.output_channels = output_channels
        self.num_upsamples = num_upsamples
        dtype = self.dtype_policy  # Keras does not pass a (mixed) policy on to sublayers
        self.stages = [
            keras_layers.Conv2D(
                num_hiddens, 3, padding="same", name="conv3x3", kernel_initializer=conv_kernel_initializer(), dtype=dtype
            ),
            ResidualStack(num_hiddens, num_residual_hiddens, num_residual_layers, name="residual_stack", dtype=dtype),
        ]
        for i in range(num_upsamples):
            last = i == num_upsamples - 1
            self.stages.append(
                keras_layers.Conv2DTranspose(
                    output_channels if last else num_hiddens // 2,
                    4,
                    strides=2,
                    padding="same",
                    activation=None if last else "relu",
                    name=f"up{i}",
                    kernel_initializer=transposed_kernel_initializer(),
                    dtype=dtype,
                )
            )

    def build(self, input_shape):
        build_in_sequence(self.stages, input_shape)

    def call(self, inputs):
        return call_in_sequence(self.stages, inputs)

    def compute_output_shape(self, input_shape):
        return output_shape_in_sequence(self.stages, input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_hiddens=self.num_hiddens,
            num_residual_hiddens=self.num_residual_hiddens,
            num_residual_layers=self.num_residual_layers,
            output_channels=self.output_channels,
            num_upsamples=self.num_upsamples,
        )
        return config
