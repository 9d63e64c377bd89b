"""ClickPrompt validation, PromptResult geometry and the prompt-engine registry."""
from __future__ import annotations

import math

import numpy as np
import pytest

from openpixel_ros.interactive import (DEFAULT_PROMPT_ENGINE, ClickPrompt, PromptError, PromptResult,
                                       create_prompt_engine, prompt_engine_names, register_prompt_engine)

SIZE = (480, 640)  # (height, width)


def test_valid_prompt_is_normalised():
    mask = np.zeros(SIZE, np.uint8)
    mask[10:20, 30:40] = 255
    prompt = ClickPrompt.from_lists([(0, 0), (639.5, 479.9)], [1, 0], box=(0, 0, 640, 480),
                                    previous_mask=mask, image_size=SIZE)
    assert prompt.points.dtype == np.float32 and prompt.points.shape == (2, 2)
    assert prompt.labels.dtype == np.uint8 and prompt.labels.tolist() == [1, 0]
    assert prompt.box == (0.0, 0.0, 640.0, 480.0)
    assert prompt.previous_mask.dtype == bool and prompt.previous_mask.sum() == 100
    assert prompt.image_size == SIZE
    assert prompt.pixel_indices().tolist() == [[0, 0], [639, 479]]
    assert prompt.positive_points.tolist() == [[0, 0]]
    with pytest.raises(ValueError):
        prompt.points[0, 0] = 5  # read-only: a prompt cannot change behind an engine's back


def test_box_only_and_array_inputs():
    prompt = ClickPrompt.from_lists(np.zeros((0, 2)), np.zeros(0), box=[1, 2, 3, 4], image_size=SIZE)
    assert len(prompt.points) == 0 and prompt.box == (1.0, 2.0, 3.0, 4.0)


@pytest.mark.parametrize("points, labels, kwargs, message", [
    ([], [], {}, "no points, no scribbles and no box"),
    ([(700.0, 10.0)], [1], {}, "point 0 (700.0, 10.0) is outside the 640x480 image"),
    ([(5, 5), (1, 1), (700.0, 10.0)], [1, 0, 1], {}, "point 2 (700.0, 10.0) is outside the 640x480 image"),
    ([(640, 10)], [1], {}, "outside the 640x480 image"),        # x == width is past the last column
    ([(-0.5, 10)], [1], {}, "outside"),
    ([(math.nan, 3.0)], [1], {}, "point 0 (nan, 3.0) has a non-finite coordinate"),
    ([(1.0, math.inf)], [1], {}, "non-finite"),
    ([(1, 1), (2, 2)], [1], {}, "got 1 labels for 2 points"),
    ([(1, 1)], [1, 0], {}, "got 2 labels for 1 points"),
    ([(1, 1)], [2], {}, "label 0 is 2; labels must be 1 (object) or 0 (background)"),
    ([(1, 1)], [-1], {}, "label 0 is -1"),
    ([(1, 2, 3)], [1], {}, "points must be (x, y) pairs"),
    ([("a", "b")], [1], {}, "points must be (x, y) number pairs"),
    ([(1, 1)], [1], {"box": (10, 10, 5, 20)}, "box (10.0, 10.0, 5.0, 20.0) is degenerate"),
    ([(1, 1)], [1], {"box": (10, 10, 10, 20)}, "degenerate"),
    ([(1, 1)], [1], {"box": (0, 0, 641, 480)}, "box (0.0, 0.0, 641.0, 480.0) is outside the 640x480 image"),
    ([(1, 1)], [1], {"box": (-1, 0, 10, 10)}, "outside"),
    ([(1, 1)], [1], {"box": (0, 0, 10)}, "box must be 4 numbers"),
    ([(1, 1)], [1], {"box": (0, 0, math.nan, 10)}, "non-finite"),
    ([(1, 1)], [1], {"previous_mask": np.zeros((480, 641), bool)},
     "previous mask is 641x480 but the image is 640x480"),
    ([(1, 1)], [1], {"previous_mask": np.zeros((480, 640, 3), bool)}, "single-channel"),
])
def test_invalid_prompts_name_the_problem(points, labels, kwargs, message):
    with pytest.raises(PromptError) as info:
        ClickPrompt.from_lists(points, labels, image_size=SIZE, **kwargs)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


def test_scribbles_are_stored_read_only_and_split_by_label():
    line = [(10, 20), (40.5, 25), (60, 30)]
    prompt = ClickPrompt.from_lists([], [], image_size=SIZE, scribbles=[line, np.array([[5.0, 6.0]])],
                                    scribble_labels=[1, 0])
    assert len(prompt.points) == 0 and prompt.box is None  # scribbles alone are a prompt
    assert len(prompt.scribbles) == 2 and isinstance(prompt.scribbles, tuple)
    assert prompt.scribbles[0].dtype == np.float32 and prompt.scribbles[0].shape == (3, 2)
    assert prompt.scribbles[0].tolist() == [[10, 20], [40.5, 25], [60, 30]]
    assert prompt.scribble_labels.dtype == np.uint8 and prompt.scribble_labels.tolist() == [1, 0]
    assert [s.tolist() for s in prompt.positive_scribbles] == [[[10, 20], [40.5, 25], [60, 30]]]
    assert [s.tolist() for s in prompt.negative_scribbles] == [[[5, 6]]]
    with pytest.raises(ValueError):
        prompt.scribbles[0][0, 0] = 1
    with pytest.raises(ValueError):
        prompt.scribble_labels[0] = 0


