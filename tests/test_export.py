import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2

import vq_keras.export
from vq_keras.export import export_saved_model
from vq_keras.zoo import VQVAE, VQVAE2, HierarchicalPrior, MaskGITPrior, PixelCNNPrior, TransformerPrior, generate
from tests.conftest import REPO
from tests.presets import SMALL_AUTOENCODER as TINY
from tests.presets import TINY_PRIORS

K = TINY["num_embeddings"]
TINY_PRIOR = TINY_PRIORS["pixelcnn"]
TINY_TRANSFORMER = TINY_PRIORS["transformer"]
CLASSES = 3
PY_FUNC_OPS = {"PyFunc", "PyFuncStateless", "EagerPyFunc"}

# Loads the exports with TensorFlow alone and calls their signatures in two ways: through
# tf.saved_model.load ("function"), and as TF Serving runs a signature ("session"): a session
# over the MetaGraph whose signature inputs are fed without checking the request's shape.
SERVE_WITH_TENSORFLOW_ONLY = r'''
import json
import sys

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

cases_path, inputs_path, errors_path, outputs_path = sys.argv[1:]
with open(cases_path) as f:
    cases = json.load(f)
arrays = np.load(inputs_path)
loaded = {}


def call_function(case):
    if case["dir"] not in loaded:
        loaded[case["dir"]] = tf.saved_model.load(case["dir"])
    function = loaded[case["dir"]].signatures[case["signature"]]
    outputs = function(**{name: tf.constant(arrays[key]) for name, key in case["inputs"].items()})
    return {name: value.numpy() for name, value in outputs.items()}


def call_session(case):
    proto = saved_model_pb2.SavedModel()
    with open(case["dir"] + "/saved_model.pb", "rb") as f:
        proto.ParseFromString(f.read())
    signature = proto.meta_graphs[0].signature_def[case["signature"]]
    with tf.compat.v1.Session(graph=tf.Graph()) as session:
        feeds = {
            name: tf.compat.v1.placeholder(tf.dtypes.as_dtype(info.dtype), shape=None)
            for name, info in signature.inputs.items()
        }
        input_map = {signature.inputs[name].name: feed for name, feed in feeds.items()}
        tf.compat.v1.saved_model.load(session, ["serve"], case["dir"], input_map=input_map)
        fetches = {name: session.graph.get_tensor_by_name(info.name) for name, info in signature.outputs.items()}
        return session.run(fetches, {feeds[name]: arrays[key] for name, key in case["inputs"].items()})


errors, outputs = {}, {}
for name, case in cases.items():
    try:
        result = (call_session if case["mode"] == "session" else call_function)(case)
    except Exception as error:
        errors[name] = [type(error).__name__, getattr(error, "message", str(error))]
    else:
        outputs.update({f"{name}/{key}": value for key, value in result.items()})
with open(errors_path, "w") as f:
    json.dump({"errors": errors, "vq_keras_imported": "vq_keras" in sys.modules}, f)
np.savez(outputs_path, **outputs)
'''


def _images(n, height, width, seed=0, channels=3):
    return np.random.default_rng(seed).random((n, height, width, channels)).astype("float32")


def _trained(model, steps=2):
    model.compile(jit_compile=False)
    model.fit(_images(4 * steps, 16, 16, seed=1), batch_size=4, epochs=1, verbose=0)
    return model


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    keras.utils.set_random_seed(0)
    root = tmp_path_factory.mktemp("exports")
    vqvae, vqvae2 = _trained(VQVAE(**TINY)), _trained(VQVAE2(**TINY))
    vqvae.reconstruct(_images(1, 16, 16))  # eager: its losses are the model's current losses
    before = dict(losses=vqvae.losses, weights=[w.numpy() for w in vqvae.weights])
    exports = dict(
        root=root,
        vqvae=vqvae,
        vqvae2=vqvae2,
        any_size=export_saved_model(vqvae, root / "vqvae"),  # version 1
        size16=export_saved_model(vqvae, root / "vqvae", image_size=16),  # version 2
        vqvae2_any_size=export_saved_model(vqvae2, root / "vqvae2"),
    )
    after = dict(losses=vqvae.losses, weights=[w.numpy() for w in vqvae.weights])
    # Random priors: generate must match the library whatever the weights.
    prior = PixelCNNPrior(K, num_classes=CLASSES, grid_shape=(4, 4), **TINY_PRIOR)
    prior2 = HierarchicalPrior.from_autoencoder(vqvae2, num_attention_layers=1, num_heads=2, **TINY_PRIOR)
    transformer = TransformerPrior(K, grid_shape=(4, 4), num_classes=CLASSES, **TINY_TRANSFORMER)
    transformer2 = HierarchicalPrior.from_autoencoder(vqvae2, "transformer", grid_shape=(2, 3), **TINY_TRANSFORMER)
    maskgit = MaskGITPrior(K, grid_shape=(4, 4), num_classes=CLASSES, num_steps=4, **TINY_TRANSFORMER)
    # A hierarchy of two kinds: num_steps reaches the masked bottom level only.
    masked2 = HierarchicalPrior.from_autoencoder(vqvae2, "maskgit", grid_shape=(2, 3), **TINY_TRANSFORMER)
    mixed2 = HierarchicalPrior([transformer2.priors[0], masked2.priors[1]])
    # Trained with label dropout: generate takes a classifier-free guidance scale.
    guided = TransformerPrior(K, grid_shape=(4, 4), num_classes=CLASSES, label_dropout=0.1, **TINY_TRANSFORMER)
    guided_maskgit = MaskGITPrior(
        K, grid_shape=(4, 4), num_classes=CLASSES, label_dropout=0.1, num_steps=4, **TINY_TRANSFORMER
    )
    exports.update(
        prior=prior,
        prior2=prior2,
        transformer=transformer,
        transformer2=transformer2,
        maskgit=maskgit,
        mixed2=mixed2,
        guided=guided,
        guided_maskgit=guided_maskgit,
        generate=export_saved_model(vqvae, root / "generate", prior=prior),  # 16x16 from the prior's 4x4 grid
        generate2=export_saved_model(vqvae2, root / "generate2", prior=prior2, image_size=(16, 24)),
        generate_transformer=export_saved_model(vqvae, root / "generate_transformer", prior=transformer),
        generate2_transformer=export_saved_model(vqvae2, root / "generate2_transformer", prior=transformer2),
        generate_maskgit=export_saved_model(vqvae, root / "generate_maskgit", prior=maskgit),
        generate2_mixed=export_saved_model(vqvae2, root / "generate2_mixed", prior=mixed2),
        generate_guided=export_saved_model(vqvae, root / "generate_guided", prior=guided),
        generate_guided_maskgit=export_saved_model(vqvae, root / "generate_guided_maskgit", prior=guided_maskgit),
    )
    return dict(exports, before=before, after=after)


