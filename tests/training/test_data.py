import numpy as np
import pytest
import tensorflow as tf

from training.data import load_image_data
from training.data.pipeline import SAMPLE_PATH, SHUFFLE_BUFFER_BYTES, shuffled_stream
from training.data.tfds_reader import prepared_builder, record_bytes
from tests.training.conftest import run_module
from training.errors import UsageError


def test_sample_pipeline_scales_batches_and_measures_variance():
    data = load_image_data("cifar10_sample", batch_size=16, seed=0)
    with np.load(SAMPLE_PATH) as arrays:
        train = arrays["train_images"]
    assert (data.num_train, data.num_validation, data.image_shape) == (1200, 300, (32, 32, 3))
    np.testing.assert_allclose(data.data_variance, np.var(train / 255.0), rtol=1e-9)
    batch = next(iter(data.train)).numpy()
    assert batch.shape == (16, 32, 32, 3) and batch.dtype == np.float32
    assert 0.0 <= batch.min() and batch.max() <= 1.0
    # every batch is a set of real training images, scaled
    as_uint8 = np.round(batch * 255).astype(np.uint8)
    train_rows = {image.tobytes() for image in train}
    assert all(image.tobytes() in train_rows for image in as_uint8)
    assert sum(b.shape[0] for b in data.validation) == 300


def test_shuffling_follows_the_seed():
    first = lambda seed: next(iter(load_image_data("cifar10_sample", batch_size=8, seed=seed).train)).numpy()  # noqa: E731
    np.testing.assert_array_equal(first(1), first(1))
    assert not np.array_equal(first(1), first(2))


def _first_pass(item_bytes):
    stream = shuffled_stream(tf.data.Dataset.range(200), 1, 0, 200, item_bytes=item_bytes)
    return np.array(list(stream.take(200).as_numpy_iterator()))


