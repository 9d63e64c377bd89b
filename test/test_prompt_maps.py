"""Prompt maps for the OpenPixel decoder (numpy only): grid, click Gaussians, scribbles, box, previous mask."""
from __future__ import annotations

import numpy as np
import pytest

from openpixel_ros.inference.prompt_maps import (BOX, NEGATIVE, POSITIVE, PREVIOUS_MASK, grid_size,
                                                 render_prompt_maps)


def test_grid_rounds_up_like_the_encoder():
    assert grid_size(360, 480) == (90, 120)
    assert grid_size(257, 255) == (65, 64)


def test_empty_prompt_is_all_zero():
    maps = render_prompt_maps((40, 60))
    assert maps.shape == (4, 10, 15) and maps.dtype == np.float32 and not maps.any()


def test_click_gaussian_peaks_at_the_click_with_sub_cell_position():
    # Pixel (col 21, row 13) has its centre at (21.5, 13.5): grid cell (5, 3) + (0.375, 0.375) of a cell.
    maps = render_prompt_maps((40, 60), positive=[(21.5, 13.5)], negative=[(2.0, 2.0)], sigma=4.0)
    pos = maps[POSITIVE]
    assert np.unravel_index(np.argmax(pos), pos.shape) == (3, 5)
    gy, gx = 13.5 / 4 - 0.5, 21.5 / 4 - 0.5
    ys, xs = np.mgrid[0:10, 0:15]
    expected = np.exp(-((xs - gx) ** 2 + (ys - gy) ** 2) / (2 * 1.0 ** 2))
    np.testing.assert_allclose(pos, expected, atol=1e-6)
    assert maps[NEGATIVE][0, 0] > 0.9 and maps[NEGATIVE][9, 14] < 1e-6


def test_two_clicks_take_the_nearest():
    maps = render_prompt_maps((40, 40), positive=[(2, 2), (38, 38)], sigma=4.0)
    assert maps[POSITIVE][0, 0] > 0.5 and maps[POSITIVE][9, 9] > 0.5 and maps[POSITIVE][5, 0] < 0.1


def test_scribble_covers_its_line():
    # y = 18 is grid row 4 exactly (18 / 4 - 0.5); x = 2 .. 78 spans grid columns 0 .. 19.
    maps = render_prompt_maps((40, 80), positive_scribbles=[[(2, 18), (78, 18)]], sigma=4.0)
    row = maps[POSITIVE][4]
    assert (row > 0.99).all()
    assert maps[POSITIVE][0].max() < 0.01


def test_box_is_inclusive_exclusive_on_cell_centres():
    maps = render_prompt_maps((40, 40), box=(8, 4, 24, 40))
    box = maps[BOX]
    # Cells whose centre (4j + 2) lies in [8, 24) x [4, 40): columns 2..5, rows 1..9.
    expected = np.zeros((10, 10), np.float32)
    expected[1:10, 2:6] = 1
    np.testing.assert_array_equal(box, expected)


def test_previous_mask_is_resized_onto_the_grid():
    prev = np.zeros((40, 40), bool)
    prev[:, :20] = True
    maps = render_prompt_maps((40, 40), previous_mask=prev)
    np.testing.assert_array_equal(maps[PREVIOUS_MASK][:, :5], 1.0)
    np.testing.assert_array_equal(maps[PREVIOUS_MASK][:, 5:], 0.0)
    with pytest.raises(ValueError):
        render_prompt_maps((40, 40), previous_mask=np.zeros((2, 2, 2)))


def test_the_prompt_engine_side_and_the_inference_floor_never_import_torch():
    import subprocess
    import sys
    code = ("import sys, openpixel_ros.inference.prompt_maps, openpixel_ros.inference.click_simulation, "
            "openpixel_ros.inference.ground_truth, openpixel_ros.inference.confusion_matrix, "
            "openpixel_ros.interactive.openpixel_engine, openpixel_ros.interactive.click_network_engine; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