def _with_one(shape, dtype, index, value, fill=0):
    array = np.full(shape, fill, dtype)
    array[index] = value
    return array


def _requests(exports):
    """name -> (export, signature, mode, {input name: array}); the arrays by name for the subprocess."""
    x = _images(2, 16, 16, seed=2)
    out_of_range = x.copy()
    out_of_range[0, 0, 0, 0], out_of_range[1, 3, 2, 1] = -0.5, 1.5
    with_nan = x.copy()
    with_nan[1, 1, 1, 1] = np.nan
    codes = np.random.default_rng(3).integers(0, K, (2, 4, 4)).astype("int32")
    top = np.random.default_rng(4).integers(0, K, (2, 2, 2)).astype("int32")
    bottom = np.random.default_rng(5).integers(0, K, (2, 4, 4)).astype("int32")
    arrays = dict(
        x=x, x_uint8=(x * 255).astype("uint8"), x_12x20=_images(1, 12, 20, seed=6), codes=codes, top=top,
        bottom=bottom, x_18x16=_images(2, 18, 16), x_uint8_16x10=np.zeros((1, 16, 10, 3), "uint8"),
        x_1_channel=_images(1, 16, 16, channels=1), x_rank3=_images(1, 16, 16)[0], out_of_range=out_of_range,
        with_nan=with_nan, code_32=_with_one((2, 4, 4), "int32", (1, 2, 3), 32),
        code_minus_1=_with_one((2, 4, 4), "int32", (0, 0, 0), -1, fill=5), codes_rank4=codes[..., None],
        codes_2x0x4=np.zeros((2, 0, 4), "int32"), x_32=_images(1, 32, 32), codes_8x8=np.zeros((1, 8, 8), "int32"),
        x_16x12=_images(1, 16, 12), top_2x2=top, bottom_2x2=np.zeros((2, 2, 2), "int32"),
        bottom_1x4x4=np.zeros((1, 4, 4), "int32"), bottom_32=_with_one((2, 4, 4), "int32", (0, 1, 1), 32),
        top_rank2=top[0],
        x_rank5=x[None], x_scalar=np.float32(0.5), codes_rank2=codes[0], codes_scalar=np.int32(1),
        x_0=_images(0, 16, 16), x_uint8_0=np.zeros((0, 16, 16, 3), "uint8"), codes_0=np.zeros((0, 4, 4), "int32"),
        top_0=np.zeros((0, 2, 2), "int32"), bottom_0=np.zeros((0, 4, 4), "int32"),
        n0=np.int32(0), n1=np.int32(1), n3=np.int32(3), n_too_many=np.int32(1025), n_rank1=np.array([3], "int32"),
        seed7=np.int32(7), seed_negative=np.int32(-1), t1=np.float32(1.0), t07=np.float32(0.7), t0=np.float32(0.0),
        t_nan=np.float32(np.nan), labels3=np.array([2, 0, 1], "int32"), labels1=np.array([1], "int32"),
        labels_out=np.array([0, 3, 1], "int32"), labels_short=np.array([0, 1], "int32"),
        s0=np.int32(0), s3=np.int32(3), s_negative=np.int32(-2), k0=np.int32(0), k5=np.int32(5), k33=np.int32(33), k_negative=np.int32(-1), p1=np.float32(1.0),
        p08=np.float32(0.8), p0=np.float32(0.0), g1=np.float32(1.0), g3=np.float32(3.0), g0=np.float32(0.0),
        g_negative=np.float32(-0.5), g_inf=np.float32(np.inf),
    )
    generate_labels = dict(
        num="n3", seed="seed7", temperature="t07", top_k="k0", top_p="p1", num_steps="s0", labels="labels3"
    )
    generate2 = dict(num="n3", seed="seed7", temperature="t1", top_k="k0", top_p="p1", num_steps="s0")
    requests = {
        # Good requests.
        "default": ("any_size", "serving_default", "function", dict(images="x")),
        "reconstruct": ("any_size", "reconstruct", "function", dict(images="x")),
        "uint8": ("any_size", "reconstruct_uint8", "function", dict(images="x_uint8")),
        "encode": ("any_size", "encode", "function", dict(images="x")),
        "decode": ("any_size", "decode", "function", dict(codes="codes")),
        "other_size": ("any_size", "serving_default", "function", dict(images="x_12x20")),
        "size16_default": ("size16", "serving_default", "function", dict(images="x")),
        "size16_uint8": ("size16", "reconstruct_uint8", "session", dict(images="x_uint8")),
        "size16_encode": ("size16", "encode", "function", dict(images="x")),
        "size16_decode": ("size16", "decode", "session", dict(codes="codes")),
        "v2_default": ("vqvae2_any_size", "serving_default", "session", dict(images="x")),
        "v2_uint8": ("vqvae2_any_size", "reconstruct_uint8", "function", dict(images="x_uint8")),
        "v2_encode": ("vqvae2_any_size", "encode", "session", dict(images="x")),
        "v2_decode": ("vqvae2_any_size", "decode", "function", dict(top="top", bottom="bottom")),
        "generate": ("generate", "generate", "function", generate_labels),
        "generate_session": ("generate", "generate", "session", generate_labels),
        "generate_one": ("generate", "generate", "function", dict(generate_labels, num="n1", labels="labels1")),
        "v2_generate": ("generate2", "generate", "function", generate2),
        "v2_generate_session": ("generate2", "generate", "session", generate2),
        "generate_filtered": ("generate", "generate", "function", dict(generate_labels, top_k="k5", top_p="p08")),
        "v2_generate_filtered": ("generate2", "generate", "session", dict(generate2, top_k="k5", top_p="p08")),
        "transformer_generate": ("generate_transformer", "generate", "function", generate_labels),
        "transformer_generate_filtered": (
            "generate_transformer", "generate", "session", dict(generate_labels, top_k="k5", top_p="p08")
        ),
        "v2_transformer_generate": ("generate2_transformer", "generate", "session", generate2),
        "maskgit_generate": ("generate_maskgit", "generate", "function", generate_labels),
        "maskgit_generate_3_steps": (
            "generate_maskgit", "generate", "session", dict(generate_labels, num_steps="s3", top_k="k5")
        ),
        "v2_mixed_generate": ("generate2_mixed", "generate", "function", dict(generate2, num_steps="s3")),
        "v2_transformer_generate_filtered": (
            "generate2_transformer", "generate", "function", dict(generate2, top_k="k5", top_p="p08")
        ),
        "guided_generate": ("generate_guided", "generate", "function", dict(generate_labels, guidance="g3")),
        "guided_generate_off": ("generate_guided", "generate", "session", dict(generate_labels, guidance="g1")),
        "guided_generate_unconditional": (
            "generate_guided", "generate", "function", dict(generate_labels, guidance="g0", top_k="k5")
        ),
        "guided_maskgit_generate": (
            "generate_guided_maskgit", "generate", "session", dict(generate_labels, guidance="g3")
        ),
        # Bad requests.
        "size_not_multiple": ("any_size", "encode", "function", dict(images="x_18x16")),
        "uint8_size_not_multiple": ("any_size", "reconstruct_uint8", "function", dict(images="x_uint8_16x10")),
        "channels": ("any_size", "serving_default", "session", dict(images="x_1_channel")),
        "rank": ("any_size", "encode", "session", dict(images="x_rank3")),
        "out_of_range": ("any_size", "serving_default", "function", dict(images="out_of_range")),
        "nan": ("any_size", "encode", "function", dict(images="with_nan")),
        "code_too_large": ("any_size", "decode", "function", dict(codes="code_32")),
        "code_negative": ("any_size", "decode", "function", dict(codes="code_minus_1")),
        "codes_rank": ("any_size", "decode", "session", dict(codes="codes_rank4")),
        "codes_empty_grid": ("any_size", "decode", "function", dict(codes="codes_2x0x4")),
        "fixed_size": ("size16", "encode", "session", dict(images="x_32")),
        "fixed_grid": ("size16", "decode", "session", dict(codes="codes_8x8")),
        "v2_size_not_multiple": ("vqvae2_any_size", "encode", "function", dict(images="x_16x12")),
        "v2_grids_disagree": ("vqvae2_any_size", "decode", "function", dict(top="top_2x2", bottom="bottom_2x2")),
        "v2_batches_disagree": ("vqvae2_any_size", "decode", "function", dict(top="top_2x2", bottom="bottom_1x4x4")),
        "v2_bottom_too_large": ("vqvae2_any_size", "decode", "function", dict(top="top", bottom="bottom_32")),
        "v2_top_rank": ("vqvae2_any_size", "decode", "session", dict(top="top_rank2", bottom="bottom")),
        # Through tf.saved_model.load the signature is optimized for its traced shape: the checks must
        # still test the request's own rank and shape.
        "rank_function": ("any_size", "encode", "function", dict(images="x_rank3")),
        "rank5_function": ("any_size", "serving_default", "function", dict(images="x_rank5")),
        "scalar_images": ("any_size", "encode", "function", dict(images="x_scalar")),
        "channels_function": ("any_size", "serving_default", "function", dict(images="x_1_channel")),
        "fixed_size_function": ("size16", "encode", "function", dict(images="x_32")),
        "fixed_grid_function": ("size16", "decode", "function", dict(codes="codes_8x8")),
        "codes_rank_function": ("any_size", "decode", "function", dict(codes="codes_rank2")),
        "codes_scalar": ("any_size", "decode", "function", dict(codes="codes_scalar")),
        "v2_bottom_rank_function": ("vqvae2_any_size", "decode", "function", dict(top="top", bottom="codes_rank2")),
        "v2_top_scalar": ("vqvae2_any_size", "decode", "function", dict(top="codes_scalar", bottom="bottom")),
        "generate_none": ("generate", "generate", "function", dict(generate_labels, num="n0")),
        "generate_too_many": ("generate2", "generate", "session", dict(generate2, num="n_too_many")),
        "generate_num_rank": ("generate2", "generate", "function", dict(generate2, num="n_rank1")),
        "generate_seed": ("generate2", "generate", "function", dict(generate2, seed="seed_negative")),
        "generate_cold": ("generate2", "generate", "function", dict(generate2, temperature="t0")),
        "generate_nan_temperature": ("generate", "generate", "session", dict(generate_labels, temperature="t_nan")),
        "generate_label_out": ("generate", "generate", "function", dict(generate_labels, labels="labels_out")),
        "generate_top_k_too_large": ("generate2", "generate", "function", dict(generate2, top_k="k33")),
        "generate_top_k_negative": ("generate", "generate", "session", dict(generate_labels, top_k="k_negative")),
        "generate_top_p_zero": ("generate2", "generate", "function", dict(generate2, top_p="p0")),
        "generate_steps_autoregressive": ("generate", "generate", "function", dict(generate_labels, num_steps="s3")),
        "generate_steps_negative": ("generate_maskgit", "generate", "session", dict(generate_labels, num_steps="s_negative")),
        "generate_guidance_negative": (
            "generate_guided", "generate", "function", dict(generate_labels, guidance="g_negative")
        ),
        "generate_guidance_inf": ("generate_guided_maskgit", "generate", "session", dict(generate_labels, guidance="g_inf")),
        "generate_labels_short": ("generate", "generate", "session", dict(generate_labels, labels="labels_short")),
        # Empty batches: nothing to compute, refused with a clear message.
        "empty_batch": ("any_size", "serving_default", "function", dict(images="x_0")),
        "empty_batch_uint8": ("any_size", "reconstruct_uint8", "session", dict(images="x_uint8_0")),
        "empty_batch_encode": ("size16", "encode", "function", dict(images="x_0")),
        "empty_batch_decode": ("any_size", "decode", "function", dict(codes="codes_0")),
        "fixed_empty_batch_decode": ("size16", "decode", "session", dict(codes="codes_0")),
        "v2_empty_batch_decode": ("vqvae2_any_size", "decode", "session", dict(top="top_0", bottom="bottom_0")),
    }
    return requests, arrays


