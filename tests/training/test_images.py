"""Your own images: folders and TFDS data sets of any size and shape, streamed (issue 13)."""

import io
import re
import socket
import struct
import time

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tests.training.conftest import photo_folder, run_module
from training.data import folder, load_image_data, naming_bad_images, read_splits, tfds_reader
from training.data.images import check_batch_fits_memory, parse_image_size, shape_image
from training.data.pipeline import SAMPLE_PATH, VARIANCE_SAMPLE
from training.errors import UsageError


def _resized(image, size):
    """The reference resize: tf.image.resize, antialiased, rounded to uint8."""
    return np.clip(np.round(tf.image.resize(np.asarray(image, np.float32), size, antialias=True).numpy()), 0, 255)


def test_image_size_flag_values():
    assert parse_image_size(None) is None and parse_image_size("64") == (64, 64)
    assert parse_image_size("64x48") == (64, 48)
    for wrong in ("0", "64x", "x", "-3", "6.5"):
        with pytest.raises(UsageError, match=r"--image_size expects N or HxW with positive whole numbers"):
            parse_image_size(wrong)


def test_an_image_size_whose_batch_cannot_fit_in_memory_is_refused_before_any_image_is_read():
    check_batch_fits_memory((64, 64), 3, 32, memory_bytes=2**30)  # 1.5 MiB: fine
    with pytest.raises(UsageError) as error:
        check_batch_fits_memory((100_000, 100_000), 3, 32, memory_bytes=24 * 2**30)
    assert str(error.value) == (
        "--image_size=100000 with --batch_size=32: one batch of images alone takes 3,576.3 GiB as float32, more "
        "than a quarter of this machine's 24 GiB of memory (the model's activations need several times more). "
        "Pass a smaller --image_size (e.g. 64 or 256) or --batch_size."
    )
    with pytest.raises(UsageError, match=r"^--image_size=100000 with --batch_size=32: one batch"):
        load_image_data("folder:/no/such/folder", batch_size=32, image_size="100000")  # before the folder is read


def test_shorter_side_resize_and_centre_crop_equal_explicit_slicing():
    image = np.random.default_rng(0).integers(0, 256, (30, 50, 3), np.uint8)
    # N: the shorter side 30 -> 16, the longer 50 * 16 / 30 = 26.7 -> 27; the centre 16 columns start at 5
    np.testing.assert_array_equal(shape_image(image, (16, 16)), _resized(image, (16, 27))[:, 5:21])
    # HxW = 16x24: the scale that covers both sides is max(16/30, 24/50) = 0.533 -> 16x27, columns 1..24
    np.testing.assert_array_equal(shape_image(image, (16, 24)), _resized(image, (16, 27))[:, 1:25])
    # upscaling a square image: no crop
    np.testing.assert_array_equal(shape_image(image[:, :30], (64, 64)), _resized(image[:, :30], (64, 64)))
    np.testing.assert_array_equal(shape_image(image, (30, 50)), image)  # already that size: untouched


def test_random_crop_and_flip_follow_the_seed_and_the_position():
    image = np.random.default_rng(1).integers(0, 256, (20, 40, 3), np.uint8)
    covered = _resized(image, (16, 32))
    windows = [covered[:, x:x + 16] for x in range(17)]
    mirrored = [window[:, ::-1] for window in windows]

    def augmented(seed, index):
        return shape_image(image, (16, 16), (seed, tf.constant(index, tf.int64), True, True)).numpy()

    results = [augmented(0, index) for index in range(12)]
    for result in results:  # each is one of the windows, mirrored or not
        assert any(np.array_equal(result, w) for w in windows + mirrored)
    np.testing.assert_array_equal(augmented(0, 5), results[5])  # the same seed and position: the same crop
    assert len({r.tobytes() for r in results}) > 4
    assert not all(np.array_equal(augmented(1, i), results[i]) for i in range(12))


def _encoded(array, format, **options):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format, **options)
    return buffer.getvalue()


