"""Segmentor.infer with prompts (no ROS): clicks, scribbles and boxes reach the prompt engine."""
from __future__ import annotations

import numpy as np
import pytest

from onnx_models import linear_classifier
from openpixel_ros.eval.click_protocol import iou
from openpixel_ros.interactive import PromptError
from openpixel_ros.segmentor import Segmentor

H, W = 240, 320


def _scene():
    """Textured dark background and a bright ellipse (the object)."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(20, 70, (H, W, 3), dtype=np.uint8)
    rows, cols = np.mgrid[:H, :W]
    ellipse = ((cols - 110) / 60.0) ** 2 + ((rows - 120) / 45.0) ** 2 <= 1
    rgb[ellipse] = rng.integers(190, 230, (int(ellipse.sum()), 3)).astype(np.uint8)
    return rgb, ellipse


@pytest.fixture(scope="module")
def segmentor(tmp_path_factory):
    model = tmp_path_factory.mktemp("segmentor") / "linear.onnx"
    linear_classifier(model, np.eye(3, dtype=np.float32), np.zeros(3, np.float32))
    seg = Segmentor(model, threads=1, adaptation=None, prompt_engine="classical")
    yield seg
    seg.close()


def test_scribbles_alone_take_the_click_path(segmentor):
    rgb, ellipse = _scene()
    result = segmentor.infer(rgb, scribbles=[([(75, 115), (110, 125), (145, 118)], 1)])
    assert result.mask.dtype == np.uint8 and result.mask.shape == (H, W)
    assert iou(ellipse, result.mask == 255) > 0.95
    assert result.labels.shape == (H, W)  # the label image comes along
    assert "click_total_ms" in result.timings
    # A negative scribble over part of the object carves it out of the mask.
    carved = segmentor.infer(rgb, clicks=[(110, 120, 1)], scribbles=[([(60, 60), (60, 180)], 0)])
    assert not (carved.mask[60:181, 60] == 255).any() and carved.mask[120, 110] == 255


def test_no_prompt_is_semantic_segmentation(segmentor):
    rgb, _ = _scene()
    assert segmentor.infer(rgb, scribbles=[]).labels is not None
    np.testing.assert_array_equal(segmentor.infer(rgb, scribbles=[]).mask, segmentor.infer(rgb).mask)


@pytest.mark.parametrize("scribbles, message", [
    ([[(10, 20), (40, 25), (50, 30)]], "scribble 0 must be a (polyline, label) pair"),  # a bare polyline
    ([[(10, 20), (40, 25)]], "scribble 0 must be a (polyline, label) pair"),  # a two-point bare polyline
    ([([(10, 20)], 1), ([], 0)], "scribble 1 is empty"),
    ([([(10, 20), (400, 25)], 1)], "scribble 0 point 1 (400.0, 25.0) is outside the 320x240 image"),
    ([([(10, 20)], 3)], "scribble 0 label is 3"),
])
def test_bad_scribbles_raise_a_prompt_error(segmentor, scribbles, message):
    rgb, _ = _scene()
    with pytest.raises(PromptError) as info:
        segmentor.infer(rgb, scribbles=scribbles)
    assert message in str(info.value) and "\n" not in str(info.value)