def test_prompt_without_scribbles_has_empty_ones():
    prompt = ClickPrompt.from_lists([(1, 1)], [1], image_size=SIZE)
    assert prompt.scribbles == () and prompt.scribble_labels.shape == (0,)
    assert prompt.positive_scribbles == () and prompt.negative_scribbles == ()


@pytest.mark.parametrize("scribbles, labels, message", [
    ([[]], [1], "scribble 0 is empty; a scribble needs at least one point"),
    ([[(1, 1)], np.zeros((0, 2))], [1, 0], "scribble 1 is empty"),
    ([[(1, 1)], [(1, 2, 3)]], [1, 1], "scribble 1 must be a list of (x, y) pairs, got an array of shape (1, 3)"),
    ([[("a", "b")]], [1], "scribble 0 must be a list of (x, y) number pairs"),
    ([[(1, 1), (2,)]], [1], "scribble 0 must be a list of (x, y)"),
    (np.zeros((3, 2)), [1], "scribbles must be a list of polylines"),
    ([[(1, 1), (math.nan, 4.0)]], [1], "scribble 0 point 1 (nan, 4.0) has a non-finite coordinate"),
    ([[(1, 1)], [(2, 2), (3, math.inf)]], [1, 0], "scribble 1 point 1 (3.0, inf) has a non-finite coordinate"),
    ([[(1, 1), (640.0, 10.0)]], [1], "scribble 0 point 1 (640.0, 10.0) is outside the 640x480 image"),
    ([[(1, 1), (5, -0.5)]], [1], "scribble 0 point 1 (5.0, -0.5) is outside the 640x480 image"),
    ([[(1, 1)], [(2, 2)]], [1], "got 1 scribble labels for 2 scribbles; give one label per scribble"),
    ([[(1, 1)]], [], "got 0 scribble labels for 1 scribbles"),
    ([[(1, 1)], [(2, 2)]], [1, 2], "scribble 1 label is 2; labels must be 1 (object) or 0 (background)"),
    ([[(1, 1)]], ["x"], "scribble labels must be numbers"),
    ([[(1, 1)]], [(1, 0)], "scribble labels must be one number per scribble"),
    ([np.ones((6000, 2)), np.ones((4001, 2))], [1, 0], "the scribbles hold more than 10000 points"),
])
def test_invalid_scribbles_name_the_problem(scribbles, labels, message):
    with pytest.raises(PromptError) as info:
        ClickPrompt.from_lists([(1, 1)], [1], image_size=SIZE, scribbles=scribbles, scribble_labels=labels)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_scribble_point_cap_is_inclusive():
    prompt = ClickPrompt.from_lists([], [], image_size=SIZE, scribbles=[np.ones((6000, 2)), np.ones((4000, 2))],
                                    scribble_labels=[1, 0])
    assert sum(len(s) for s in prompt.scribbles) == 10000


def test_prompt_result_geometry():
    mask = np.zeros(SIZE, bool)
    mask[100:150, 200:260] = True
    result = PromptResult(masks=[mask, np.ones(SIZE, bool)], scores=[0.75, 0.5])
    assert result.mask is mask and result.score == 0.75
    assert result.bbox == (200, 100, 60, 50)
    assert result.area == 3000
    empty = PromptResult(masks=[np.zeros(SIZE, bool)], scores=[0.0])
    assert empty.bbox is None and empty.area == 0


def test_registry_names_and_errors():
    assert {"classical", "sam", "openpixel"} <= set(prompt_engine_names())
    assert DEFAULT_PROMPT_ENGINE == "openpixel"
    assert create_prompt_engine("Classical").name == "classical"
    with pytest.raises(PromptError, match="unknown prompt engine 'nope'"):
        create_prompt_engine("nope")
    packaged = create_prompt_engine("openpixel")  # no model: the packaged default pair
    assert packaged.name == "openpixel"
    packaged.close()
    with pytest.raises(PromptError, match="prompt model file not found"):
        create_prompt_engine("openpixel", "missing.encoder.onnx")
    with pytest.raises(PromptError, match="takes no model"):
        create_prompt_engine("classical", "model.onnx")
    with pytest.raises(PromptError, match="does not take that option"):
        create_prompt_engine("classical", bogus=1)


def test_registered_engine_replaces_a_placeholder():
    from openpixel_ros.interactive import _FACTORIES

    original = _FACTORIES["openpixel"]
    try:
        register_prompt_engine("openpixel", lambda model, **options: create_prompt_engine("classical"))
        assert create_prompt_engine("openpixel").name == "classical"
    finally:
        register_prompt_engine("openpixel", original)


def test_more_than_max_points_is_one_line():
    from openpixel_ros.interactive.prompts import MAX_POINTS
    points = [(1.0, 1.0)] * MAX_POINTS
    assert len(ClickPrompt.from_lists(points, [1] * MAX_POINTS, image_size=(4, 4)).positive_points) == MAX_POINTS
    with pytest.raises(PromptError, match=f"^{MAX_POINTS + 1} points; a prompt holds at most {MAX_POINTS}$"):
        ClickPrompt.from_lists(points + [(1.0, 1.0)], [1] * (MAX_POINTS + 1), image_size=(4, 4))
