"""The zoo's cifar10 presets beside the same networks built from Sonnet 2 modules.

Shared by the side-by-side benchmarks (`train_step`: speed, `peer_quality`:
reconstruction quality) and by `check_sonnet_builds`, which checks that the
Sonnet builds compute what ours do. The architectures are spelled out in
`benchmarks/train_step.py`'s docstring.
"""

import dataclasses

import sonnet as snt
import tensorflow as tf

from vq_keras.zoo import VQVAE, VQVAE2

LEARNING_RATE = 3e-4
IMAGE_SHAPE = (32, 32, 3)
PIXEL_SHIFT = 0.5
PRESET = "cifar10"
# The cifar10 presets' hyper-parameters (the same for VQVAE and VQVAE2),
# spelled out for the Sonnet builds.
NUM_HIDDENS = 128
NUM_RESIDUAL_HIDDENS = 32
NUM_RESIDUAL_LAYERS = 2
EMBEDDING_DIM = 64
NUM_EMBEDDINGS = 512
COMMITMENT_COST = 0.25
DECAY = 0.99
EPSILON = 1e-5
RESIDUAL = (NUM_HIDDENS, NUM_RESIDUAL_HIDDENS, NUM_RESIDUAL_LAYERS)


# --------------------------------------------------------------------------
# The peers: the same networks from Sonnet 2 modules.
# --------------------------------------------------------------------------


class SonnetResidualStack(snt.Module):
    """x + conv1x1(relu(conv3x3(relu(x)))) per block, then a ReLU."""

    def __init__(self, num_hiddens, num_residual_hiddens, num_residual_layers, name=None):
        super().__init__(name=name)
        self.blocks = [
            (
                snt.Conv2D(num_residual_hiddens, 3, padding="SAME", name=f"block{i}_conv3x3"),
                snt.Conv2D(num_hiddens, 1, padding="SAME", name=f"block{i}_conv1x1"),
            )
            for i in range(num_residual_layers)
        ]

    def __call__(self, x):
        for conv3, conv1 in self.blocks:
            x = x + conv1(tf.nn.relu(conv3(tf.nn.relu(x))))
        return tf.nn.relu(x)


class SonnetEncoder(snt.Module):
    """`num_downsamples` conv4x4/2 + relu (the first num_hiddens // 2 filters),
    conv3x3, residual stack: our `Encoder`."""

    def __init__(self, num_hiddens, num_residual_hiddens, num_residual_layers, num_downsamples, name=None):
        super().__init__(name=name)
        self.downs = [
            snt.Conv2D(
                num_hiddens // 2 if i == 0 else num_hiddens, 4, stride=2, padding="SAME", name=f"down{i}"
            )
            for i in range(num_downsamples)
        ]
        self.conv3x3 = snt.Conv2D(num_hiddens, 3, padding="SAME", name="conv3x3")
        self.stack = SonnetResidualStack(
            num_hiddens, num_residual_hiddens, num_residual_layers, name="residual_stack"
        )

    def __call__(self, x):
        for down in self.downs:
            x = tf.nn.relu(down(x))
        return self.stack(self.conv3x3(x))


class SonnetDecoder(snt.Module):
    """conv3x3, residual stack, `num_upsamples` convT4x4/2 (num_hiddens // 2
    filters + relu, the last `output_channels` and linear): our `Decoder`."""

    def __init__(
        self, num_hiddens, num_residual_hiddens, num_residual_layers, output_channels, num_upsamples, name=None
    ):
        super().__init__(name=name)
        self.conv3x3 = snt.Conv2D(num_hiddens, 3, padding="SAME", name="conv3x3")
        self.stack = SonnetResidualStack(
            num_hiddens, num_residual_hiddens, num_residual_layers, name="residual_stack"
        )
        self.ups = [
            snt.Conv2DTranspose(
                output_channels if i == num_upsamples - 1 else num_hiddens // 2,
                4,
                stride=2,
                padding="SAME",
                name=f"up{i}",
            )
            for i in range(num_upsamples)
        ]

    def __call__(self, x):
        x = self.stack(self.conv3x3(x))
        for up in self.ups[:-1]:
            x = tf.nn.relu(up(x))
        return self.ups[-1](x)


def sonnet_quantizer(name):
    return snt.nets.VectorQuantizerEMA(
        embedding_dim=EMBEDDING_DIM,
        num_embeddings=NUM_EMBEDDINGS,
        commitment_cost=COMMITMENT_COST,
        decay=DECAY,
        epsilon=EPSILON,
        name=name,
    )


