"""Click simulation: interior-most first click, clicks in the largest error region with the right sign."""
from __future__ import annotations

import numpy as np

from openpixel_ros.inference.click_simulation import (first_click, interior_distance, next_click,
                                                     random_initial_clicks)


def square(h=40, w=60, top=10, left=20, size=20):
    mask = np.zeros((h, w), bool)
    mask[top:top + size, left:left + size] = True
    return mask


def test_first_click_is_the_interior_most_point():
    click = first_click(square())
    assert click.positive
    assert 19 <= click.row <= 20 and 29 <= click.col <= 30  # the centre of the 20x20 square
    assert click.xy == (click.col + 0.5, click.row + 0.5)
    assert first_click(np.zeros((5, 5), bool)) is None


def test_image_border_counts_as_a_boundary():
    mask = np.ones((9, 9), bool)
    distance = interior_distance(mask)
    assert distance[4, 4] == distance.max() and distance[0, 4] == 1.0


def test_next_click_is_positive_in_a_missed_region():
    gt = square()
    pred = gt.copy()
    pred[10:30, 20:28] = False  # missed the left part of the object
    click = next_click(pred, gt)
    assert click.positive and gt[click.row, click.col] and not pred[click.row, click.col]


def test_next_click_is_negative_in_a_false_positive_region():
    gt = square()
    pred = gt.copy()
    pred[0:40, 45:60] = True  # a large false positive on the right
    click = next_click(pred, gt)
    assert not click.positive and pred[click.row, click.col] and not gt[click.row, click.col]


def test_largest_error_wins_and_ignored_pixels_are_never_clicked():
    gt = square()
    pred = gt.copy()
    pred[10:13, 20:23] = False  # small miss
    pred[0:40, 45:60] = True  # big false positive
    assert not next_click(pred, gt).positive
    ignore = np.zeros_like(gt)
    ignore[:, 45:] = True
    click = next_click(pred, gt, ignore=ignore)
    assert click.positive and not ignore[click.row, click.col]
    assert next_click(gt, gt) is None


def test_sampled_clicks_stay_deep_inside_and_are_reproducible():
    gt = square()
    distance = interior_distance(gt)
    clicks = [first_click(gt, np.random.default_rng(s)) for s in range(20)]
    assert all(distance[c.row, c.col] >= 0.5 * distance.max() for c in clicks)
    assert len({(c.row, c.col) for c in clicks}) > 1
    assert first_click(gt, np.random.default_rng(3)) == first_click(gt, np.random.default_rng(3))


def test_random_initial_clicks_have_the_right_signs():
    gt = square()
    for seed in range(10):
        clicks = random_initial_clicks(gt, np.random.default_rng(seed), max_positive=3, max_negative=3)
        assert clicks[0].positive and 1 <= sum(c.positive for c in clicks) <= 3
        assert sum(not c.positive for c in clicks) <= 3
        assert all(gt[c.row, c.col] == c.positive for c in clicks)
    assert random_initial_clicks(np.zeros((5, 5), bool), np.random.default_rng(0)) == []
