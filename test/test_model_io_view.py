"""model_io.View: a window of the frame placed in the model input, forward (crop, to_input,
box_to_input, mask_to_input) and back (from_input, grid_to_window, paste)."""
from __future__ import annotations

import numpy as np
import pytest

from openpixel_ros.model_contract import InputSpec, ModelContract, OutputSpec
from openpixel_ros.model_io import ModelInput


def model_input(height, width, resize="stretch", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), scale=1.0 / 255.0):
    spec = InputSpec("image", height=height, width=width, resize=resize, mean=mean, std=std, scale=scale)
    return ModelInput(ModelContract(spec, OutputSpec("logits"), ("background", "object"), ((0, 0, 0), (1, 1, 1))))


# Two frame sizes, each with a zoom window off the corner and a model input that places it with
# offsets of its own (letterbox: centred; longest: top-left), so both offsets are exercised.
CASES = [
    pytest.param((480, 640), (37, 51, 357, 291), model_input(120, 160), id="640x480-stretch"),
    pytest.param((300, 451), (101, 23, 301, 173), model_input(96, 96, "letterbox"), id="451x300-letterbox"),
    pytest.param((300, 451), (101, 23, 301, 173), model_input(96, 96, "longest"), id="451x300-longest"),
]


@pytest.mark.parametrize("frame_hw, window, transform", CASES)
def test_points_and_boxes_go_into_the_window_and_back(frame_hw, window, transform):
    view = transform.view(frame_hw, window)
    x0, y0, x1, y1 = window
    pixels = np.array([(x0, y0), (x1 - 1, y1 - 1), (x0 + 17, y0 + 9), (200, 150)], np.float64)
    back = view.from_input(view.to_input(pixels))
    np.testing.assert_allclose(back, np.floor(pixels) + 0.5, atol=1e-9)  # each click on its pixel's centre
    box = (x0 + 3.25, y0 + 1.5, x1 - 7.0, y1 - 0.75)
    np.testing.assert_allclose(view.from_input([view.box_to_input(box)[:2], view.box_to_input(box)[2:]]).ravel(),
                               box, atol=1e-9)
    # The window's corners land on the placed rectangle's corners in the model input.
    p = view.placement
    np.testing.assert_allclose(view.box_to_input((x0, y0, x1, y1)), (p.left, p.top, p.left + p.width, p.top + p.height))


@pytest.mark.parametrize("frame_hw, window, transform", CASES)
def test_a_mask_goes_into_the_window_and_back(frame_hw, window, transform):
    view = transform.view(frame_hw, window)
    x0, y0, x1, y1 = window
    mask = np.zeros(frame_hw, bool)
    mask[y0 + 40:y0 + 110, x0 + 60:x0 + 150] = True  # inside the window
    mask[:5, :5] = True                               # outside it: not seen, not pasted back
    grid = view.mask_to_input(mask)
    assert grid.shape == view.placement.input_hw
    back = view.paste(view.grid_to_window(grid * 2.0 - 1.0) > 0.0)
    assert back.shape == frame_hw and not back[:5, :5].any()
    inside = mask.copy()
    inside[:5, :5] = False
    # Down to the model input and up again blurs the edge by a pixel at most, nowhere else.
    assert np.count_nonzero(back ^ inside) <= 2 * (70 + 90) * 2
    assert back[y0 + 42:y0 + 108, x0 + 62:x0 + 148].all()
    assert not back[:y0 + 38].any() and not back[y0 + 112:].any()


