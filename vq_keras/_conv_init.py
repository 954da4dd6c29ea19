"""The convolution weights of the autoencoders, initialized as Sonnet 2 (the papers' reference
implementation) does: a normal truncated at two standard deviations whose stddev before
truncation is 1/sqrt(fan_in), fan_in being kernel height x width x the layer's input channels.
Keras' default (glorot_uniform) starts the first 4x4 convolution 4.7x smaller, and trained to
10,000 steps ~0.0005 worse in validation MSE/variance (benchmarks/RESULTS.md)."""

import keras

# Keras' truncated_normal VarianceScaling divides by this to undo the truncation; Sonnet does not.
_TRUNCATED_STD = 0.87962566103423978


def conv_kernel_initializer():
    return keras.initializers.VarianceScaling(_TRUNCATED_STD**2, mode="fan_in", distribution="truncated_normal")


def transposed_kernel_initializer():
    # A transposed kernel is (h, w, out, in): its input channels are what Keras calls fan_out.
    return keras.initializers.VarianceScaling(_TRUNCATED_STD**2, mode="fan_out", distribution="truncated_normal")