def test_every_format_and_mode_decodes_to_the_models_channels(tmp_path):
    rgb = np.random.default_rng(2).integers(0, 256, (9, 13, 3), np.uint8)
    rgba = np.concatenate([rgb, np.full((9, 13, 1), 77, np.uint8)], -1)
    gray = rgb[..., 0]
    deep = rgb.astype(np.uint16) * 257 + 200
    files = {  # name: (bytes, the RGB pixels PIL reads, independent of TF)
        "rgb.png": (_encoded(rgb, "PNG"), rgb),
        "rgba.png": (_encoded(rgba, "PNG"), rgb),  # alpha dropped
        "gray.png": (_encoded(gray, "PNG"), np.repeat(gray[..., None], 3, -1)),
        "rgb.bmp": (_encoded(rgb, "BMP"), rgb),
        "rgb.gif": (_encoded(rgb, "GIF"), np.asarray(Image.open(io.BytesIO(_encoded(rgb, "GIF"))).convert("RGB"))),
        "rgb.webp": (_encoded(rgb, "WEBP", lossless=True), rgb),
        # 4:4:4, so that PIL and TF differ only in rounding, not in chroma upsampling
        "rgb.jpg": (_encoded(rgb, "JPEG", quality=95, subsampling=0),
                    np.asarray(Image.open(io.BytesIO(_encoded(rgb, "JPEG", quality=95, subsampling=0))))),
        "deep.png": (tf.io.encode_png(deep).numpy(), deep >> 8),  # 16 bit: the top 8 bits
    }
    for name, (data, expected) in files.items():
        (tmp_path / name).write_bytes(data)
        assert folder.image_file_size(tmp_path / name) == (9, 13), name
        image, decoded = folder.decode_file(str(tmp_path / name), 3)
        assert bool(decoded), name
        # TF decodes JPEG with libjpeg's fast integer IDCT, PIL with the accurate one
        tolerance = 8 if name.endswith(".jpg") else 0
        np.testing.assert_allclose(image.numpy(), expected, atol=tolerance, err_msg=name)
        assert np.abs(image.numpy().astype(int) - expected).mean() <= tolerance / 4, name
    gray_of_rgb, _ = folder.decode_file(str(tmp_path / "rgb.png"), 1)
    luma = np.round(rgb @ np.array([0.2989, 0.587, 0.114]))[..., None]  # ITU-R 601, as documented
    np.testing.assert_allclose(gray_of_rgb.numpy(), luma, atol=1)
    image, _ = folder.decode_file(str(tmp_path / "gray.png"), 1)
    np.testing.assert_array_equal(image.numpy(), gray[..., None])


def _large_photo(height, width):
    """A sample photograph upscaled to height x width, uint8."""
    with np.load(SAMPLE_PATH) as arrays:
        image = arrays["train_images"][7]
    return np.clip(np.round(tf.image.resize(image, (height, width), antialias=True).numpy()), 0, 255).astype(np.uint8)


def test_a_jpeg_is_decoded_at_the_smallest_libjpeg_scale_that_covers_the_size():
    photo = _large_photo(1536, 2048)
    data = _encoded(photo, "JPEG", quality=90, subsampling=0)
    full = folder.decode_image(tf.constant(data)).numpy()
    for size in [(64, 64), (97, 131), (200, 200), (193, 10), (1000, 1000), (1536, 2048)]:
        reduced = folder.decode_image(tf.constant(data), size).numpy()
        reference = Image.open(io.BytesIO(data))
        reference.draft("RGB", size[::-1])  # PIL's libjpeg scaling: the smallest scale at least that size
        assert reduced.shape == (*reference.size[::-1], 3), size
        np.testing.assert_allclose(reduced, np.asarray(reference), atol=8, err_msg=str(size))  # IDCT rounding
        shaped, from_full = (shape_image(image, size).numpy().astype(int) for image in (reduced, full))
        assert np.abs(shaped - from_full).mean() < 1.5 and np.abs(shaped - from_full).max() <= 12, size
    np.testing.assert_array_equal(folder.decode_image(tf.constant(data), (1536, 2048)), full)  # scale 1
    png = _encoded(photo, "PNG")  # only JPEGs have reduced scales
    np.testing.assert_array_equal(folder.decode_image(tf.constant(png), (64, 64)), photo)


def _dataset_node_shapes(dataset):
    """(op, [output shapes]) of every stage of a tf.data pipeline."""
    # tf.data has no public walk over a pipeline's stages; its serialized graph
    # holds one node per stage with the shapes of the elements it gives.
    graph = tf.compat.v1.GraphDef.FromString(dataset._as_serialized_graph().numpy())
    return [
        (node.op, [None if shape.unknown_rank else tf.TensorShape(shape).as_list()
                   for shape in node.attr["output_shapes"].list.shape])
        for node in graph.node if "output_shapes" in node.attr
    ]