def test_a_one_pixel_shift_is_caught():
    # The model input is the window's own size, so every mapping is a pure shift by the window's corner.
    transform = model_input(50, 80)
    view = transform.view((240, 320), (100, 60, 180, 110))
    assert view.to_input([(100, 60)]) == [(0.5, 0.5)]
    assert view.to_input([(137.9, 71.2)]) == [(37.5, 11.5)]
    assert view.box_to_input((110, 70, 150, 100)) == (10.0, 10.0, 50.0, 40.0)
    frame = np.arange(240 * 320).reshape(240, 320)
    assert view.crop(frame)[0, 0] == frame[60, 100] and view.crop(frame).shape == (50, 80)
    mask = np.zeros((240, 320), bool)
    mask[71, 137] = True
    grid = view.mask_to_input(mask)
    assert grid[11, 37] == 1.0 and grid.sum() == 1.0
    window_mask = np.zeros((50, 80), bool)
    window_mask[11, 37] = True
    pasted = view.paste(window_mask)
    assert pasted[71, 137] and pasted.sum() == 1
    assert view.pixels_per_cell(20) == 4.0  # 80 window pixels over a 20-cell grid


def test_the_whole_frame_view_is_the_model_inputs_own_mapping():
    transform = model_input(96, 128, "letterbox")
    frame_hw = (300, 451)
    view = transform.view(frame_hw)
    placement = transform.placement(frame_hw)
    assert view.whole_frame and view.placement == placement
    points = [(0, 0), (450.7, 299.2), (17.5, 33.0)]
    assert view.to_input(points) == transform.pixels_to_input(points, placement)
    rng = np.random.default_rng(0)
    mask = rng.random(frame_hw) > 0.5
    np.testing.assert_array_equal(view.mask_to_input(mask), transform.mask_to_input(mask, placement))
    grid = rng.normal(size=(24, 32)).astype(np.float32)
    np.testing.assert_array_equal(view.grid_to_window(grid), transform.to_frame(grid, placement))
    frame = rng.integers(0, 255, frame_hw + (3,), dtype=np.uint8)
    assert view.crop(frame) is frame and view.paste(mask) is mask


@pytest.mark.parametrize("window", [(-1, 0, 10, 10), (0, 0, 321, 10), (5, 5, 5, 10), (0, 20, 10, 10)])
def test_a_window_outside_the_frame_is_refused(window):
    with pytest.raises(ValueError, match="not inside"):
        model_input(50, 80).view((240, 320), window)


@pytest.mark.parametrize("frame_hw", [(480, 640), (300, 451), (777, 333), (1080, 1920), (1, 2048), (1024, 1024)])
def test_longest_is_sams_resize_longest_side_padded_bottom_right(frame_hw):
    h, w = frame_hw
    scale = 1024 / max(h, w)  # segment-anything's ResizeLongestSide.get_preprocess_shape
    expected = (int(h * scale + 0.5), int(w * scale + 0.5))
    p = model_input(1024, 1024, "longest").placement(frame_hw)
    assert (p.top, p.left) == (0, 0) and (p.height, p.width) == (max(1, expected[0]), max(1, expected[1]))


def test_longest_pads_the_normalised_frame_with_zeros():
    transform = model_input(64, 64, "longest", mean=(100.0, 100.0, 100.0), std=(50.0, 50.0, 50.0), scale=1.0)
    tensor, p = transform.tensor(np.full((24, 32, 3), 200, np.uint8))
    assert (p.height, p.width) == (48, 64) and tensor.shape == (1, 3, 64, 64)
    np.testing.assert_allclose(tensor[0, :, :48], 2.0)  # (200 - 100) / 50
    assert not tensor[0, :, 48:].any()                  # zeros, not a black pixel's (0 - 100) / 50
    letterboxed, _ = model_input(64, 64, "letterbox", mean=(100.0,) * 3, std=(50.0,) * 3, scale=1.0).tensor(
        np.full((24, 32, 3), 200, np.uint8))
    np.testing.assert_allclose(letterboxed[0, :, :8], -2.0)  # letterbox pads black pixels, as before


def test_a_contract_may_declare_the_longest_placement():
    from openpixel_ros.model_contract import ContractError, parse_contract
    data = {"format": "openpixel-model/1", "input": {"name": "image", "height": 64, "width": 64, "resize": "longest"},
            "output": {"name": "logits"}, "classes": ["a", "b"]}
    assert parse_contract(data).input.resize == "longest"
    with pytest.raises(ContractError, match="stretch, letterbox or longest"):
        parse_contract({**data, "input": {**data["input"], "resize": "fill"}})
