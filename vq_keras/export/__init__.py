"""SavedModels for TF Serving: `export_saved_model(model, export_base)`.

The exported SavedModel has these signatures (endpoints), every one with a
dynamic batch axis. C is `model.num_channels`, H x W the image size (fixed by
`image_size`, or any positive multiple of `model.downsampling` by default), and
the code grid names are `model.level_names` ("top", "bottom", ... for VQVAE2,
top first) or "codes" for VQVAE's single grid.

    serving_default     float32 images in [0, 1]    -> float32 images in [0, 1]
      (= reconstruct)   input "images" (N, H, W, C)    output "images" (N, H, W, C)
    reconstruct_uint8   uint8 images in [0, 255]    -> float32 images in [0, 1]
                        input "images" (N, H, W, C)    output "images" (N, H, W, C)
    encode              float32 images in [0, 1]    -> int32 code grids
                        input "images" (N, H, W, C)    one output per grid ("codes", or
                                                       "top", "bottom", ...)
    decode              int32 code grids            -> float32 images in [0, 1]
                        one input per grid ("codes",   output "images" (N, H, W, C)
                        or "top", "bottom", ...)
    generate            int32 scalars "num", "seed"; -> float32 images in [0, 1]
      (with a prior)    float32 scalar "temperature";  "images" (num, H, W, C), and the
                        int32 scalar "top_k" (0: off), int32 code grids of every level
                        float32 scalar "top_p" (1: off); ("codes", or "top", "bottom", ...)
                        int32 scalar "num_steps" (0:
                        the prior's; masked priors);
                        int32 "labels" (num,) for a
                        class-conditional prior;
                        float32 scalar "guidance"
                        (1: off) for a prior trained
                        with label_dropout

`generate` (exported when a prior is given) draws new images: the prior's
cached sampling loop, every level top-down, then the decoder, all in the
graph. For the same num, seed, temperature, top_k, top_p, num_steps and labels
it returns the images of `vq_keras.zoo.generate(model, prior, num, seed=seed,
...)` (top_k 0, top_p 1, num_steps 0 and guidance 1 stand for None). Its image size is
`image_size`, else the one the prior's grid_shape implies. num must be in
[1, MAX_GENERATE_NUM], seed in [0, 2**31), temperature > 0 and finite, top_k
in [0, num_embeddings], top_p in (0, 1], num_steps >= 0 (and 0 unless a level
is a masked prior: autoregressive priors draw one code per step), labels
in [0, num_classes), one per image, and guidance >= 0 and finite.

Bad requests fail inside the graph (`InvalidArgumentError`) however the
signature is run (`tf.saved_model.load`, or a session fed with the request as
TF Serving runs it, which need not check the request's shape against the
signature's), with a message that names the signature and what it expected:
a tensor of the wrong rank (read from the request itself: a signature called
as a function is optimized for its declared shape), an empty batch, a wrong
channel count, an image size that is not
the exported one (or not a multiple of `model.downsampling`), float images
outside [0, 1] or NaN (never clipped), codes outside [0, num_embeddings) (a
plain gather on a GPU would silently return zeros), and code grids whose sizes
do not fit one image size (e.g. VQVAE2's bottom grid must be twice the top
grid) or whose batch sizes differ.

An empty batch (N = 0 images or code grids) is refused, not answered with an
empty result: there is nothing to compute, TF Serving's batching never sends
one, so it is a client bug that an empty answer would hide (and the CPU
convolutions fail on it with an unrelated message).

The graph holds only TensorFlow ops: TF Serving (or any TensorFlow program)
loads it without vq_keras. It is for inference only: the quantizer's
straight-through gradient (`tf.custom_gradient`) is not saved, so a reloaded
SavedModel cannot be trained; keep `.keras` files for that.
"""

from vq_keras.export.endpoints import SINGLE_GRID_NAME, code_grid_names
from vq_keras.export.generate_signature import MAX_GENERATE_NUM
from vq_keras.export.requests import RANK_SCOPE
from vq_keras.export.saved_model import export_saved_model

__all__ = ["MAX_GENERATE_NUM", "RANK_SCOPE", "SINGLE_GRID_NAME", "code_grid_names", "export_saved_model"]
