import keras
import numpy as np
from keras import ops

from vq_keras.layers._validation import takes_numpy_scalars

MASK_TYPES = ("A", "B")


def check_mask_type(owner, mask_type):
    """Raises ValueError unless mask_type is "A" or "B"."""
    if mask_type not in MASK_TYPES:
        raise ValueError(
            f'{owner} expects mask_type to be "A" (the first layer: excludes the current '
            f'position) or "B" (later layers: includes it). Received: mask_type={mask_type!r}'
        )


def causal_mask(kernel_size, mask_type):
    """The float32 (kh, kw) raster-order mask of a PixelCNN convolution kernel.

    A tap is kept (1) if it lies in a row above the centre, or in the centre
    row left of the centre; mask_type "B" also keeps the centre, "A" does not.
    """
    check_mask_type("causal_mask", mask_type)
    height, width = kernel_size
    rows = np.arange(height)[:, None]
    cols = np.arange(width)[None, :]
    centre_row, centre_col = height // 2, width // 2
    before = (rows < centre_row) | ((rows == centre_row) & (cols < centre_col))
    if mask_type == "B":
        before |= (rows == centre_row) & (cols == centre_col)
    return before.astype("float32")


@keras.saving.register_keras_serializable(package="vq_keras")
class MaskedConv2D(keras.layers.Conv2D):
    """A 2D convolution that sees only earlier positions in raster order (PixelCNN).

    The kernel is multiplied by a constant causal mask inside the convolution
    on every call (the kernel variable itself is never modified, so optimizers,
    LoRA and weight loading see ordinary Conv2D weights). Output position
    (i, j) then depends only on input positions in rows above i, and on
    positions left of j in row i; with mask_type "B" also on (i, j) itself.

    The mask, `kernel_mask` (kh, kw, 1, 1), is a NumPy constant built once in
    `build()` from the kernel size, not a weight; it is the same for every
    input and output channel (each position holds one categorical variable,
    such as a VQ-VAE code, so there is no ordering among channels).

    Args:
        filters: the number of output channels.
        kernel_size: an odd integer or a pair of odd integers (kh, kw).
        mask_type: "A" excludes the centre tap (use it for the first layer,
            which sees the raw inputs), "B" includes it (every later layer).
        **conv_kwargs: other `keras.layers.Conv2D` arguments (activation,
            use_bias, initializers, dilation_rate, name, dtype, ...). padding
            is "same" by default and must stay "same"; strides must be 1.

    Call arguments:
        inputs: a 4D float tensor.

    Input shape:
        (batch, height, width, channels) (channels_last, the default).

    Output shape:
        (batch, height, width, filters).

    Example:
        >>> first = MaskedConv2D(64, 7, mask_type="A")
        >>> later = MaskedConv2D(64, 3, mask_type="B")
        >>> y = later(first(keras.random.normal((2, 8, 8, 16))))  # (2, 8, 8, 64)

    Reference:
        van den Oord, Kalchbrenner, Kavukcuoglu, "Pixel Recurrent Neural
        Networks", 2016, arXiv:1601.06759, section 3.4 (masks A and B).
    """

    @takes_numpy_scalars
    def __init__(self, filters, kernel_size, mask_type, **conv_kwargs):
        check_mask_type("MaskedConv2D", mask_type)
        conv_kwargs.setdefault("padding", "same")
        super().__init__(filters, kernel_size, **conv_kwargs)
        if any(size % 2 == 0 for size in self.kernel_size):
            raise ValueError(
                "MaskedConv2D expects an odd kernel_size, so that the kernel has a centre "
                f"tap. Received: kernel_size={tuple(self.kernel_size)}. Use e.g. 3, 5 or 7."
            )
        if self.padding != "same" or any(stride != 1 for stride in self.strides):
            raise ValueError(
                'MaskedConv2D expects padding="same" and strides=1, so that output position '
                "(i, j) is input position (i, j) and the mask is causal in raster order. "
                f"Received: padding={self.padding!r}, strides={tuple(self.strides)}"
            )
        self.mask_type = mask_type
        self.kernel_mask = None

    def build(self, input_shape):
        super().build(input_shape)
        # A constant (kh, kw, 1, 1), broadcast over input and output channels.
        self.kernel_mask = causal_mask(self.kernel_size, self.mask_type)[:, :, None, None]

    def convolution_op(self, inputs, kernel):
        return super().convolution_op(inputs, kernel * ops.cast(self.kernel_mask, kernel.dtype))

    def get_config(self):
        config = super().get_config()
        config["mask_type"] = self.mask_type
        return config
