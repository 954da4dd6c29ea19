import numpy as np
import pytest
import keras
from keras import ops

from tests.backend import input_jacobian, to_numpy
from vq_keras.layers import GatedPixelCNNBlock, MaskedConv2D

pytestmark = pytest.mark.backends  # the same checks on every backend (tests/backend.py)

SIZE = 5  # 5x5 grids: 25 raster positions
POSITIONS = SIZE * SIZE


def dependence(function, x):
    """bool (positions, positions): entry [p, q] is True iff output position p has a
    non-zero gradient with respect to input position q (summed over channels).

    The output channels are projected on a fixed random vector first, so that no
    dependence can cancel out by chance.
    """
    weights = np.random.default_rng(123).normal(size=(function(x).shape[-1],)).astype("float32")
    jacobian = input_jacobian(lambda x: ops.tensordot(function(x)[0], weights, axes=1), x)  # (H, W, 1, H, W, C)
    magnitude = np.abs(jacobian).sum(axis=-1).reshape(POSITIONS, POSITIONS)
    return magnitude > 0


def earlier():
    """bool (positions, positions): [p, q] is True iff q < p in raster order."""
    return np.tril(np.ones((POSITIONS, POSITIONS), bool), k=-1)


def stack(num_blocks, filters=8, kernel_size=3):
    blocks = [
        GatedPixelCNNBlock(filters, kernel_size, "A" if i == 0 else "B") for i in range(num_blocks)
    ]

    def run(x, label_embedding=None, spatial_condition=None):
        v = h = x
        skips = 0
        for block in blocks:
            v, h, skip = block([v, h], label_embedding=label_embedding, spatial_condition=spatial_condition)
            skips = skips + skip
        return h + skips

    return run


def _inputs(channels=8, seed=0):
    return np.random.default_rng(seed).normal(size=(1, SIZE, SIZE, channels)).astype("float32")


def _position(row, col):
    return row * SIZE + col


def test_deep_stack_sees_exactly_every_earlier_position():
    # 5 blocks of kernel 3 reach every earlier position of a 5x5 grid: no blind spot.
    depends = dependence(stack(5), _inputs())
    np.testing.assert_array_equal(depends, earlier())


def test_no_blind_spot_where_masked_convolutions_have_one():
    # Two 3x3 masked convolutions (A then B) cannot see (i - 1, j + 2): the
    # classic blind spot. Two gated blocks can.
    masked = [MaskedConv2D(8, 3, "A"), MaskedConv2D(8, 3, "B")]
    masked_depends = dependence(lambda x: masked[1](masked[0](x)), _inputs())
    gated_depends = dependence(stack(2), _inputs())
    for row, col in [(2, 1), (3, 2), (4, 0), (2, 2)]:
        p = _position(row, col)
        blind = _position(row - 1, col + 2)
        assert not masked_depends[p, blind], (row, col)
        assert gated_depends[p, blind], (row, col)
        # Right of p in the rows above, and far above-right: inside the receptive field.
        assert gated_depends[p, _position(row - 1, col + 1)] and gated_depends[p, _position(row - 2, col + 2)]
    # Causal for every position in both cases.
    assert not np.any(gated_depends & ~earlier())
    assert not np.any(masked_depends & ~earlier())


@pytest.mark.parametrize("num_blocks", [1, 2, 3])
def test_shallow_stacks_are_causal_with_the_expected_reach(num_blocks):
    depends = dependence(stack(num_blocks), _inputs())
    assert not np.any(depends & ~earlier())
    # With kernel 3, block n reaches n + 1 columns to the left in the current
    # row and n + 1 rows up, n columns to each side.
    reach = num_blocks + 1
    p = _position(4, 2)
    for q in range(POSITIONS):
        row, col = divmod(q, SIZE)
        in_row = row == 4 and 2 - reach <= col < 2
        above = 4 - reach <= row < 4 and abs(col - 2) <= num_blocks
        if in_row or above:
            assert depends[p, q], (row, col)


