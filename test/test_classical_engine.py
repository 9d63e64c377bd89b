"""The classical (GrabCut) prompt engine: guarantees, prompts of every kind, real GrabCut images."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import shared_path
from openpixel_ros.eval.click_protocol import evaluate_sample, iou
from openpixel_ros.inference.ground_truth import load_ground_truth
from openpixel_ros.eval.common import load_rgb, pair_by_stem
from openpixel_ros.interactive import ClickPrompt, create_prompt_engine

H, W = 240, 320


def _scene(seed=0):
    """Textured dark background, a bright ellipse (the object) and a bright square (a distractor)."""
    rng = np.random.default_rng(seed)
    rgb = rng.integers(20, 70, (H, W, 3), dtype=np.uint8)
    rows, cols = np.mgrid[:H, :W]
    ellipse = ((cols - 110) / 60.0) ** 2 + ((rows - 120) / 45.0) ** 2 <= 1
    square = (rows >= 90) & (rows < 150) & (cols >= 220) & (cols < 280)
    rgb[ellipse] = (rng.integers(190, 230, (int(ellipse.sum()), 3))).astype(np.uint8)
    rgb[square] = (rng.integers(190, 230, (int(square.sum()), 3))).astype(np.uint8)
    return rgb, ellipse, square


def _prompt(points, labels, **kwargs):
    return ClickPrompt.from_lists(points, labels, image_size=(H, W), **kwargs)


@pytest.fixture()
def engine():
    return create_prompt_engine("classical")


def test_one_click_selects_the_clicked_object_only(engine):
    rgb, ellipse, square = _scene()
    engine.set_image(rgb)
    result = engine.predict(_prompt([(110, 120)], [1]))
    assert result.mask.shape == (H, W) and result.mask.dtype == bool
    assert iou(ellipse, result.mask) > 0.95
    assert not (result.mask & square).any()  # same colour, but not connected to the click
    assert 0.8 < result.score <= 1.0
    assert set(result.timings) >= {"encoder_ms", "decoder_ms", "total_ms"}


def test_box_alone_segments_the_object_inside(engine):
    rgb, ellipse, _ = _scene()
    engine.set_image(rgb)
    result = engine.predict(_prompt([], [], box=(40, 65, 180, 176)))
    assert iou(ellipse, result.mask) > 0.95
    assert not result.mask[:, 180:].any() and not result.mask[:65].any()


def test_negative_click_removes_a_joined_part(engine):
    rgb, ellipse, square = _scene()
    rgb[110:130, 165:225] = rgb[120, 110]  # a bridge joins the ellipse to the square
    engine.set_image(rgb)
    both = engine.predict(_prompt([(110, 120)], [1]))
    assert (both.mask & square).sum() > 0.9 * square.sum()  # colour alone joins them
    corrected = engine.predict(_prompt([(110, 120), (250, 120)], [1, 0]))
    assert (corrected.mask & square).sum() < 0.1 * square.sum()
    assert (corrected.mask & ellipse).sum() > 0.95 * ellipse.sum()


@pytest.mark.slow
def test_clicks_are_always_respected(engine):
    """Whatever the image, positive clicks are in the mask and negative ones out of it,
    even when they contradict the image (a 'positive' click on background)."""
    rgb, _, _ = _scene(seed=3)
    engine.set_image(rgb)
    rng = np.random.default_rng(7)
    for _ in range(4):
        points = rng.uniform([0, 0], [W, H], size=(5, 2))
        labels = rng.integers(0, 2, 5)
        result = engine.predict(_prompt(points, labels))
        for (x, y), label in zip(points.astype(int), labels):
            assert result.mask[y, x] == bool(label)


def test_previous_mask_and_determinism(engine):
    rgb, ellipse, _ = _scene()
    engine.set_image(rgb)
    first = engine.predict(_prompt([(110, 120)], [1]))
    again = engine.predict(_prompt([(110, 120)], [1]))
    np.testing.assert_array_equal(first.mask, again.mask)
    refined = engine.predict(_prompt([(110, 120), (300, 10)], [1, 0], previous_mask=first.mask))
    assert iou(ellipse, refined.mask) > 0.95
    assert refined.low_res_logits is None


def _line_pixels(line):
    """(rows, cols) of the 1-pixel polyline through ``line``'s (x, y) vertices."""
    import cv2
    canvas = np.zeros((H, W), np.uint8)
    cv2.polylines(canvas, [np.floor(np.asarray(line)).astype(np.int32).reshape(-1, 1, 2)], False, 1, 1)
    return np.nonzero(canvas)