def test_no_stage_of_the_pipeline_holds_an_image_at_its_files_size(tmp_path):
    """Every image-shaped element any stage gives (and may buffer: shuffle, parallel map, prefetch) is
    already of --image_size, not of the file (2048x1536 here): the decoding map resizes and crops."""
    for i in range(4):
        (tmp_path / f"{i}.jpg").write_bytes(_encoded(_large_photo(1536, 2048), "JPEG", quality=90))
        (tmp_path / f"{i}.png").write_bytes(_encoded(_large_photo(300, 400), "PNG"))
    for options in ({}, {"random_crop": True, "random_flip": True}, {"skip_bad_images": True}):
        data = load_image_data(f"folder:{tmp_path}", batch_size=2, image_size=32, **options)
        for dataset in (data.train, data.validation):
            stages = _dataset_node_shapes(dataset)
            images = [(op, shape) for op, shapes in stages for shape in shapes if shape is None or len(shape) >= 3]
            assert any(op == "ParallelMapDatasetV2" for op, _ in images), stages  # the decoding map
            assert all(shape is not None and shape[-3:] == [32, 32, 3] for _, shape in images), (options, stages)
        assert next(iter(data.train)).shape == (2, 32, 32, 3)


def test_the_start_check_finds_cut_off_files_of_every_format(tmp_path):
    rgb = np.random.default_rng(3).integers(0, 256, (9, 13, 3), np.uint8)
    for suffix, format in (("png", "PNG"), ("jpg", "JPEG"), ("gif", "GIF"), ("bmp", "BMP"), ("webp", "WEBP")):
        data = _encoded(rgb, format)
        path = tmp_path / f"cut.{suffix}"
        path.write_bytes(data[: len(data) - 3])
        with pytest.raises(folder.BadImageFile, match=rf"Cannot decode image file {path} \({len(data) - 3} bytes; "):
            folder.image_file_size(path)
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(folder.BadImageFile, match=r"not a JPEG, PNG, BMP, GIF or WebP file"):
        folder.image_file_size(tmp_path / "text.png")