def test_type_a_excludes_and_type_b_includes_the_current_position():
    x = _inputs()
    first = GatedPixelCNNBlock(8, 3, "A")
    later = GatedPixelCNNBlock(8, 3, "B")
    depends_a = dependence(lambda t: first([t, t])[1], x)
    # A type B block on its own, fed the inputs as h and a vertical input that
    # is strictly above already (here zeros): h at p sees p itself.
    zeros = np.zeros_like(x)
    depends_b = dependence(lambda t: later([zeros, t])[1], x)
    diagonal = np.eye(POSITIONS, dtype=bool)
    assert not np.any(depends_a & diagonal)
    assert np.all(depends_b[diagonal])
    # The vertical output only ever depends on rows strictly above.
    depends_v = dependence(lambda t: first([t, t])[0], x)
    rows = np.arange(POSITIONS) // SIZE
    assert not np.any(depends_v & (rows[None, :] >= rows[:, None]))


def test_conditioning_reaches_the_gates_and_keeps_causality():
    rng = np.random.default_rng(4)
    label = rng.normal(size=(1, 6)).astype("float32")
    spatial = rng.normal(size=(1, SIZE, SIZE, 3)).astype("float32")
    run = stack(3)
    x = _inputs()
    depends = dependence(lambda t: run(t, label, spatial), x)
    assert not np.any(depends & ~earlier())
    base = to_numpy(run(x, label, spatial))
    assert np.abs(to_numpy(run(x, label + 1.0, spatial)) - base).max() > 1e-3
    # A change of the spatial condition at one position changes the output there.
    bumped = to_numpy(spatial)
    bumped[0, 2, 3] += 1.0
    changed = np.abs(to_numpy(run(x, label, bumped)) - base).max(axis=-1)[0]
    assert changed[2, 3] > 1e-3


def test_output_shapes_and_skip():
    block = GatedPixelCNNBlock(6, 5, "A", dropout=0.2)
    x = np.zeros((2, 7, 6, 3), "float32")
    v, h, skip = block([x, x], training=True)
    assert tuple(v.shape) == tuple(h.shape) == tuple(skip.shape) == (2, 7, 6, 6)
    assert block.compute_output_shape([x.shape, x.shape]) == ((2, 7, 6, 6),) * 3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(filters=8, kernel_size=4, mask_type="A"),
            "GatedPixelCNNBlock expects an odd kernel_size, so that the vertical stack is centred on "
            "the current column. Received: kernel_size=4. Use e.g. 3, 5 or 7.",
        ),
        (
            dict(filters=8, kernel_size=3, mask_type="a"),
            'GatedPixelCNNBlock expects mask_type to be "A" (the first layer: excludes the current '
            "position) or \"B\" (later layers: includes it). Received: mask_type='a'",
        ),
        (
            dict(filters=0, kernel_size=3, mask_type="A"),
            "GatedPixelCNNBlock expects filters to be a positive integer. Received: filters=0",
        ),
        (
            dict(filters=8, kernel_size=3, mask_type="B", dropout=1.0),
            r"GatedPixelCNNBlock expects dropout in [0, 1). Received: dropout=1.0",
        ),
    ],
)
def test_bad_arguments_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError) as error:
        GatedPixelCNNBlock(**kwargs)
    assert str(error.value) == message


def test_bad_inputs_are_clear_errors():
    x = np.zeros((1, 4, 4, 8), "float32")
    with pytest.raises(ValueError) as error:
        GatedPixelCNNBlock(8, 3, "A")(x)
    assert str(error.value) == (
        "GatedPixelCNNBlock expects inputs [v, h]: a list of two 4D tensors (batch, height, width, "
        "channels), the vertical and horizontal stacks. Received: inputs_shape=(1, 4, 4, 8). "
        "For the first block of a network pass the embedded inputs twice: block([x, x])."
    )
    with pytest.raises(ValueError) as error:
        GatedPixelCNNBlock(6, 3, "B")([x, x])
    assert str(error.value) == (
        'GatedPixelCNNBlock with mask_type="B" adds its horizontal input to its output, so h must '
        "have filters=6 channels. Received: h shape=(1, 4, 4, 8). Make the first block "
        'mask_type="A", or project h to filters channels.'
    )
    block = GatedPixelCNNBlock(8, 3, "A", name="first")
    block([x, x])
    with pytest.raises(ValueError) as error:
        block([x, x], label_embedding=np.zeros((1, 3), "float32"))
    assert str(error.value) == (
        "GatedPixelCNNBlock 'first' was built without label_embedding and must be called the same "
        "way. Received: label_embedding=a tensor. Build a new block to change its conditioning."
    )
    expected = r"spatial_condition of shape \(batch, height, width, channels\) with the inputs' height"
    with pytest.raises(ValueError, match=expected):
        GatedPixelCNNBlock(8, 3, "A")([x, x], spatial_condition=np.zeros((1, 2, 2, 3), "float32"))