def test_a_shuffle_of_large_records_holds_at_most_its_byte_budget_of_them():
    # a shuffle buffer of b elements emits at position i one of the first i + b elements
    bounded = _first_pass(item_bytes=SHUFFLE_BUFFER_BYTES // 4)
    assert sorted(bounded) == list(range(200)) and all(bounded <= np.arange(200) + 3)
    assert any(_first_pass(item_bytes=0) > np.arange(200) + 3)  # file names: all 200 in the buffer


def test_folder_data_set_round_trips_pixels(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(20, 12, 12, 3), dtype=np.uint8)
    for i, image in enumerate(images):
        (tmp_path / "sub").mkdir(exist_ok=True)
        tf.io.write_file(str(tmp_path / "sub" / f"{i:02d}.png"), tf.io.encode_png(image))
    data = load_image_data(f"folder:{tmp_path}", batch_size=4)
    assert (data.num_train, data.num_validation, data.image_shape) == (18, 2, (12, 12, 3))
    validation = np.concatenate([b.numpy() for b in data.validation])
    np.testing.assert_array_equal(np.round(validation * 255).astype(np.uint8), images[[9, 19]])
    np.testing.assert_allclose(data.data_variance, np.var(np.delete(images, [9, 19], 0) / 255.0), rtol=1e-9)


def test_folder_errors_name_the_problem(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="needs a folder with at least two images"):
        load_image_data(f"folder:{tmp_path / 'empty'}")
    tf.io.write_file(str(tmp_path / "a.png"), tf.io.encode_png(np.zeros((8, 8, 3), np.uint8)))
    tf.io.write_file(str(tmp_path / "b.png"), tf.io.encode_png(np.zeros((8, 6, 3), np.uint8)))
    with pytest.raises(UsageError) as error:
        load_image_data(f"folder:{tmp_path}", fit_size=lambda height, width: 4)
    assert str(error.value) == (
        f"The images of 'folder:{tmp_path}' differ in size: {tmp_path / 'a.png'} is 8x8, {tmp_path / 'b.png'} is "
        "8x6 (2 sizes in all), and --image_size is not given. Pass --image_size=N (or HxW) to resize every image "
        "so that its shorter side is N and centre-crop it to NxN, e.g. --image_size=4."
    )
    (tmp_path / "b.png").write_bytes(b"not a png")
    with pytest.raises(UsageError, match=r"Cannot decode image file .*b.png"):
        load_image_data(f"folder:{tmp_path}")


def test_too_few_images_for_a_batch(tmp_path):
    for name in "ab":
        tf.io.write_file(str(tmp_path / f"{name}.png"), tf.io.encode_png(np.zeros((8, 8, 3), np.uint8)))
    with pytest.raises(UsageError, match=r"has 1 images, fewer than one batch \(--batch_size=32\)"):
        load_image_data(f"folder:{tmp_path}", batch_size=32)


def test_real_cifar10_from_tfds(cifar10_data_dir):
    data = load_image_data("cifar10", data_dir=cifar10_data_dir, batch_size=64)
    assert (data.num_train, data.num_validation, data.image_shape) == (50000, 10000, (32, 32, 3))
    # ../shared/tfds/README.md: train-set pixel variance in [0, 1] scale is about 0.0633
    assert abs(data.data_variance - 0.0633) < 5e-4
    assert next(iter(data.train)).shape == (64, 32, 32, 3)
    info = prepared_builder("cifar10", cifar10_data_dir).info.splits["train"]  # 110 MiB, 50,000 records
    assert record_bytes(prepared_builder("cifar10", cifar10_data_dir), "train") == -(-info.num_bytes // 50000)


def test_unknown_and_absent_data_sets(tmp_path):
    with pytest.raises(UsageError, match=r"Unknown data set 'no_such_set'. Known data sets: cifar10_sample"):
        load_image_data("no_such_set")
    with pytest.raises(UsageError) as error:
        load_image_data("svhn_cropped", data_dir=str(tmp_path))
    message = str(error.value)
    assert "'svhn_cropped' is not prepared under" in message and str(tmp_path) in message
    assert "--data_dir=DIR (or set TFDS_DATA_DIR=DIR)" in message


def test_a_wrong_dataset_value_is_named_with_its_fix(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "one.png").write_bytes(tf.io.encode_png(np.zeros((8, 8, 3), np.uint8)).numpy())
    cases = {
        str(tmp_path / "images"): f"--dataset={tmp_path / 'images'} looks like a folder, not a TFDS name. For a "
                                  f"folder of images pass --dataset=folder:{tmp_path / 'images'}. Known data sets:",
        "./photos": "--dataset=./photos looks like a path, not a TFDS name. For a folder of images pass "
                    "--dataset=folder:./photos.",
        "cifar10:1.x/y=": "Unknown data set 'cifar10:1.x/y=' (Parsing builder name string cifar10:1.x/y= failed.).",
        f"folder:{tmp_path / 'missing'}": f"--dataset=folder:{tmp_path / 'missing'}: no such folder. Pass "
                                          "--dataset=folder:PATH with PATH the folder that holds the images",
        f"folder:{tmp_path / 'one.png'}": f"--dataset=folder:{tmp_path / 'one.png'}: a file, not a folder.",
    }
    for name, message in cases.items():
        with pytest.raises(UsageError) as error:
            load_image_data(name, batch_size=2)
        assert str(error.value).startswith(message), str(error.value)


def test_a_folder_for_a_four_channel_model_is_refused_before_the_pipeline(tmp_path):
    for i in range(4):
        tf.io.write_file(str(tmp_path / f"{i}.png"), tf.io.encode_png(np.zeros((8, 8, 3), np.uint8)))
    with pytest.raises(UsageError, match=r"^Image files can be brought to 1 \(grayscale\) or 3 \(RGB\) channels; "
                       r"the model takes 4. Pass --num_channels=1 or 3.$"):
        load_image_data(f"folder:{tmp_path}", batch_size=2, channels=4)


def test_train_from_step_continues_the_same_batch_stream():
    data = load_image_data("cifar10_sample", batch_size=16, seed=3)
    stream = [b.numpy() for b in data.train.take(90)]  # 1200 / 16 = 75 batches: crosses a reshuffle
    resumed = [b.numpy() for b in data.train_from_step(77).take(13)]
    for got, want in zip(resumed, stream[77:]):
        np.testing.assert_array_equal(got, want)
    assert not np.array_equal(stream[75], stream[0])  # the second pass is shuffled anew


def _folder_with_bad_files(folder):
    """22 good 8x8 PNGs and a corrupt, a truncated PNG, a truncated JPEG and an empty file."""
    rng = np.random.default_rng(1)
    for i in range(22):
        tf.io.write_file(str(folder / f"{i:02d}.png"), tf.io.encode_png(rng.integers(0, 256, (8, 8, 3), np.uint8)))
    png = tf.io.encode_png(rng.integers(0, 256, (8, 8, 3), np.uint8)).numpy()
    jpeg = tf.io.encode_jpeg(rng.integers(0, 256, (8, 8, 3), np.uint8)).numpy()
    (folder / "bad_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (folder / "bad_truncated.png").write_bytes(png[: len(png) - 12])  # only the end chunk missing
    (folder / "bad_truncated.jpg").write_bytes(jpeg[: len(jpeg) - 2])  # only the end marker missing
    (folder / "bad_empty.png").write_bytes(b"")
    return ["bad_corrupt.png", "bad_empty.png", "bad_truncated.jpg", "bad_truncated.png"]


def test_corrupt_truncated_and_empty_images_are_named(tmp_path):
    bad = _folder_with_bad_files(tmp_path)
    for name in bad:  # one bad file at a time, each named in its error
        others = tmp_path / f"only_{name}"
        others.mkdir()
        for good in sorted(tmp_path.glob("[0-9]*.png"))[:3]:
            (others / good.name).write_bytes(good.read_bytes())
        (others / name).write_bytes((tmp_path / name).read_bytes())
        with pytest.raises(UsageError) as error:
            load_image_data(f"folder:{others}", batch_size=2)
        message = str(error.value)
        if name == "bad_empty.png":
            assert message == (
                f"Image file {others / name} is empty (0 bytes). Replace or delete it, or pass "
                "--skip_bad_images to leave such files out."
            )
        else:
            size = (others / name).stat().st_size
            assert message.startswith(f"Cannot decode image file {others / name} ({size} bytes; corrupt or truncated?): ")
            assert message.endswith(". Replace or delete it, or pass --skip_bad_images to leave such files out.")
            assert "{{" not in message and "[Op:" not in message


def test_skip_bad_images_leaves_them_out_and_lists_them(tmp_path):
    bad = _folder_with_bad_files(tmp_path)
    data = load_image_data(f"folder:{tmp_path}", batch_size=4, skip_bad_images=True)
    assert sorted(path.name for path in data.skipped_files) == bad
    assert data.num_train + data.num_validation == 22
    # an image of another size is no bad file: without --image_size it is an error, skipping or not
    tf.io.write_file(str(tmp_path / "99.png"), tf.io.encode_png(np.zeros((8, 4, 3), np.uint8)))
    with pytest.raises(UsageError, match=r"differ in size: .*00.png is 8x8, .*99.png is 8x4 \(2 sizes in all\)"):
        load_image_data(f"folder:{tmp_path}", batch_size=4, skip_bad_images=True)


@pytest.mark.large
def test_cli_skip_bad_images_prints_count_and_names(tmp_path):
    (tmp_path / "images").mkdir()
    _folder_with_bad_files(tmp_path / "images")
    args = ("--dataset=folder:" + str(tmp_path / "images"), "--batch_size=4", "--steps_per_epoch=1",
            "--validation_steps=1", "--monitor_images=2", "--jit_compile=false", f"--logdir={tmp_path / 'run'}")
    refused = run_module("training.fit", *args)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"error: Cannot decode image file {tmp_path / 'images' / 'bad_corrupt.png'}" in refused.stderr
    result = run_module("training.fit", *args, "--skip_bad_images")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        f"Skipped 4 undecodable image files (--skip_bad_images): {tmp_path / 'images' / 'bad_corrupt.png'}, "
        f"{tmp_path / 'images' / 'bad_empty.png'}, {tmp_path / 'images' / 'bad_truncated.jpg'}, "
        f"{tmp_path / 'images' / 'bad_truncated.png'}."
    ) in result.stdout