BAD_REQUESTS = {
    "generate_guidance_negative": "[generate expects guidance >= 0 and finite (1: no guidance; above 1 steers each "
    "image towards its label). Received guidance:] [-0.5]",
    "generate_guidance_inf": "[generate expects guidance >= 0 and finite (1: no guidance; above 1 steers each "
    "image towards its label). Received guidance:] [inf]",
    "generate_none": "[generate expects num (images to draw) in [1, 1024]; draw more with several requests and "
    "other seeds. Received num:] [0]",
    "generate_too_many": "[generate expects num (images to draw) in [1, 1024]; draw more with several requests "
    "and other seeds. Received num:] [1025]",
    "generate_num_rank": "[generate expects num to be a scalar. Received rank:] [1]",
    "generate_seed": "[generate expects seed in [0, 2**31). Received seed:] [-1]",
    "generate_cold": "[generate expects temperature > 0 and finite (1 samples the prior as trained). "
    "Received temperature:] [0]",
    "generate_nan_temperature": "[generate expects temperature > 0 and finite (1 samples the prior as trained). "
    "Received temperature:] [nan]",
    "generate_label_out": "[generate expects labels in [0, 3) (the classes of the prior). Received labels:] [0 3 1]",
    "generate_top_k_too_large": "[generate expects top_k in [0, 32] (0: no filter; else draw among the top_k most "
    "probable codes). Received top_k:] [33]",
    "generate_top_k_negative": "[generate expects top_k in [0, 32] (0: no filter; else draw among the top_k most "
    "probable codes). Received top_k:] [-1]",
    "generate_top_p_zero": "[generate expects top_p in (0, 1] (1: no filter; else nucleus sampling). Received "
    "top_p:] [0]",
    "generate_steps_autoregressive": "[generate expects num_steps 0: this prior draws one code per step in raster "
    "order; num_steps is the number of parallel steps of a masked prior (MaskGITPrior). Received num_steps:] [3]",
    "generate_steps_negative": "[generate expects num_steps >= 0 (0: the num_steps the prior was built with). "
    "Received num_steps:] [-2]",
    "generate_labels_short": "[generate expects one label per image: labels of shape (num,). Received num and "
    "labels shape:] [3] [2]",
    "size_not_multiple": "[encode expects image height and width to be positive multiples of 4 (the model "
    "downsamples by 4; e.g. 16x16). Crop or resize the images. Received shape:] [2 18 16 3]",
    "uint8_size_not_multiple": "[reconstruct_uint8 expects image height and width to be positive multiples of 4 "
    "(the model downsamples by 4; e.g. 16x16). Crop or resize the images. Received shape:] [1 16 10 3]",
    "channels": "[reconstruct expects 3-channel images (batch, height, width, 3). Received shape:] [1 16 16 1]",
    "rank": "[encode expects images of shape (batch, height, width, 3). Received rank:] [3]",
    "out_of_range": "[reconstruct expects float32 images scaled to [0, 1] (values are never clipped). Divide "
    "uint8 images by 255, or send them as uint8 to reconstruct_uint8. Received min and max:] [-0.5] [1.5]",
    "nan": "[encode expects float32 images scaled to [0, 1] (values are never clipped).",
    "code_too_large": "[decode expects codes (int32 code indices) in [0, 32) (num_embeddings=32). "
    "Received min and max:] [0] [32]",
    "code_negative": "[decode expects codes (int32 code indices) in [0, 32) (num_embeddings=32). "
    "Received min and max:] [-1] [5]",
    "codes_rank": "[decode expects codes of shape (batch, height, width). Received rank:] [4]",
    "codes_empty_grid": "[decode expects codes of shape (batch, height, width) with height and width at least 1. "
    "Received shape:] [2 0 4]",
    "fixed_size": "[encode expects 16x16 images (exported with image_size=(16, 16)). Resize the images, or "
    "export with image_size=None to accept any multiple of 4. Received shape:] [1 32 32 3]",
    "fixed_grid": "[decode expects codes of shape (batch, 4, 4) (exported with image_size=(16, 16)). "
    "Received shape:] [1 8 8]",
    "v2_size_not_multiple": "[encode expects image height and width to be positive multiples of 8 (the model "
    "downsamples by 8; e.g. 32x32). Crop or resize the images. Received shape:] [1 16 12 3]",
    "v2_grids_disagree": "[decode expects code grids of one batch of images: bottom must have the batch size of "
    "top and 2x its height and 2x its width (e.g. top 4x4, bottom 8x8 for 32x32 images). Received shapes of "
    "top and bottom:] [2 2 2] [2 2 2]",
    "v2_batches_disagree": "[decode expects code grids of one batch of images: bottom must have the batch size "
    "of top and 2x its height and 2x its width (e.g. top 4x4, bottom 8x8 for 32x32 images). Received shapes "
    "of top and bottom:] [2 2 2] [1 4 4]",
    "v2_bottom_too_large": "[decode expects bottom (int32 code indices) in [0, 32) (num_embeddings=32). "
    "Received min and max:] [0] [32]",
    "v2_top_rank": "[decode expects top of shape (batch, height, width). Received rank:] [2]",
    "rank_function": "[encode expects images of shape (batch, height, width, 3). Received rank:] [3]",
    "rank5_function": "[reconstruct expects images of shape (batch, height, width, 3). Received rank:] [5]",
    "scalar_images": "[encode expects images of shape (batch, height, width, 3). Received rank:] [0]",
    "channels_function": "[reconstruct expects 3-channel images (batch, height, width, 3). Received shape:] "
    "[1 16 16 1]",
    "fixed_size_function": "[encode expects 16x16 images (exported with image_size=(16, 16)). Resize the images, "
    "or export with image_size=None to accept any multiple of 4. Received shape:] [1 32 32 3]",
    "fixed_grid_function": "[decode expects codes of shape (batch, 4, 4) (exported with image_size=(16, 16)). "
    "Received shape:] [1 8 8]",
    "codes_rank_function": "[decode expects codes of shape (batch, height, width). Received rank:] [2]",
    "codes_scalar": "[decode expects codes of shape (batch, height, width). Received rank:] [0]",
    "v2_bottom_rank_function": "[decode expects bottom of shape (batch, height, width). Received rank:] [2]",
    "v2_top_scalar": "[decode expects top of shape (batch, height, width). Received rank:] [0]",
    "empty_batch": "[reconstruct expects at least one image: (batch, height, width, 3) with batch at least 1. "
    "Received shape:] [0 16 16 3]",
    "empty_batch_uint8": "[reconstruct_uint8 expects at least one image: (batch, height, width, 3) with batch at "
    "least 1. Received shape:] [0 16 16 3]",
    "empty_batch_encode": "[encode expects at least one image: (batch, 16, 16, 3) with batch at least 1. "
    "Received shape:] [0 16 16 3]",
    "empty_batch_decode": "[decode expects at least one code grid: codes of shape (batch, height, width) with "
    "batch at least 1. Received shape:] [0 4 4]",
    "fixed_empty_batch_decode": "[decode expects at least one code grid: codes of shape (batch, height, width) "
    "with batch at least 1. Received shape:] [0 4 4]",
    "v2_empty_batch_decode": "[decode expects at least one code grid: top of shape (batch, height, width) with "
    "batch at least 1. Received shape:] [0 2 2]",
}


