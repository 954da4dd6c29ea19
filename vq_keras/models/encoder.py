import keras
from keras import layers as keras_layers

from vq_keras._conv_init import conv_kernel_initializer
from vq_keras.layers._sequence import build_in_sequence, call_in_sequence, output_shape_in_sequence
from vq_keras.layers._validation import require_positive_int, takes_numpy_scalars
from vq_keras.layers.residual_stack import ResidualStack


@keras.saving.register_keras_serializable(package="vq_keras")
class Encoder(keras.layers.Layer):
    """Strided 4x4 convolutions, a 3x3 convolution and a residual stack.

    Each of the `num_downsamples` stride-2 4x4 convolutions (the first with
    num_hiddens // 2 filters, the rest with num_hiddens) halves the height and
    width and is followed by a ReLU. VQ-VAE uses 2 (a 32x32 image becomes an
    8x8 grid); a VQ-VAE-2 level above another uses 1.

    Args:
        num_hiddens: channels of the output.
        num_residual_hiddens: bottleneck channels of the residual blocks.
        num_residual_layers: number of residual blocks.
        num_downsamples: number of stride-2 convolutions (downsampling 2**n).
        **kwargs: standard `keras.layers.Layer` arguments.

    Input shape:
        (batch, height, width, channels), height and width multiples of 2**num_downsamples.

    Output shape:
        (batch, height / 2**n, width / 2**n, num_hiddens).

    Example:
        >>> encoder = Encoder(num_hiddens=128, num_residual_hiddens=32, num_residual_layers=2)
        >>> tuple(encoder(keras.random.normal((1, 32, 32, 3))).shape)
        (1, 8, 8, 128)

    Reference:
        van den Oord et al., 2017, arXiv:1711.00937, section 4.1; Razavi et al.,
        2019, arXiv:1906.00446, figure 2.
    """

    @takes_numpy_scalars
    def __init__(self, num_hiddens, num_residual_hiddens, num_residual_layers, num_downsamples=2, **kwargs):
        super().__init__(**kwargs)
        require_positive_int("Encoder", "num_hiddens", num_hiddens)
        require_positive_int("Encoder", "num_downsamples", num_downsamples)
        self.num_hiddens = num_hiddens
        self.num_residual_hiddens = num_residual_hiddens
        self.num_residual_layers = num_residual_layers
        self.num_downsamples = num_downsamples
        dtype = self.dtype_policy  # Keras does not pass a (mixed) policy on to sublayers
        self.stages = []
        for i in range(num_downsamples):
            filters = num_hiddens // 2 if i == 0 else num_hiddens
            self.stages.append(
                keras_layers.Conv2D(
                    filters, 4, strides=2, padding="same", activation="relu", name=f"down{i}",
                    kernel_initializer=conv_kernel_initializer(), dtype=dtype,
                )
            )
        self.stages.append(
            keras_layers.Conv2D(
                num_hiddens, 3, padding="same", name="conv3x3", kernel_initializer=conv_kernel_initializer(), dtype=dtype
            )
        )
        self.stages.append(
            ResidualStack(num_hiddens, num_residual_hiddens, num_residual_layers, name="residual_stack", dtype=dtype)
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
            num_downsamples=self.num_downsamples,
        )
        return config