class SonnetVQVAE(snt.Module):
    """The cifar10 VQ-VAE preset, module for module, in Sonnet 2."""

    def __init__(self, name="sonnet_vqvae"):
        super().__init__(name=name)
        self.encoder = SonnetEncoder(*RESIDUAL, num_downsamples=2, name="encoder")
        self.pre_quantizer = snt.Conv2D(EMBEDDING_DIM, 1, padding="SAME", name="pre_quantizer")
        self.quantizer = sonnet_quantizer("quantizer")
        self.decoder = SonnetDecoder(
            *RESIDUAL, output_channels=IMAGE_SHAPE[-1], num_upsamples=2, name="decoder"
        )

    def __call__(self, images, is_training):
        x = self.encoder(images - PIXEL_SHIFT)
        vq_output = self.quantizer(self.pre_quantizer(x), is_training=is_training)
        x_recon = self.decoder(vq_output["quantize"]) + PIXEL_SHIFT
        return {"x_recon": x_recon, "vq_outputs": [vq_output]}


class SonnetVQVAE2(snt.Module):
    """The cifar10 VQ-VAE-2 preset (2 levels, top first), module for module, in Sonnet 2."""

    def __init__(self, name="sonnet_vqvae2"):
        super().__init__(name=name)
        self.encoder_bottom = SonnetEncoder(*RESIDUAL, num_downsamples=2, name="encoder_bottom")
        self.encoder_top = SonnetEncoder(*RESIDUAL, num_downsamples=1, name="encoder_top")
        self.pre_quantizer_top = snt.Conv2D(EMBEDDING_DIM, 1, padding="SAME", name="pre_quantizer_top")
        self.quantizer_top = sonnet_quantizer("quantizer_top")
        self.conditioner_bottom = SonnetDecoder(
            *RESIDUAL, output_channels=EMBEDDING_DIM, num_upsamples=1, name="conditioner_bottom"
        )
        self.pre_quantizer_bottom = snt.Conv2D(
            EMBEDDING_DIM, 1, padding="SAME", name="pre_quantizer_bottom"
        )
        self.quantizer_bottom = sonnet_quantizer("quantizer_bottom")
        self.upsampler_top = snt.Conv2DTranspose(
            EMBEDDING_DIM, 4, stride=2, padding="SAME", name="upsampler_top"
        )
        self.decoder = SonnetDecoder(
            *RESIDUAL, output_channels=IMAGE_SHAPE[-1], num_upsamples=2, name="decoder"
        )

    def __call__(self, images, is_training):
        features_bottom = self.encoder_bottom(images - PIXEL_SHIFT)  # 8x8x128
        features_top = self.encoder_top(features_bottom)  # 4x4x128
        vq_top = self.quantizer_top(self.pre_quantizer_top(features_top), is_training=is_training)
        conditioned = tf.concat(
            [features_bottom, self.conditioner_bottom(vq_top["quantize"])], axis=-1
        )  # 8x8x(128+64)
        vq_bottom = self.quantizer_bottom(
            self.pre_quantizer_bottom(conditioned), is_training=is_training
        )
        maps = tf.concat([self.upsampler_top(vq_top["quantize"]), vq_bottom["quantize"]], axis=-1)
        x_recon = self.decoder(maps) + PIXEL_SHIFT
        return {"x_recon": x_recon, "vq_outputs": [vq_top, vq_bottom]}


def make_sonnet_step(sonnet_class, data_variance, jit_compile, learning_rate=LEARNING_RATE):
    """A fresh Sonnet model, optimizer and train step (the example's form)."""
    model = sonnet_class()
    optimizer = snt.optimizers.Adam(learning_rate=learning_rate)

    def train_step(images):
        with tf.GradientTape() as tape:
            model_output = model(images, is_training=True)
            recon_error = tf.reduce_mean((model_output["x_recon"] - images) ** 2) / data_variance
            loss = recon_error + tf.add_n([vq["loss"] for vq in model_output["vq_outputs"]])
        parameters = model.trainable_variables
        gradients = tape.gradient(loss, parameters)
        optimizer.apply(gradients, parameters)
        return {
            "loss": loss,
            "recon_error": recon_error,
            "perplexity": [vq["perplexity"] for vq in model_output["vq_outputs"]],
        }

    return model, tf.function(train_step, jit_compile=jit_compile)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    title: str  # e.g. "VQVAE"
    keras_class: type  # the zoo class; built with from_preset(PRESET)
    sonnet_class: type  # the Sonnet 2 build of the same net
    num_quantizers: int


MODELS = {
    "vqvae": ModelSpec("VQVAE", VQVAE, SonnetVQVAE, 1),
    "vqvae2": ModelSpec("VQVAE2", VQVAE2, SonnetVQVAE2, 2),
}