def _saved_model_cli():
    for candidate in (Path(sys.executable).parent / "saved_model_cli", shutil.which("saved_model_cli")):
        if candidate and Path(candidate).exists():
            return str(candidate)
    return None


@pytest.fixture(scope="module")
def served(exports, tmp_path_factory):
    """Runs the TensorFlow-only subprocess and saved_model_cli (in parallel) on the exports."""
    work = tmp_path_factory.mktemp("served")
    requests, arrays = _requests(exports)
    cases = {
        name: dict(dir=str(exports[export]), signature=signature, mode=mode, inputs=inputs)
        for name, (export, signature, mode, inputs) in requests.items()
    }
    (work / "cases.json").write_text(json.dumps(cases))
    np.savez(work / "inputs.npz", **arrays)
    (work / "serve.py").write_text(SERVE_WITH_TENSORFLOW_ONLY)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # vq_keras is not importable from here
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    files = [str(work / name) for name in ("cases.json", "inputs.npz", "errors.json", "outputs.npz")]
    processes = {
        "serve": subprocess.Popen(
            [sys.executable, str(work / "serve.py"), *files], cwd=work, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
    }
    cli = _saved_model_cli()
    if cli:
        for name in ("size16", "vqvae2_any_size"):
            processes[name] = subprocess.Popen(
                [cli, "show", "--dir", str(exports[name]), "--all"], cwd=work, env=env, text=True,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )
    finished = {name: process.communicate(timeout=300) for name, process in processes.items()}
    for name, process in processes.items():
        assert process.returncode == 0, f"{name}: {finished[name][1][-3000:]}"
    with open(files[2]) as f:
        errors = json.load(f)
    with np.load(files[3]) as outputs:
        outputs = dict(outputs)
    return dict(
        requests=requests, arrays=arrays, outputs=outputs, **errors,
        cli={name: stdout for name, (stdout, _) in finished.items() if name != "serve"},
    )


@pytest.mark.large
def test_versions_count_up_from_1(exports):
    assert exports["any_size"] == str(exports["root"] / "vqvae" / "1")
    assert exports["size16"] == str(exports["root"] / "vqvae" / "2")
    assert sorted(os.listdir(exports["root"] / "vqvae")) == ["1", "2"]  # no temporary folders left
    assert sorted(os.listdir(exports["any_size"])) == ["assets", "fingerprint.pb", "saved_model.pb", "variables"]


@pytest.mark.large
def test_the_serving_subprocess_never_imported_vq_keras(served):
    assert served["vq_keras_imported"] is False


@pytest.mark.large
def test_signatures_match_the_keras_model(exports, served):
    requests, arrays, outputs = served["requests"], served["arrays"], served["outputs"]
    good = [name for name in requests if name not in BAD_REQUESTS]
    assert not {name: served["errors"][name] for name in good if name in served["errors"]}
    for name in good:
        export, signature, _, inputs = requests[name]
        model = exports["vqvae2" if export.startswith(("vqvae2", "generate2")) else "vqvae"]
        received = {key.split("/", 1)[1]: value for key, value in outputs.items() if key.startswith(name + "/")}
        if signature == "generate":
            _check_generated(exports, export, model, {key: arrays[value] for key, value in inputs.items()}, received)
            continue
        if signature == "encode":
            expected = dict(zip(vq_keras.export.code_grid_names(model), model.encode_levels(arrays[inputs["images"]])))
            assert set(received) == set(expected)
            for grid, codes in expected.items():
                assert received[grid].dtype == np.int32
                np.testing.assert_array_equal(received[grid], np.asarray(codes), err_msg=f"{name}/{grid}")
            continue
        if signature == "decode":
            grids = [arrays[inputs[grid]] for grid in vq_keras.export.code_grid_names(model)]
            expected = model.decode_levels(grids)
        elif signature == "reconstruct_uint8":
            expected = model.reconstruct(arrays[inputs["images"]].astype("float32") / 255.0)
        else:
            expected = model.reconstruct(arrays[inputs["images"]])
        assert set(received) == {"images"}
        assert received["images"].dtype == np.float32 and received["images"].shape == tuple(expected.shape)
        assert 0.0 <= received["images"].min() and received["images"].max() <= 1.0
        assert np.abs(received["images"] - np.asarray(expected)).max() <= 1e-5, name


GENERATE_PRIORS = {
    "generate": "prior", "generate2": "prior2", "generate_transformer": "transformer",
    "generate2_transformer": "transformer2", "generate_maskgit": "maskgit", "generate2_mixed": "mixed2",
    "generate_guided": "guided", "generate_guided_maskgit": "guided_maskgit",
}


def _check_generated(exports, export, model, request, received):
    """The served images and codes are those of the library's generate for the same request."""
    prior = exports[GENERATE_PRIORS[export]]
    arguments = dict(seed=int(request["seed"]), temperature=float(request["temperature"]))
    # The signature's "off" values stand for the library's None.
    arguments["top_k"] = int(request["top_k"]) or None
    arguments["top_p"] = None if float(request["top_p"]) == 1.0 else float(request["top_p"])
    arguments["num_steps"] = int(request["num_steps"]) or None
    if "guidance" in request:
        arguments["guidance"] = None if float(request["guidance"]) == 1.0 else float(request["guidance"])
    if "labels" in request:
        arguments["labels"] = request["labels"]
    image_size = (16, 24) if export == "generate2" else None
    num = int(request["num"])
    codes = prior.sample(num, **arguments, **({"image_size": image_size} if image_size else {}))
    codes = codes if isinstance(codes, list) else [codes]
    images = generate(model, prior, num, image_size=image_size, **arguments).numpy()
    assert set(received) == {"images", *vq_keras.export.code_grid_names(model)}
    for name, expected in zip(vq_keras.export.code_grid_names(model), codes):
        assert received[name].dtype == np.int32
        np.testing.assert_array_equal(received[name], expected.numpy(), err_msg=f"{export}/{name}")
    assert received["images"].dtype == np.float32 and received["images"].shape == images.shape
    assert np.abs(received["images"] - images).max() <= 1e-5, export


@pytest.mark.parametrize("request_name", sorted(BAD_REQUESTS))
@pytest.mark.large
def test_bad_requests_fail_in_the_graph_with_a_clear_message(served, request_name):
    error_type, message = served["errors"][request_name]
    assert error_type == "InvalidArgumentError"
    assert "assertion failed: " + BAD_REQUESTS[request_name] in message


def _signatures_in_cli_output(text):
    """{signature: {"inputs"|"outputs": {name: (dtype, shape)}}} from `saved_model_cli show --all`."""
    signatures = {}
    for section in text.split("signature_def['")[1:]:
        name = section.split("'", 1)[0]
        signatures[name] = {"inputs": {}, "outputs": {}}
        for kind, tensor, dtype, shape in re.findall(
            r"(inputs|outputs)\['(\w+)'\] tensor_info:\s+dtype: (\w+)\s+shape: (\([^)]*\))", section
        ):
            signatures[name][kind][tensor] = (dtype, shape)
    return signatures


@pytest.mark.large
def test_saved_model_cli_lists_the_signatures(served):
    if not served["cli"]:
        pytest.skip("saved_model_cli is not installed")
    images16 = ("DT_FLOAT", "(-1, 16, 16, 3)")
    assert _signatures_in_cli_output(served["cli"]["size16"]) == {
        "__saved_model_init_op": {"inputs": {}, "outputs": {}},
        "serving_default": {"inputs": {"images": images16}, "outputs": {"images": images16}},
        "reconstruct": {"inputs": {"images": images16}, "outputs": {"images": images16}},
        "reconstruct_uint8": {"inputs": {"images": ("DT_UINT8", "(-1, 16, 16, 3)")}, "outputs": {"images": images16}},
        "encode": {"inputs": {"images": images16}, "outputs": {"codes": ("DT_INT32", "(-1, 4, 4)")}},
        "decode": {"inputs": {"codes": ("DT_INT32", "(-1, 4, 4)")}, "outputs": {"images": images16}},
    }
    images = ("DT_FLOAT", "(-1, -1, -1, 3)")
    grids = {"top": ("DT_INT32", "(-1, -1, -1)"), "bottom": ("DT_INT32", "(-1, -1, -1)")}
    signatures = _signatures_in_cli_output(served["cli"]["vqvae2_any_size"])
    assert signatures["serving_default"] == {"inputs": {"images": images}, "outputs": {"images": images}}
    assert signatures["encode"] == {"inputs": {"images": images}, "outputs": grids}
    assert signatures["decode"] == {"inputs": grids, "outputs": {"images": images}}
    assert signatures["reconstruct_uint8"]["inputs"] == {"images": ("DT_UINT8", "(-1, -1, -1, 3)")}
    assert "Method name is: tensorflow/serving/predict" in served["cli"]["vqvae2_any_size"]


@pytest.mark.large
def test_the_graphs_hold_no_python_functions(exports):
    for name in ("any_size", "size16", "vqvae2_any_size", *GENERATE_PRIORS):
        proto = saved_model_pb2.SavedModel()
        proto.ParseFromString((Path(exports[name]) / "saved_model.pb").read_bytes())
        ops = set()
        for meta_graph in proto.meta_graphs:
            ops.update(node.op for node in meta_graph.graph_def.node)
            for function in meta_graph.graph_def.library.function:
                ops.update(node.op for node in function.node_def)
        assert {"Conv2D", "ArgMin", "GatherV2", "Assert"} <= ops, name  # the walk sees the model's ops
        assert not ops & PY_FUNC_OPS, name
        if name.startswith("generate"):  # the whole sampling loop is in the graph
            assert {"StatelessWhile", "While"} & ops and "StatelessMultinomial" in ops, name


def _node_name(reference):
    return reference.lstrip("^").split(":")[0]


def _descendants(nodes, roots):
    consumers = {}
    for node in nodes:
        for reference in node.input:
            consumers.setdefault(_node_name(reference), []).append(node.name)
    seen, frontier = set(), list(roots)
    while frontier:
        for consumer in consumers.get(frontier.pop(), []):
            if consumer not in seen:
                seen.add(consumer)
                frontier.append(consumer)
    return seen


@pytest.mark.large
def test_every_request_check_waits_for_the_rank_checks(exports):
    # A reduction over a request uses the signature's static rank, so a request of another rank
    # must fail in the rank check first; otherwise which error wins is a race between ops.
    checked = 0
    for name in ("any_size", "size16", "vqvae2_any_size", "generate", "generate2"):
        proto = saved_model_pb2.SavedModel()
        proto.ParseFromString((Path(exports[name]) / "saved_model.pb").read_bytes())
        for function in proto.meta_graphs[0].graph_def.library.function:
            nodes = {node.name: node for node in function.node_def}
            rank_messages = {
                node.name for node in nodes.values()
                if node.op == "Const" and any(b"Received rank:" in v for v in node.attr["value"].tensor.string_val)
            }
            rank_checks = [
                node.name for node in nodes.values()
                if node.op == "Assert" and rank_messages & {_node_name(r) for r in node.input}
            ]
            if not rank_checks:
                continue
            after_all_checks = set.intersection(*(_descendants(nodes.values(), [c]) for c in rank_checks))
            arguments = {arg.name for arg in function.signature.input_arg if arg.type != types_pb2.DT_RESOURCE}
            for node in nodes.values():
                reads_a_request = arguments & {_node_name(r) for r in node.input}
                if reads_a_request and not node.name.startswith(vq_keras.export.RANK_SCOPE):
                    assert node.name in after_all_checks, (name, function.signature.name, node.name, node.op)
            checked += 1
    assert checked >= 3 * 4  # every signature of every export


@pytest.mark.large
def test_export_leaves_the_keras_model_as_it_was(exports):
    before, after = exports["before"], exports["after"]
    assert len(before["losses"]) == 1  # VectorQuantizerEMA's commitment loss, from the eager call
    assert after["losses"] == []  # every call clears them; the traced ones left no graph tensors behind
    for old, new in zip(before["weights"], after["weights"], strict=True):  # no EMA codebook update
        np.testing.assert_array_equal(old, new)


# The atomic write. A fake archive stands in for the SavedModel where only the folders matter.


class _FakeArchive:
    def __init__(self, content, fail_after_writing=None):
        self.content, self.fail_after_writing = content, fail_after_writing

    def write_out(self, path, options=None, verbose=True):
        Path(path, "saved_model.pb").write_text(self.content)
        if self.fail_after_writing:
            raise self.fail_after_writing


@pytest.fixture
def fake_archive(monkeypatch):
    archives = []

    def use(content, fail_after_writing=None):
        archives.append(_FakeArchive(content, fail_after_writing))

    monkeypatch.setattr(vq_keras.export.saved_model, "_build_archive", lambda model, image_size, generator: archives.pop(0))
    return use


def _version(base, version, content):
    Path(base, version).mkdir(parents=True)
    Path(base, version, "saved_model.pb").write_text(content)


def test_a_failure_half_way_through_writing_leaves_no_folder(tmp_path, monkeypatch):
    base = tmp_path / "exports"
    _version(base, "1", "old")

    def broken_save(obj, export_dir, signatures=None, options=None):
        Path(export_dir, "variables").mkdir()
        Path(export_dir, "saved_model.pb").write_bytes(b"\x08\x01")  # the first bytes of a SavedModel
        raise OSError("No space left on device (simulated)")

    # Keras's export imports tensorflow.saved_model.experimental, and that first import rebinds
    # tf.saved_model to a new module object, dropping a patch made on the old one. Import it first, so
    # the test does not depend on an earlier test having exported.
    importlib.import_module("tensorflow.saved_model.experimental")
    monkeypatch.setattr(tf.saved_model, "save", broken_save)
    with pytest.raises(OSError) as error:
        export_saved_model(VQVAE(**TINY), base)
    assert str(error.value).startswith(
        f"[Errno 28] No space left on the disk of {str(base)!r} while the SavedModel was written: nothing was "
        "published (the partial copy was removed) and the existing versions are as they were."
    )
    assert os.listdir(base) == ["1"]
    assert Path(base, "1", "saved_model.pb").read_text() == "old"


@pytest.mark.large
def test_a_full_disk_during_an_export_is_a_clear_error_and_loses_nothing(small_disk, tmp_path):
    model = VQVAE(**TINY)
    model.build_if_needed()
    model.save(tmp_path / "model.keras")
    _version(small_disk, "1", "old")
    (small_disk / "other_files").write_bytes(bytes(900_000))  # about 100 KB left: less than a SavedModel
    result = subprocess.run(
        [sys.executable, "-m", "training.export", f"--autoencoder={tmp_path / 'model.keras'}",
         f"--export_base={small_disk}"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert f"error: No space left on the disk of {str(small_disk)!r} while the SavedModel was written" in result.stderr
    assert sorted(os.listdir(small_disk)) == ["1", "other_files"]
    assert Path(small_disk, "1", "saved_model.pb").read_text() == "old"


def test_a_failure_removes_the_export_base_it_created(tmp_path, fake_archive):
    fake_archive("new", fail_after_writing=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        export_saved_model(VQVAE(**TINY), tmp_path / "exports")
    assert os.listdir(tmp_path) == []


def test_next_version_skips_temporary_and_other_folders(tmp_path, fake_archive):
    base = tmp_path / "exports"
    for version in ("1", "5"):
        _version(base, version, "old")
    Path(base, ".tmp-9-abc").mkdir()  # a crashed export; TF Serving ignores it, and so do we
    Path(base, "notes").mkdir()
    Path(base, "7").write_text("a file, not a version")
    fake_archive("new")
    assert export_saved_model(VQVAE(**TINY), base) == str(base / "6")
    assert sorted(os.listdir(base)) == [".tmp-9-abc", "1", "5", "6", "7", "notes"]
    assert Path(base, "6", "saved_model.pb").read_text() == "new"


def test_the_next_export_deletes_what_a_killed_export_left(tmp_path, fake_archive):
    import socket
    import subprocess
    import sys

    base = tmp_path / "exports"
    dead_pid = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                                  capture_output=True, text=True).stdout)
    left = base / f".tmp-{dead_pid}@{socket.gethostname()}-{'0' * 32}-1"  # kill -9 during an export
    (left / "variables").mkdir(parents=True)
    fake_archive("new")
    assert export_saved_model(VQVAE(**TINY), base) == str(base / "1")
    assert sorted(os.listdir(base)) == ["1"]


def test_an_existing_version_is_kept_unless_overwrite(tmp_path, fake_archive):
    base = tmp_path / "exports"
    _version(base, "3", "old")
    with pytest.raises(ValueError) as error:
        export_saved_model(VQVAE(**TINY), base, version=3)
    assert str(error.value) == (
        f"Version 3 already exists at {str(base / '3')!r}; export_saved_model never replaces a version unless "
        "asked. Pass version=None for the next free version, another version, or overwrite=True to replace it."
    )
    assert os.listdir(base) == ["3"] and Path(base, "3", "saved_model.pb").read_text() == "old"
    fake_archive("new")
    assert export_saved_model(VQVAE(**TINY), base, version=3, overwrite=True) == str(base / "3")
    assert os.listdir(base) == ["3"] and Path(base, "3", "saved_model.pb").read_text() == "new"


def test_a_failed_overwrite_keeps_the_old_version(tmp_path, fake_archive, monkeypatch):
    base = tmp_path / "exports"
    _version(base, "1", "old")
    rename = os.rename

    def rename_failing_for_new_versions(source, destination):
        if os.path.basename(source).startswith(".tmp-"):
            raise OSError("rename failed (simulated)")
        rename(source, destination)

    monkeypatch.setattr(os, "rename", rename_failing_for_new_versions)
    fake_archive("new")
    with pytest.raises(OSError, match=r"rename failed \(simulated\)"):
        export_saved_model(VQVAE(**TINY), base, version=1, overwrite=True)
    assert os.listdir(base) == ["1"] and Path(base, "1", "saved_model.pb").read_text() == "old"


def test_argument_errors(tmp_path):
    model = VQVAE(**TINY)
    with pytest.raises(ValueError) as error:
        export_saved_model(model, tmp_path, image_size=30)
    assert str(error.value) == (
        "export_saved_model expects image_size to be None, an int or (height, width), with height and width "
        "positive multiples of 4 (VQVAE downsamples images by 4; e.g. 16 or (16, 32)). Received: "
        "image_size=30. Pass image_size=None to accept any multiple of 4."
    )
    with pytest.raises(ValueError, match=r"of 8 \(VQVAE2 downsamples images by 8.*Received: image_size=\(16, 20\)"):
        export_saved_model(VQVAE2(**TINY), tmp_path, image_size=(16, 20))
    for version in (0, "2", True, 1.0):
        with pytest.raises(ValueError, match=re.escape(
            "export_saved_model expects version to be a positive integer (TF Serving's version folder name) "
            f"or None for the next free version. Received: version={version!r}"
        )):
            export_saved_model(model, tmp_path, version=version)
    with pytest.raises(ValueError, match=r"expects overwrite to be True or False. Received: overwrite='yes'"):
        export_saved_model(model, tmp_path, overwrite="yes")
    with pytest.raises(ValueError, match=r"expects export_base to be a folder path .* Received: export_base=''"):
        export_saved_model(model, "")
    Path(tmp_path, "file").write_text("")
    with pytest.raises(ValueError) as error:
        export_saved_model(model, tmp_path / "file")
    assert str(error.value) == (
        "export_saved_model expects export_base to be a folder it can write (TF Serving's model base path). "
        f"Received: export_base={str(tmp_path / 'file')!r}: {tmp_path / 'file'} is a file, not a folder. Pass a "
        "folder you can write to."
    )
    with pytest.raises(ValueError, match=r"Received: export_base='.*file/exports': .*file is a file, not a folder"):
        export_saved_model(model, tmp_path / "file" / "exports")
    with pytest.raises(TypeError) as error:
        export_saved_model(keras.Sequential([keras.layers.Dense(1)]), tmp_path)
    assert str(error.value) == (
        "export_saved_model expects a vq_keras autoencoder (a VQModel such as VQVAE or VQVAE2, e.g. "
        "keras.saving.load_model('model.keras')). Received: model of type Sequential. "
        "A prior is exported beside its autoencoder: export_saved_model(autoencoder, base, prior=prior)."
    )
    assert os.listdir(tmp_path) == ["file"]  # nothing written


def test_a_version_is_readable_as_the_umask_allows(tmp_path):
    # A server running as another user of the group (TF Serving in a container) must read every file.
    old = os.umask(0o027)
    try:
        version = Path(export_saved_model(VQVAE(**TINY), tmp_path / "exports"))
    finally:
        os.umask(old)
    modes = {p.relative_to(version).as_posix(): p.stat().st_mode & 0o777 for p in [version, *version.rglob("*")]}
    assert "variables/variables.index" in modes
    for name, mode in modes.items():
        expected = 0o750 if (version / name).is_dir() else 0o640
        assert mode == expected, f"{name}: mode {oct(mode)}, expected {oct(expected)} under umask 027"
