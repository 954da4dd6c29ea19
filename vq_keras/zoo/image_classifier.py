import keras
from keras import layers as keras_layers
from keras import ops

from vq_keras.layers._validation import require_number, require_positive_int, takes_numpy_scalars
from vq_keras.zoo._common import PIXEL_SHIFT, PresetMixin


@keras.saving.register_keras_serializable(package="vq_keras")
class ImageClassifier(PresetMixin, keras.Model):
    """A small convolutional classifier whose pooled features measure generated images.

    `vq_keras.sample_quality` computes a Frechet distance on `features` (the global average of
    the last stage, as FID does on Inception's pool features) and the class accuracy of
    class-conditional samples from `call`'s logits. It is trained by the project
    (`python -m training.fit_classifier`, zoo/classifier_cifar10), so the measure runs offline;
    its figures are on this network's features, not Inception's: compare them with each other
    and with the real-vs-real scale printed beside them, never with published FIDs.

    Each stage is `blocks_per_stage` x (3x3 convolution, batch normalisation, ReLU); a 2x2 max
    pool follows every stage but the last; the features go through dropout to the logits.

    Args:
        widths: the channels of each stage.
        blocks_per_stage: convolutions per stage.
        num_classes: the number of classes.
        num_channels: image channels.
        dropout: dropout rate before the logits, in [0, 1).
        **kwargs: standard `keras.Model` arguments (name, ...).

    Call arguments:
        images: float32 (batch, height, width, num_channels) in [0, 1].
        training: whether batch normalisation uses the batch's statistics and dropout is active.

    Output shape:
        float32 (batch, num_classes) logits.

    Example:
        >>> classifier = ImageClassifier.from_preset("classifier_cifar10")
        >>> features = classifier.features(images)   # float32 (N, 128)
        >>> labels = classifier.predict_labels(images)   # int32 (N,)
    """

    PRESETS = {
        # CIFAR-10: 3 stages of 2 convolutions, 32-64-128 channels (0.29M parameters; 64-128-256
        # trains 4x slower on a 2-core CPU).
        "cifar10": dict(widths=(32, 64, 128), blocks_per_stage=2, num_classes=10, num_channels=3, dropout=0.3),
    }
    PRESET_FILE = "classifier.keras"

    @takes_numpy_scalars
    def __init__(self, widths=(32, 64, 128), blocks_per_stage=2, num_classes=10, num_channels=3, dropout=0.3, **kwargs):
        super().__init__(**kwargs)
        name = "ImageClassifier"
        widths = tuple(widths)
        if not widths:
            raise ValueError(f"{name} expects at least one stage width. Received: widths={widths}")
        for width in widths:
            require_positive_int(name, "widths", width)
        require_positive_int(name, "blocks_per_stage", blocks_per_stage)
        require_positive_int(name, "num_classes", num_classes)
        require_positive_int(name, "num_channels", num_channels)
        require_number(name, "dropout", dropout, low=0, high=1)
        self.widths = widths
        self.blocks_per_stage = blocks_per_stage
        self.num_classes = num_classes
        self.num_channels = num_channels
        self.dropout = dropout
        self.stages = [
            keras.Sequential(self._stage(width, pool=index < len(widths) - 1), name=f"stage{index}")
            for index, width in enumerate(widths)
        ]
        self.pool = keras_layers.GlobalAveragePooling2D(name="pool")
        self.dropout_layer = keras_layers.Dropout(dropout, name="dropout")
        self.head = keras_layers.Dense(num_classes, name="logits", dtype="float32")

    def _stage(self, width, pool):
        stage = []
        for _ in range(self.blocks_per_stage):
            stage += [
                keras_layers.Conv2D(width, 3, padding="same", use_bias=False),
                keras_layers.BatchNormalization(),
                keras_layers.ReLU(),
            ]
        return stage + [keras_layers.MaxPooling2D(2)] if pool else stage

    def build(self, input_shape):
        # Builds every sub-layer, so that a .keras file's weights load into a fresh instance.
        self.call(keras.KerasTensor(input_shape))

    def call(self, images, training=False):
        return self.head(self.dropout_layer(self._pooled(images, training), training=training))

    def _pooled(self, images, training):
        x = ops.convert_to_tensor(images, "float32") - PIXEL_SHIFT
        for stage in self.stages:
            x = stage(x, training=training)
        return ops.cast(self.pool(x), "float32")

    def features(self, images):
        """float32 (batch, widths[-1]): the pooled last stage in inference mode (the Frechet
        distance's features)."""
        self._check_images(images)
        return self._pooled(images, training=False)

    def predict_labels(self, images):
        """int32 (batch,): the most likely class of each image."""
        self._check_images(images)
        return ops.cast(ops.argmax(self(images, training=False), axis=-1), "int32")

    def _check_images(self, images):
        self.build_if_needed()
        shape = tuple(images.shape)
        if len(shape) != 4 or shape[-1] != self.num_channels:
            raise ValueError(
                f"ImageClassifier expects images of shape (batch, height, width, {self.num_channels}) in [0, 1]. "
                f"Received: shape={shape}"
            )

    def build_if_needed(self):
        if not self.built:
            self.build((None, 32, 32, self.num_channels))

    def get_config(self):
        return {
            **super().get_config(),
            "widths": list(self.widths), "blocks_per_stage": self.blocks_per_stage, "num_classes": self.num_classes,
            "num_channels": self.num_channels, "dropout": self.dropout,
        }
