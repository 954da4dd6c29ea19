import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
import tensorflow as tf

from training.callbacks import code_histogram, image_grid, tile, write_code_histogram

FIT_STEPS, FIT_BATCH, CODES_PER_IMAGE = 3, 8, 8 * 8  # see FIT_RUN_ARGS in conftest


def test_image_grid_puts_each_row_side_by_side():
    rows = np.random.default_rng(0).random((2, 3, 4, 5, 1)).astype("float32")
    grid = image_grid(rows)
    assert grid.shape == (1, 8, 15, 1)
    for r in range(2):
        for i in range(3):
            np.testing.assert_array_equal(grid[0, r * 4 : (r + 1) * 4, i * 5 : (i + 1) * 5], rows[r, i])


@pytest.mark.parametrize("codes", [512, 100, 7])
def test_code_histogram_equals_numpy_histogram_of_the_indices(codes):
    counts = np.random.default_rng(codes).integers(0, 50, codes)
    histogram = code_histogram(counts)
    buckets = min(codes, 128)
    edges = np.linspace(0, codes, buckets + 1)
    indices = np.repeat(np.arange(codes), counts)
    np.testing.assert_array_equal(histogram[:, 2], np.histogram(indices, bins=edges)[0])
    np.testing.assert_array_equal(histogram[:, :2], np.stack([edges[:-1], edges[1:]], axis=1))


def _peak_rss_bytes():
    with open("/proc/self/status") as status:
        return int(status.read().split("VmHWM:")[1].split()[0]) * 1024


def test_code_histogram_of_a_long_epoch_expands_no_values(tmp_path):
    """A billion codes counted (an epoch of 4 million 64x64 images) are written from their counts:
    the peak memory grows by far less than one byte a code (tf.summary.histogram of the values
    would need 1 KB each)."""
    counts = np.full(512, 2_000_000, np.int64)
    writer = tf.summary.create_file_writer(str(tmp_path))
    with open("/proc/self/clear_refs", "w") as clear:  # resets the peak (VmHWM) to the current RSS
        clear.write("5")
    before = _peak_rss_bytes()
    with writer.as_default():
        write_code_histogram("code_usage", counts, 0)
    writer.close()
    assert _peak_rss_bytes() - before < 50 * 2**20
    written = _tensor_events(tmp_path, "code_usage")[0]
    assert written[:, 2].sum() == counts.sum() and written.shape == (128, 3)


def _tensor_events(event_dir, tag):
    """{step: ndarray} of the tensor summaries named `tag` in a run directory."""
    values = {}
    for path in tf.io.gfile.glob(os.path.join(event_dir, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == tag:
                    values[event.step] = tf.make_ndarray(value.tensor)
    return values


@pytest.mark.large
def test_code_usage_histogram_covers_every_training_batch_of_the_epoch(fit_run):
    logdir, _ = fit_run
    histograms = _tensor_events(logdir / "train", "code_usage")
    assert sorted(histograms) == [0, 1]
    for histogram in histograms.values():  # (buckets, [left, right, count])
        assert histogram[:, 2].sum() == FIT_STEPS * FIT_BATCH * CODES_PER_IMAGE
        assert histogram[0, 0] == 0 and histogram[-1, 1] == 512 and len(histogram) == 128
    validation = _tensor_events(logdir / "validation", "code_usage")  # FIT_RUN_ARGS: 2 validation batches of 8
    assert sorted(validation) == [0, 1]
    assert all(histogram[:, 2].sum() == 2 * FIT_BATCH * CODES_PER_IMAGE for histogram in validation.values())
    dead = _tensor_events(logdir / "train", "epoch_epoch_dead_codes")
    assert all(0 <= float(v) < 512 for v in dead.values()) and sorted(dead) == [0, 1]
    grid = _tensor_events(logdir / "validation", "reconstructions")[1]
    width, height = [int(d) for d in grid[:2]]  # image summaries hold [width, height, png...]
    assert (height, width) == (2 * 32, 8 * 32)


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(port, path, data=None):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=None if data is None else json.dumps(data).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _wait_for_tags(port, plugin, run, tag, deadline):
    while True:
        try:
            tags = _get(port, f"/data/plugin/{plugin}/tags")
            if tag in tags.get(run, {}):
                return tags
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"TensorBoard did not show {plugin} tag {tag!r} of run {run!r} in time")
        time.sleep(1)


@pytest.mark.large
def test_a_real_tensorboard_serves_the_runs_scalars_images_histograms_and_hparams(fit_run):
    logdir, _ = fit_run
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--port", str(port), "--host", "127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    try:
        deadline = time.monotonic() + 300  # a loaded 2-core machine starts TensorBoard slowly
        scalars = _wait_for_tags(port, "scalars", "train", "epoch_epoch_dead_codes", deadline)
        for run in ("train", "validation"):
            for name in ("loss", "reconstruction_loss", "vq_loss", "perplexity", "codebook_usage",
                         "epoch_codebook_usage", "epoch_dead_codes"):
                assert f"epoch_{name}" in scalars[run], (run, name, scalars[run])
        assert "epoch_learning_rate" in scalars["train"]
        images = _wait_for_tags(port, "images", "validation", "reconstructions", deadline)
        assert images["validation"]["reconstructions"]["samples"] == 1
        histograms = _wait_for_tags(port, "histograms", "train", "code_usage", deadline)
        assert "code_usage" in histograms["train"]
        experiment = _get(port, "/data/plugin/hparams/experiment", {"experimentName": ""})
        names = {info["name"] for info in experiment["hparamInfos"]}
        assert {"dataset", "model", "preset", "batch_size", "learning_rate", "num_embeddings"} <= names
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_tile_fills_rows_and_pads_the_last_one_white():
    images = np.random.default_rng(0).random((5, 2, 3, 1)).astype("float32")
    grid = tile(images, columns=2)[0]
    assert grid.shape == (6, 6, 1)
    for i in range(5):
        row, column = divmod(i, 2)
        np.testing.assert_array_equal(grid[row * 2 : row * 2 + 2, column * 3 : column * 3 + 3], images[i])
    np.testing.assert_array_equal(grid[4:, 3:], 1.0)
    assert tile(images).shape == (1, 2 * 2, 3 * 3, 1)  # ceil(sqrt(5)) = 3 columns, so 2 rows