def test_positive_scribble_alone_selects_the_object(engine):
    rgb, ellipse, square = _scene()
    engine.set_image(rgb)
    stroke = [(75, 115), (110, 125), (145, 118)]  # along the ellipse's long axis
    result = engine.predict(_prompt([], [], scribbles=[stroke], scribble_labels=[1]))
    assert iou(ellipse, result.mask) > 0.95
    assert not (result.mask & square).any()
    assert result.mask[_line_pixels(stroke)].all()


def test_negative_scribble_removes_a_joined_part(engine):
    rgb, ellipse, square = _scene()
    rgb[110:130, 165:225] = rgb[120, 110]  # a bridge joins the ellipse to the square
    engine.set_image(rgb)
    stroke = [(80, 120), (140, 120)]
    both = engine.predict(_prompt([], [], scribbles=[stroke], scribble_labels=[1]))
    assert (both.mask & square).sum() > 0.9 * square.sum()  # colour alone joins them
    corrected = engine.predict(_prompt([], [], scribbles=[stroke, [(235, 100), (265, 140)]],
                                       scribble_labels=[1, 0]))
    assert (corrected.mask & square).sum() < 0.1 * square.sum()
    assert (corrected.mask & ellipse).sum() > 0.95 * ellipse.sum()


def test_negative_scribble_with_a_box_rejects_its_blob(engine):
    rgb, ellipse, square = _scene()
    engine.set_image(rgb)
    box = (40, 65, 290, 176)  # covers both bright shapes
    both = engine.predict(_prompt([], [], box=box))
    assert (both.mask & square).sum() > 0.9 * square.sum()
    corrected = engine.predict(_prompt([], [], box=box, scribbles=[[(230, 100), (270, 140)]], scribble_labels=[0]))
    assert (corrected.mask & square).sum() < 0.1 * square.sum()
    assert iou(ellipse, corrected.mask) > 0.9


def test_scribbles_are_always_respected(engine):
    """Scribble pixels get their label even against the image: a positive stroke over the
    background is in the mask, a negative stroke through the object is out of it."""
    rgb, ellipse, _ = _scene(seed=3)
    engine.set_image(rgb)
    positive = [(5.5, 200.2), (60.9, 230.7), (150, 210)]
    negative = [(110, 80), (110, 160)]
    result = engine.predict(_prompt([(110, 120)], [1], scribbles=[positive, negative, [(300.5, 5.5)]],
                                    scribble_labels=[1, 0, 1]))
    assert result.mask[_line_pixels(positive)].all()
    rows, cols = _line_pixels(negative)
    crossing = (rows == 120) & (cols == 110)  # the negative stroke crosses the positive click
    assert not result.mask[rows[~crossing], cols[~crossing]].any()
    assert result.mask[120, 110]  # clicks are drawn after scribbles: the click wins its own pixel
    assert result.mask[5, 300]  # a one-point scribble is a click


def test_large_frames_are_processed_at_the_working_size():
    rgb, ellipse, _ = _scene()
    big = np.repeat(np.repeat(rgb, 3, axis=0), 3, axis=1)  # 960x720
    big_truth = np.repeat(np.repeat(ellipse, 3, axis=0), 3, axis=1)
    engine = create_prompt_engine("classical", work_size=320)
    engine.set_image(big)
    result = engine.predict(ClickPrompt.from_lists([(330, 360)], [1], image_size=big.shape[:2]))
    assert result.mask.shape == big.shape[:2]
    assert iou(big_truth, result.mask) > 0.95


def test_score_is_lower_when_object_and_surroundings_look_alike(engine):
    rgb, _, _ = _scene()
    engine.set_image(rgb)
    clear = engine.predict(_prompt([(110, 120)], [1])).score
    rng = np.random.default_rng(1)
    noise = rng.integers(20, 230, (H, W, 3), dtype=np.uint8)  # no object at all
    engine.set_image(noise)
    vague = engine.predict(_prompt([(110, 120)], [1])).score
    assert 0.0 <= vague < clear


@pytest.mark.slow
def test_real_grabcut_images_reach_high_iou():
    """Three GrabCut benchmark images under the standard protocol, five clicks each."""
    pairs = pair_by_stem(shared_path("datasets", "grabcut", "images"), shared_path("datasets", "grabcut", "masks"))
    engine = create_prompt_engine("classical")
    ious_at_5 = []
    for stem, image_path, mask_path in pairs[:3]:
        ground_truth, ignore = load_ground_truth(mask_path)
        sample = evaluate_sample(engine, load_rgb(image_path), ground_truth, ignore, name=stem, max_clicks=5)
        ious_at_5.append(sample.iou_at(5))
    assert np.mean(ious_at_5) > 0.8  # measured 0.85; a broken engine scores far lower
