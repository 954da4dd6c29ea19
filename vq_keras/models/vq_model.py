import contextlib

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from vq_keras import metrics
from vq_keras._backend import BACKEND, IS_JAX, portable_compile_config
from vq_keras._image_checks import graph_unit_checked, unit_checked
from vq_keras._replicas import mean_over_replicas, own_losses, share_of_replica, sum_over_replicas
from vq_keras._step_flag import StepFlag
from vq_keras.layers._validation import require_number, require_positive_int

DEFAULT_LEARNING_RATE = 3e-4  # Adam, as in the VQ-VAE paper and Sonnet's example


class VQModel(keras.Model):
    """The base of every autoencoder in the zoo: one train_step and test_step.

    Subclasses build their layers in `__init__` and `build(input_shape)`, pass
    `level_names` (top first; "" for a single level), set `downsampling` (the
    total factor from image to the coarsest (top) code grid: image height and
    width must be multiples of it), set `num_embeddings` (codes per position,
    every level), and implement the contract below (what training, stage 2,
    generation and export rely on, and nothing else):
    - `call(images, training=None, return_codes=False)`: the reconstruction
      (and, when `self._returns_codes(return_codes)`, i.e. with
      `return_codes=True` or inside fit's and evaluate's steps, the list of
      int32 code grids, top first); `images` as a step passes them (a batch
      of `select_images`' forms: JAX's stateless_call skips `__call__`);
    - `quantizers`: the quantizer layer of every level, top first;
    - `encode_levels(images)` -> [int32 code grid per level], top first;
    - `decode_levels(codes)` -> float32 images in [0, 1] from those grids;
    - `code_shapes(image_size)` -> [(height, width) per level], top first, from
      shapes alone.

    Training is Keras' own train and test step on every backend (no
    GradientTape): `compute_loss` gives reconstruction MSE / data_variance plus
    the quantizer losses added with `add_loss`, and records the metrics: loss,
    reconstruction_loss, vq_loss, and per level perplexity and codebook_usage
    (the fraction of codes used in the batch), epoch_codebook_usage and
    epoch_dead_codes (over the epoch, or the whole evaluation), prefixed by the
    level name for multi-level models.

    Images are float (float32) NHWC in [0, 1] everywhere: calling the model,
    `encode`, `reconstruct`, `fit`, `evaluate` and `predict`. Nothing converts
    or clips them, so no path sees other values than another:
    - integer images (e.g. uint8 in 0..255) are a TypeError, raised when the
      call is traced (free): divide them by 255 first;
    - float values outside [0, 1], NaN or infinity are refused: eager calls
      raise ValueError before computing; traced calls (tf.function, the steps
      of fit/evaluate/predict, SavedModel endpoints) carry an assertion that
      fails the step with InvalidArgumentError and the same expectation (one
      fused comparison over the batch per step: under 1% of a CIFAR-10 VQVAE
      step at batch 32, `benchmarks/input_checks.py`). `fit`, `evaluate` and `predict` also check NumPy arrays
      and eager tensors in full before the first step. XLA (`jit_compile=True`)
      drops assertions, so then a tf.data.Dataset is checked element by element
      in its input pipeline instead; Python generators and PyDataset inputs are
      not checked under XLA.

    Args:
        num_channels: image channels (3 for RGB, 1 for grayscale).
        data_variance: pixel variance of the training images in [0, 1] scale,
            the normaliser of the reconstruction error (CIFAR-10: about 0.0633).
        level_names: names of the code levels, top first, prefixing the
            per-level metrics; ("",) for one level (no prefix).
        **kwargs: standard `keras.Model` arguments.
    """

    downsampling = 1

    def __init__(self, num_channels=3, data_variance=1.0, level_names=("",), **kwargs):
        super().__init__(**kwargs)
        require_positive_int(type(self).__name__, "num_channels", num_channels)
        require_number(type(self).__name__, "data_variance", data_variance, low=0, low_inclusive=False)
        self.num_channels = num_channels
        self.data_variance = float(data_variance)
        self.level_names = tuple(level_names)
        names = ["loss", "reconstruction_loss", "vq_loss"]
        for level in self.level_names:
            prefix = f"{level}_" if level else ""
            names += [f"{prefix}perplexity", f"{prefix}codebook_usage"]
        self._trackers = [keras.metrics.Mean(name=name) for name in names]
        self._with_codes = StepFlag()  # on in train_step and test_step

    @property
    def metrics(self):
        return list(self._trackers) + list(getattr(self, "code_usage", []))

    def track_code_usage(self):
        """Creates `code_usage`: a `metrics.CodeUsage` per level, top first, which
        train_step and test_step update and Keras resets with the other metrics
        (every epoch, and before evaluating), logged as
        `<level>_epoch_codebook_usage` and `<level>_epoch_dead_codes`.
        Subclasses call it once their quantizers exist.
        """
        self.code_usage = [
            metrics.CodeUsage(
                quantizer.num_embeddings,
                prefix=f"{level}_" if level else "",
                name=f"{level}_code_usage" if level else "code_usage",
            )
            for level, quantizer in zip(self.level_names, self.quantizers)
        ]

    @property
    def quantizers(self):
        """The quantizer layer of every level, top first."""
        raise NotImplementedError(f"{type(self).__name__} must implement quantizers.")

    def encode_levels(self, images):
        """float32 images in [0, 1] -> list of int32 code grids, top first."""
        raise NotImplementedError(f"{type(self).__name__} must implement encode_levels.")

    def decode_levels(self, codes):
        """List of int32 code grids, top first -> float32 images clipped to [0, 1]."""
        raise NotImplementedError(f"{type(self).__name__} must implement decode_levels.")

    def code_shapes(self, image_size):
        """(height, width) of every level's code grid for images of `image_size`, top first."""
        raise NotImplementedError(f"{type(self).__name__} must implement code_shapes.")

    def compile(self, optimizer=None, **kwargs):
        """Like `keras.Model.compile`; the default optimizer is Adam(3e-4)."""
        if BACKEND == "torch" and kwargs.get("jit_compile") is True:
            raise ValueError(
                f"{type(self).__name__} trains eagerly on the PyTorch backend: torch.compile (jit_compile=True) "
                "fails in its forward pass (dynamo cannot decide a comparison of the symbolic batch shape). "
                "Received: jit_compile=True. Leave jit_compile out (Keras runs PyTorch eagerly by default), or "
                "train on TensorFlow or JAX for a compiled step."
            )
        if optimizer is None:
            optimizer = keras.optimizers.Adam(DEFAULT_LEARNING_RATE)
        super().compile(optimizer=optimizer, **kwargs)

    def compile_from_config(self, config):
        # Keras skips this for models that override compile(); ours keeps its
        # signature, so restore the saved optimizer (and its state) as usual.
        config = portable_compile_config(config)
        if BACKEND == "torch" and isinstance(config, dict) and config.get("jit_compile") is True:
            config = {**config, "jit_compile": False}  # written where XLA compiled the step; PyTorch runs eagerly
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def check_image_shape(self, shape):
        """Raises ValueError unless (..., height, width, channels) fits this model."""
        name = type(self).__name__
        shape = tuple(shape)
        if len(shape) < 3:
            raise ValueError(
                f"{name} expects images of shape (batch, height, width, {self.num_channels}). "
                f"Received: shape={shape}"
            )
        height, width, channels = shape[-3:]
        if channels != self.num_channels:
            raise ValueError(
                f"{name} was built for {self.num_channels}-channel images but received "
                f"{channels}-channel images (shape={shape}). Build it with "
                f"num_channels={channels} (for example `from_preset(..., num_channels={channels})`), "
                "or convert the images."
            )
        factor = self.downsampling
        for size in (height, width):
            if size is not None and (size < factor or size % factor):
                raise ValueError(
                    f"{name} downsamples images by {factor}, so height and width must be "
                    f"positive multiples of {factor} (e.g. {factor * 7}, {factor * 8}, {factor * 16}). "
                    f"Received: image size {height}x{width}. Crop or resize the images."
                )

    def _check_dtype(self, images):
        """Raises TypeError unless the images are floats (checked when traced: free)."""
        dtype = keras.backend.standardize_dtype(images.dtype)
        if not keras.backend.is_float_dtype(dtype):
            raise TypeError(
                f"{type(self).__name__} expects float32 images scaled to [0, 1]. "
                f"Received: dtype={dtype}. Divide uint8 images by 255 first."
            )

    def _checked_images(self, images):
        """`images` with their dtype, shape and values checked (see the class docstring);
        builds the model if needed. Raises TypeError or ValueError eagerly; in a graph the
        returned tensor carries the value assertions."""
        if not hasattr(images, "dtype"):
            images = ops.convert_to_tensor(images)
        self._check_dtype(images)
        self.check_image_shape(images.shape)
        self.build_if_needed()
        return unit_checked(images, type(self).__name__)

    def _checked_pipeline_images(self, images):
        """`_checked_images` for a tf.data map (a TensorFlow graph on any Keras backend)."""
        self._check_dtype(images)
        self.check_image_shape(images.shape)
        return graph_unit_checked(images, type(self).__name__)

    def __call__(self, images, *args, **kwargs):
        return super().__call__(self._checked_images(select_images(images)), *args, **kwargs)

    def build_if_needed(self):
        """Builds the model from shapes alone (any image size) if it is not built yet."""
        if not self.built:
            self.build((None, None, None, self.num_channels))

    def reconstruct(self, images):
        """Encodes and decodes float32 images in [0, 1]; returns images clipped to [0, 1]."""
        return ops.clip(self(images, training=False), 0.0, 1.0)

    def train_step(self, *state_and_data):
        """Keras' own train step (any backend: `(data)` on TensorFlow and PyTorch, `(state, data)` on JAX),
        its forward pass returning the code grids beside the reconstruction for `compute_loss`."""
        with self._with_codes.on():
            return super().train_step(*state_and_data)

    def test_step(self, *state_and_data):
        with self._with_codes.on():
            return super().test_step(*state_and_data)

    # Keras' steps call `self(x, training=...)` and hand the output to compute_loss and
    # compute_metrics; the code metrics need the codes, which `call` returns only when asked.

    def _returns_codes(self, return_codes):
        """`return_codes` of a call, or True inside fit's and evaluate's steps."""
        return return_codes or self._with_codes.is_on()

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Reconstruction MSE / data_variance plus the quantizers' `add_loss` terms, as this
        replica's share of the global-batch loss; records the step's metrics."""
        images = self._images_from(x)
        reconstruction, codes = y_pred
        reconstruction = ops.cast(reconstruction, "float32")
        reconstruction_loss = ops.mean(ops.square(reconstruction - images)) / self.data_variance
        # A quantizer without losses (FiniteScalarQuantizer) leaves the list empty.
        vq_loss = sum((ops.cast(loss, "float32") for loss in own_losses(self.losses)), ops.zeros((), "float32"))
        self._record(reconstruction_loss, vq_loss, codes)
        return share_of_replica(reconstruction_loss + vq_loss)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """The logs: `compute_loss` updated the metrics (it alone sees the quantizer losses)."""
        logs = {tracker.name: tracker.result() for tracker in self._trackers}
        for usage in self.code_usage:
            logs.update(usage.result())
        return logs

    def _record(self, reconstruction_loss, vq_loss, codes):
        # Global-batch values on every replica: perplexity is not linear in the
        # counts, so averaging per-replica perplexities would be wrong.
        reconstruction_loss, vq_loss = mean_over_replicas(reconstruction_loss), mean_over_replicas(vq_loss)
        values = [reconstruction_loss + vq_loss, reconstruction_loss, vq_loss]
        for level_codes, quantizer, usage in zip(codes, self.quantizers, self.code_usage):
            replica_counts = metrics.code_counts(level_codes, quantizer.num_embeddings)
            usage.update_counts(replica_counts)  # a sum-aggregated metric: each replica adds its own
            counts = sum_over_replicas(replica_counts)
            values.append(metrics.perplexity_of_counts(counts))
            values.append(metrics.codebook_usage_of_counts(counts))
        for tracker, value in zip(self._trackers, values):
            tracker.update_state(value)

    def _images_from(self, data):
        """Accepts images, (images,), (images, labels) or {"image": ...} batches; refuses
        integer images when traced (their values are checked when the model is called)."""
        images = select_images(data)
        self._check_dtype(images)
        return ops.cast(images, "float32")

    # predict_step is Keras' own (either backend): `call` takes the batch's images as fit does and
    # returns the reconstruction (not clipped).

    # fit, evaluate and predict check their data before it enters the compiled step.

    def fit(self, x=None, y=None, *args, validation_data=None, **kwargs):
        return super().fit(
            self._checked_data(x), y, *args, validation_data=self._checked_data(validation_data), **kwargs
        )

    def evaluate(self, x=None, *args, **kwargs):
        # Inside fit, x is the validation data fit checked already (and Keras reads its cached
        # iterator); checking it again costs one lazy map or one pass over arrays.
        with self._weights_kept_on_error():
            return super().evaluate(self._checked_data(x), *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        with self._weights_kept_on_error():
            return super().predict(self._checked_data(x), *args, **kwargs)

    @contextlib.contextmanager
    def _weights_kept_on_error(self):
        """Gives the variables their values back if evaluate or predict raises (a refused batch).

        Keras' JAX trainer detaches the variables' values for its loop and reattaches them
        when the loop ends; fit does so in a `finally`, evaluate and predict do not, so an error
        in their first step would leave the model without weights. Neither changes a weight.
        TensorFlow and PyTorch keep the variables attached: nothing to copy there."""
        if not IS_JAX:
            yield
            return
        variables = [*self.trainable_variables, *self.non_trainable_variables, *self.metrics_variables]
        values = [ops.copy(variable.value) for variable in variables]  # copies: the steps donate their buffers
        try:
            yield
        except BaseException:
            for variable, value in zip(variables, values):
                variable.assign(value)
            raise

    def _checked_data(self, data):
        """`data` for fit/evaluate/predict, its images checked where the compiled step cannot.

        NumPy arrays and eager tensors are checked in full now (a TypeError or ValueError
        before any step). A tf.data.Dataset is checked by the step's own assertions, but
        XLA drops assertions: under jit_compile the check is mapped into the input
        pipeline instead, element by element. Other inputs (Python generators,
        PyDataset) rely on the step's assertions alone.
        """
        if isinstance(data, tf.data.Dataset):
            if not self.jit_compile:
                return data
            check = self._checked_pipeline_images
            return data.map(
                lambda *element: _with_images(element[0] if len(element) == 1 else element, check),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
        images = select_images(data)
        if isinstance(images, (np.ndarray, tf.Tensor)):
            self._checked_images(images)
        return data

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "num_channels": self.num_channels,
            "data_variance": self.data_variance,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
        }


def select_images(data):
    """The images of a batch: images, (images,), (images, labels) or {"image": images, ...}."""
    if isinstance(data, dict):
        return select_images(data["image"])
    if isinstance(data, (tuple, list)):
        return select_images(data[0])
    return data


def _with_images(data, function):
    """A batch like `data` (see `select_images`) with `function` applied to its images."""
    if isinstance(data, dict):
        return {**data, "image": _with_images(data["image"], function)}
    if isinstance(data, (tuple, list)):
        return (_with_images(data[0], function), *data[1:])
    return function(data)