def test_config_and_keras_file_round_trip_with_conditioning(tmp_path):
    x_in = keras.Input((SIZE, SIZE, 8))
    label_in = keras.Input((4,))
    spatial_in = keras.Input((SIZE, SIZE, 3))
    v, h, skip1 = GatedPixelCNNBlock(8, 3, "A")([x_in, x_in], label_embedding=label_in, spatial_condition=spatial_in)
    v, h, skip2 = GatedPixelCNNBlock(8, 3, "B", dropout=0.1)(
        [v, h], label_embedding=label_in, spatial_condition=spatial_in
    )
    model = keras.Model([x_in, label_in, spatial_in], [h, skip1 + skip2])
    blocks = [layer for layer in model.layers if isinstance(layer, GatedPixelCNNBlock)]
    assert [b.mask_type for b in blocks] == ["A", "B"]
    block = blocks[1]
    clone = GatedPixelCNNBlock.from_config(block.get_config())
    assert clone.get_config() == block.get_config()
    rng = np.random.default_rng(5)
    inputs = [
        rng.normal(size=(2, SIZE, SIZE, 8)).astype("float32"),
        rng.normal(size=(2, 4)).astype("float32"),
        rng.normal(size=(2, SIZE, SIZE, 3)).astype("float32"),
    ]
    model.save(tmp_path / "gated.keras")
    reloaded = keras.saving.load_model(tmp_path / "gated.keras")
    for saved, loaded in zip(model(inputs), reloaded(inputs)):
        np.testing.assert_array_equal(to_numpy(saved), to_numpy(loaded))
    assert len(reloaded.weights) == len(model.weights)


@pytest.mark.parametrize("mask_type, kernel_size", [("A", 3), ("B", 3), ("B", 5), ("A", 7)])
@pytest.mark.parametrize("conditioned", [False, True])
def test_row_and_position_steps_equal_the_whole_grid(mask_type, kernel_size, conditioned):
    """vertical_step on the rows a row reads and horizontal_step on the columns a
    position reads give that row's and position's outputs of call."""
    rng = np.random.default_rng(5)
    height, width, channels, half = 4, 6, 3, kernel_size // 2
    block = GatedPixelCNNBlock(channels, kernel_size, mask_type)
    v, h = (rng.normal(size=(2, height, width, channels)).astype("float32") for _ in range(2))
    label = rng.normal(size=(2, 5)).astype("float32") if conditioned else None
    spatial = rng.normal(size=(2, height, width, 2)).astype("float32") if conditioned else None
    v_out, h_out, skip = (to_numpy(t) for t in block([v, h], label_embedding=label, spatial_condition=spatial))
    shift = 1 if mask_type == "A" else 0  # type A reads the rows above / columns left, type B includes its own
    padded_v = np.pad(v, [(0, 0), (half + shift, 0), (half, half), (0, 0)])
    padded_h = np.pad(h, [(0, 0), (0, 0), (half + shift, 0), (0, 0)])
    for row in range(height):
        spatial_row = None if spatial is None else spatial[:, row : row + 1]
        v_row, bias = block.vertical_step(padded_v[:, row : row + half + 1], label, spatial_row)
        np.testing.assert_allclose(to_numpy(v_row)[:, 0], v_out[:, row], rtol=1e-5, atol=1e-5)
        for col in range(width):
            columns = padded_h[:, row, col : col + half + 1]
            h_step, skip_step = block.horizontal_step(columns, h[:, row, col], bias[:, 0, col])
            np.testing.assert_allclose(to_numpy(h_step), h_out[:, row, col], rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(to_numpy(skip_step), skip[:, row, col], rtol=1e-5, atol=1e-5)