def _palette_bmp(indices, palette, bits, top_down=False):
    """An uncompressed BMP of palette `indices` (h, w) at `bits` per pixel, written by hand."""
    height, width = indices.shape
    row_bytes = (width * bits + 31) // 32 * 4
    rows = np.zeros((height, row_bytes * 8 // bits), np.uint8)
    rows[:, :width] = indices
    packed = rows.reshape(height, -1, 8 // bits)
    packed = (packed << (np.arange(8 // bits)[::-1] * bits).astype(np.uint8)).sum(-1).astype(np.uint8)
    pixels = (packed if top_down else packed[::-1]).tobytes()
    table = np.concatenate([palette[:, ::-1], np.zeros((len(palette), 1), np.uint8)], -1).tobytes()
    start = 14 + 40 + len(table)
    info = struct.pack("<IiiHHIIiiII", 40, width, -height if top_down else height, 1, bits, 0, len(pixels),
                       2835, 2835, len(palette), 0)
    return b"BM" + struct.pack("<IHHI", start + len(pixels), 0, 0, start) + info + table + pixels


def test_palette_bmps_decode_to_their_colours_not_their_indices(tmp_path):
    rng = np.random.default_rng(4)
    for bits, top_down in ((1, False), (4, False), (8, False), (8, True), (4, True)):
        palette = rng.integers(0, 256, (2 ** bits, 3), np.uint8)
        indices = rng.integers(0, 2 ** bits, (7, 11), np.uint8)
        path = tmp_path / f"{bits}_{top_down}.bmp"
        path.write_bytes(_palette_bmp(indices, palette, bits, top_down))
        assert folder.image_file_size(path) == (7, 11)
        image, decoded = folder.decode_file(str(path), 3)
        assert bool(decoded)
        np.testing.assert_array_equal(image.numpy(), palette[indices], err_msg=path.name)
    rgb = rng.integers(0, 256, (9, 13, 3), np.uint8)
    for mode in ("P", "1", "L"):  # written by PIL, read back by PIL: the reference
        data = _encoded_mode(rgb, mode)
        (tmp_path / f"{mode}.bmp").write_bytes(data)
        image, _ = folder.decode_file(str(tmp_path / f"{mode}.bmp"), 3)
        np.testing.assert_array_equal(image.numpy(), np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), mode)


def _encoded_mode(rgb, mode):
    buffer = io.BytesIO()
    Image.fromarray(rgb).convert(mode).save(buffer, "BMP")
    return buffer.getvalue()


def test_formats_no_decoder_here_reads_are_refused_by_name_before_tensorflow_sees_them(tmp_path):
    rgb = np.random.default_rng(5).integers(0, 256, (9, 13, 3), np.uint8)
    frames = [Image.fromarray(rgb), Image.fromarray(255 - rgb)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "WEBP", save_all=True, append_images=frames[1:], duration=100)
    run_length = bytearray(_encoded_mode(rgb, "P"))
    run_length[30:34] = struct.pack("<I", 1)  # BI_RLE8
    sixteen_bit = bytearray(_encoded(rgb, "BMP"))
    sixteen_bit[28:30] = struct.pack("<H", 16)
    for name, data, reason in (
        ("moving.webp", buffer.getvalue(), "an animated WebP: TensorFlow's WebP decoder crashes the whole process"),
        ("rle.bmp", bytes(run_length), "a run-length-compressed BMP, which no decoder here reads"),
        ("deep.bmp", bytes(sixteen_bit), "a 16-bit (compression 0) BMP, which no decoder here reads"),
    ):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(folder.BadImageFile, match=re.escape(f"Cannot decode image file {tmp_path / name} (")) as error:
            folder.image_file_size(tmp_path / name)
        assert reason in str(error.value)
    for i in range(4):
        tf.io.write_file(str(tmp_path / f"{i}.png"), tf.io.encode_png(np.full((9, 13, 3), 40 * i, np.uint8)))
    # in process: had TensorFlow decoded the animation (the variance estimate does), this process would abort
    data = load_image_data(f"folder:{tmp_path}", batch_size=2, skip_bad_images=True)
    assert data.skipped_files == sorted(tmp_path / name for name in ("deep.bmp", "moving.webp", "rle.bmp"))


def _corrupt_inside(folder_path):
    """A PNG whose header and end are whole but whose pixel data is damaged: the start check passes it."""
    data = bytearray(tf.io.encode_png(np.full((8, 8, 3), 9, np.uint8)).numpy())
    start = data.index(b"IDAT") + 4
    data[start:start + 6] = b"\xff" * 6
    path = folder_path / "05_inside.png"
    path.write_bytes(bytes(data))
    folder.image_file_size(path)  # passes the start check
    return path


def test_a_file_that_fails_only_when_decoded_is_named_or_skipped(tmp_path):
    for i in range(12):
        tf.io.write_file(str(tmp_path / f"{i:02d}.png"), tf.io.encode_png(np.full((8, 8, 3), i, np.uint8)))
    bad = _corrupt_inside(tmp_path)
    data = load_image_data(f"folder:{tmp_path}", batch_size=2, skip_bad_images=True)
    assert data.skipped_files == [bad]  # met while the variance sample was decoded, before any step
    assert sum(len(batch) for batch in data.validation) == data.num_validation == 1
    assert data.num_train == 11  # 13 files, 1 held out, 1 skipped: the totals the run prints
    with pytest.raises(UsageError) as error, naming_bad_images():
        load_image_data(f"folder:{tmp_path}", batch_size=2)
    assert str(error.value).startswith(f"Cannot decode image file {bad}: TF's decoder failed on it when the pipeline")
    train, validation, _, _ = read_splits(f"folder:{tmp_path}")
    with pytest.raises(UsageError, match=f"Cannot decode image file {bad}"), naming_bad_images():
        list(train)


def test_a_file_removed_while_the_run_reads_the_folder_is_named_as_gone(tmp_path):
    for i in range(12):
        tf.io.write_file(str(tmp_path / f"{i:02d}.png"), tf.io.encode_png(np.full((8, 8, 3), i, np.uint8)))
    train, _, _, _ = read_splits(f"folder:{tmp_path}")
    (tmp_path / "04.png").unlink()  # after the start check, before the pipeline reads it
    with pytest.raises(UsageError) as error, naming_bad_images():
        list(train)
    assert str(error.value).startswith(
        f"Image file {tmp_path / '04.png'} is gone: it was there when the run started and was removed or renamed "
        "while it ran. Put it back and run the same command again"
    )


def test_a_file_name_that_is_not_utf8_is_named_readably_and_can_be_skipped(tmp_path):
    for i in range(4):
        tf.io.write_file(str(tmp_path / f"{i}.png"), tf.io.encode_png(np.full((8, 8, 3), 9 * i, np.uint8)))
    with open(bytes(tmp_path) + b"/\xff\xfe.png", "wb") as handle:  # e.g. Latin-1 bytes from an old archive
        handle.write((tmp_path / "0.png").read_bytes())
    with pytest.raises(UsageError) as error:
        load_image_data(f"folder:{tmp_path}", batch_size=2)
    assert str(error.value).startswith(
        f"Image file {tmp_path}/\\xff\\xfe.png: its name is not valid UTF-8 (the bytes shown as \\x..), and "
        "TensorFlow takes file names as UTF-8 text. Rename it."
    )
    str(error.value).encode("utf-8")  # printable: no stray surrogates
    data = load_image_data(f"folder:{tmp_path}", batch_size=2, skip_bad_images=True)
    assert data.num_train + data.num_validation == 4 and len(data.skipped_files) == 1
    assert folder.printable(data.skipped_files[0]) == f"{tmp_path}/\\xff\\xfe.png"


def test_linked_folders_are_followed_once_and_loops_end(tmp_path):
    elsewhere, images = tmp_path / "elsewhere", tmp_path / "images"
    for folder_path, count in ((elsewhere, 3), (images / "own", 2)):
        folder_path.mkdir(parents=True)
        for i in range(count):
            tf.io.write_file(str(folder_path / f"{i}.png"), tf.io.encode_png(np.zeros((4, 4, 3), np.uint8)))
    (images / "a_link").symlink_to(elsewhere)
    (images / "b_second_link").symlink_to(elsewhere)  # the same folder again: listed once
    (images / "own" / "loop").symlink_to(images)  # a loop back to the top
    found = folder.image_paths(images)
    assert [path.relative_to(images).as_posix() for path in found] == [
        "a_link/0.png", "a_link/1.png", "a_link/2.png", "own/0.png", "own/1.png",
    ]


def test_a_folder_of_photographs_is_streamed_at_image_size(tmp_path):
    bad, written = photo_folder(tmp_path / "photos")
    with pytest.raises(UsageError) as error:
        load_image_data(f"folder:{tmp_path / 'photos'}", batch_size=4)
    assert str(error.value).startswith(f"Cannot decode image file {bad} (")
    with pytest.raises(UsageError, match=r"differ in size: .* \(3 sizes in all\), and --image_size is not given"):
        load_image_data(f"folder:{tmp_path / 'photos'}", batch_size=4, skip_bad_images=True)
    data = load_image_data(f"folder:{tmp_path / 'photos'}", batch_size=4, skip_bad_images=True, image_size=64)
    assert data.skipped_files == [bad]
    # 40 good files sorted; every 10th held out (09, 019, 029, 039: the 16-bit PNG among them)
    assert (data.num_train, data.num_validation, data.image_shape) == (36, 4, (64, 64, 3))
    validation = np.concatenate([batch.numpy() for batch in data.validation])
    deep = written[tmp_path / "photos" / "009_png16.png"]  # 218x178 -> 78x64, the centre rows 7..70
    np.testing.assert_array_equal(np.round(validation[0] * 255), _resized(deep, (78, 64))[7:71])
    batch = next(iter(data.train)).numpy()
    assert batch.shape == (4, 64, 64, 3) and 0 <= batch.min() and batch.max() <= 1


def test_resuming_the_augmented_stream_of_a_folder_continues_it_exactly(tmp_path):
    photo_folder(tmp_path / "photos", count=20)
    load = lambda: load_image_data(  # noqa: E731
        f"folder:{tmp_path / 'photos'}", batch_size=4, seed=3, skip_bad_images=True, image_size=32,
        random_crop=True, random_flip=True,
    )
    stream = [b.numpy() for b in load().train.take(7)]  # 18 training files: crosses a reshuffle
    for got, want in zip(load().train_from_step(5).take(2), stream[5:]):
        np.testing.assert_array_equal(got.numpy(), want)
    with pytest.raises(UsageError, match=r"--random_crop crops the training images to --image_size, which is not"):
        load_image_data(f"folder:{tmp_path / 'photos'}", random_crop=True)


def test_the_variance_sample_is_evenly_spaced_training_files(tmp_path):
    values = np.arange(VARIANCE_SAMPLE + 200) % 251  # one flat image per file
    root = tmp_path / "flat"
    root.mkdir()
    for i, value in enumerate(values):
        tf.io.write_file(str(root / f"{i:05d}.png"), tf.io.encode_png(np.full((4, 4, 3), value, np.uint8)))
    data = load_image_data(f"folder:{root}", batch_size=4)
    train = np.delete(values, np.arange(9, len(values), 10))
    chosen = train[np.unique(np.linspace(0, len(train) - 1, VARIANCE_SAMPLE).round().astype(int))]
    np.testing.assert_allclose(data.data_variance, np.var(chosen / 255.0), rtol=1e-9)


@pytest.mark.large
def test_cli_trains_a_mixed_folder_with_image_size_and_names_the_bad_file(tmp_path):
    bad, _ = photo_folder(tmp_path / "photos", count=24)
    args = (
        f"--dataset=folder:{tmp_path / 'photos'}", "--image_size=64", "--batch_size=4", "--steps_per_epoch=2",
        "--monitor_images=2", "--jit_compile=false", f"--logdir={tmp_path / 'run'}",
    )
    refused = run_module("training.fit", *args)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"error: Cannot decode image file {bad} (" in refused.stderr
    assert not [p for p in (tmp_path / "run").rglob("*") if p.name not in (".run.lock", "run.json")]
    result = run_module("training.fit", *args, "--skip_bad_images", "--random_flip")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Skipped 1 undecodable image files (--skip_bad_images): {bad}." in result.stdout
    assert "22 training and 2 validation images of shape (64, 64, 3)" in result.stdout
    assert "val_reconstruction_loss" in result.stdout  # held-out MSE / variance, reported
    assert "ran out of data" not in result.stderr  # the expected end of a validation split of unknown size
    texts = []
    for path in (tmp_path / "run" / "train").glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            texts += [tf.make_ndarray(v.tensor).item().decode() for v in event.summary.value if v.tag == "skipped_images"]
    assert texts and str(bad) in texts[0]


def test_cifar10_from_tfds_upscaled_and_downscaled(cifar10_data_dir):
    import tensorflow_datasets as tfds

    first = next(iter(tfds.load("cifar10", split="test", data_dir=cifar10_data_dir, download=False)))["image"]
    for size in (64, 16):
        data = load_image_data("cifar10", data_dir=cifar10_data_dir, batch_size=8, image_size=size)
        assert (data.num_train, data.num_validation, data.image_shape) == (50000, 10000, (size, size, 3))
        got = next(iter(data.validation))[0].numpy()
        np.testing.assert_array_equal(np.round(got * 255), _resized(first, (size, size)))
        assert next(iter(data.train)).shape == (8, size, size, 3)


def _cifar10_binary_batches(folder_path):
    """The bundled sample written as CIFAR-10's binary download (label byte + 3x32x32 channel-first pixels)."""
    with np.load(SAMPLE_PATH) as arrays:
        arrays = dict(arrays)
    root = folder_path / "cifar-10-batches-bin"
    root.mkdir(parents=True)
    for name, split in (("data_batch_1.bin", "train"), ("test_batch.bin", "test")):
        records = np.concatenate(
            [arrays[f"{split}_labels"].astype(np.uint8)[:, None],
             arrays[f"{split}_images"].transpose(0, 3, 1, 2).reshape(-1, 3072)], 1,
        )
        (root / name).write_bytes(records.tobytes())
    for name in ("data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"):
        (root / name).write_bytes(b"")
    labels = "airplane automobile bird cat deer dog frog horse ship truck".split()
    (root / "batches.meta.txt").write_text("\n".join(labels) + "\n")
    return arrays


def test_a_missing_tfds_data_set_is_downloaded_and_prepared(tmp_path, monkeypatch, capsys):
    import tensorflow_datasets as tfds

    arrays = _cifar10_binary_batches(tmp_path / "download")
    # the download step replaced: TFDS's own cifar10 builder prepares the files it "downloaded"
    monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract", lambda self, url: str(tmp_path / "download"))
    monkeypatch.setattr(tfds.core.utils.gcs_utils, "is_dataset_on_gcs", lambda *a, **k: False)
    monkeypatch.setattr(tfds_reader, "unreachable_hosts", lambda builder: [])
    data = load_image_data("cifar10", data_dir=str(tmp_path / "tfds"), batch_size=8)
    assert "downloading and preparing it there" in capsys.readouterr().out
    assert (data.num_train, data.num_validation) == (1200, 300)
    assert (tmp_path / "tfds" / "cifar10" / "3.0.2" / "dataset_info.json").is_file()
    validation = np.concatenate([np.round(batch.numpy() * 255).astype(np.uint8) for batch in data.validation])
    assert sorted(image.tobytes() for image in validation) == sorted(image.tobytes() for image in arrays["test_images"])


def test_offline_a_missing_tfds_data_set_fails_fast_saying_what_to_do(tmp_path, monkeypatch):
    def no_network(address, *args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "create_connection", no_network)
    started = time.monotonic()
    with pytest.raises(UsageError) as error:
        load_image_data("cifar10", data_dir=str(tmp_path))
    assert time.monotonic() - started < 60
    message = str(error.value)
    assert message.startswith(f"TFDS data set 'cifar10' is not prepared under {tmp_path}, and it cannot be downloaded")
    assert "is unreachable ([Errno -2] Name or service not known)" in message
    assert "--data_dir=DIR (or set TFDS_DATA_DIR=DIR)" in message and "--dataset=cifar10_sample" in message


def test_a_manual_download_data_set_quotes_its_instructions(tmp_path):
    with pytest.raises(UsageError) as error:
        load_image_data("imagenet2012", data_dir=str(tmp_path))
    message = str(error.value)
    assert f"must be downloaded by hand into {tmp_path / 'downloads' / 'manual'}" in message
    assert "ILSVRC2012_img_train.tar" in message and "--data_dir=DIR" in message


@pytest.mark.large
def test_a_killed_run_on_a_folder_with_augmentation_resumes_to_the_uninterrupted_weights(tmp_path):
    from tests.training.test_resume import KILL_RUN_ARGS, _assert_same_state, _kill_resume_and_reference

    photo_folder(tmp_path / "photos", count=24)
    args = (
        *KILL_RUN_ARGS, f"--dataset=folder:{tmp_path / 'photos'}", "--skip_bad_images", "--image_size=32",
        "--random_crop", "--random_flip",
    )
    killed_dir, reference_dir, _ = _kill_resume_and_reference(tmp_path, args)
    _assert_same_state(killed_dir / "model.keras", reference_dir / "model.keras", iterations=12)


def test_stage2_encodes_the_images_at_the_image_size(tmp_path):
    from training.data import codes as code_cache
    from tests.training.conftest import TINY_AUTOENCODER
    from vq_keras.zoo import VQVAE

    photo_folder(tmp_path / "photos", count=12)
    model = VQVAE(**TINY_AUTOENCODER)
    model.build_if_needed()
    model.save(tmp_path / "vqvae.keras")
    dataset = f"folder:{tmp_path / 'photos'}"
    with pytest.raises(UsageError, match=r"Cannot decode image file .*017_truncated.jpg"):
        code_cache.load_or_encode(model, tmp_path / "vqvae.keras", dataset, None, tmp_path / "cache", image_size=(16, 24))
    (tmp_path / "photos" / "017_truncated.jpg").unlink()
    data = code_cache.load_or_encode(model, tmp_path / "vqvae.keras", dataset, None, tmp_path / "cache", image_size=(16, 24))
    assert [codes.shape for codes in data.codes["validation"]] == [(1, 4, 6)]  # 12 files: the 10th held out
    train, validation, _, _ = read_splits(dataset, image_size=(16, 24))
    expected = model.encode(np.stack([image.numpy() for image in validation]).astype(np.float32) / 255.0)
    np.testing.assert_array_equal(data.codes["validation"][0], np.asarray(expected))
