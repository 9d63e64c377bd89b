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


@pytest.mark.slow
def test_threads_sharing_a_segmentor_get_their_own_frame_masks(segmentor):
    """Issue 17: four threads clicking through one Segmentor got other frames' masks (IoU 0.08)
    and exceptions. Click inference now holds a lock around the engine's frame and prompt."""
    import threading
    rng = np.random.default_rng(1)
    frames = []
    for i in range(4):  # the same object at four places
        rgb = rng.integers(20, 70, (H, W, 3), dtype=np.uint8)
        rows, cols = np.mgrid[:H, :W]
        cx, cy = 70 + 60 * i, 80 + 25 * i
        obj = ((cols - cx) / 40.0) ** 2 + ((rows - cy) / 30.0) ** 2 <= 1
        rgb[obj] = rng.integers(190, 230, (int(obj.sum()), 3)).astype(np.uint8)
        frames.append((rgb, obj, (cx, cy)))
    expected = [segmentor.infer(rgb, clicks=[(x, y, 1)]).mask for rgb, _, (x, y) in frames]
    for (rgb, obj, _), mask in zip(frames, expected):
        assert iou(mask > 0, obj) > 0.8
    wrong, errors = [], []

    def clicker(index):
        rgb, _, (x, y) = frames[index]
        for _ in range(6):
            try:
                mask = segmentor.infer(rgb, clicks=[(x, y, 1)]).mask
            except Exception as exc:  # noqa: BLE001 - any exception is the fault
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            if not np.array_equal(mask, expected[index]):
                wrong.append(round(float(iou(mask > 0, expected[index] > 0)), 2))
    threads = [threading.Thread(target=clicker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and not wrong, f"{len(wrong)} wrong masks (IoUs {wrong[:8]}), errors {errors[:3]}"
