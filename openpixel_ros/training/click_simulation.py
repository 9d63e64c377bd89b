"""Click simulation from error regions (RITM-style), for training and for the standard evaluation protocol.

A click goes inside the largest error of the current prediction: the false
negatives and the false positives are each distance-transformed (the image
border counts as a boundary), and the error with the larger maximum distance
gets the click, positive for a false negative, negative for a false
positive. :func:`next_click` with ``rng=None`` is the deterministic protocol
(the interior-most point); with a generator it samples among the points at
least ``interior_fraction`` of that maximum deep, as training does so the
model sees varied clicks.

numpy + OpenCV only. Masks are HxW bool arrays; clicks are pixel indices
(row, column) plus a sign; :meth:`Click.xy` gives the continuous coordinates
of the pixel centre that the prompt renderers take.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np


@dataclass(frozen=True)
class Click:
    row: int
    col: int
    positive: bool

    @property
    def xy(self) -> tuple:
        """``(x, y)`` of the pixel centre in continuous pixel coordinates."""
        return self.col + 0.5, self.row + 0.5


def interior_distance(mask: np.ndarray) -> np.ndarray:
    """Distance of each ``mask`` pixel to the nearest non-mask pixel or the image border (0 outside)."""
    padded = np.pad(mask.astype(np.uint8), 1)
    distance = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return distance[1:-1, 1:-1]


def _pick(distance: np.ndarray, rng: Optional[np.random.Generator], interior_fraction: float) -> tuple:
    if rng is None:
        return np.unravel_index(int(np.argmax(distance)), distance.shape)
    rows, cols = np.nonzero(distance >= interior_fraction * distance.max())
    i = int(rng.integers(len(rows)))
    return int(rows[i]), int(cols[i])


def first_click(gt: np.ndarray, rng: Optional[np.random.Generator] = None,
                interior_fraction: float = 0.5) -> Optional[Click]:
    """The first, positive click: the object's interior-most point (or a sampled deep point); None if empty."""
    distance = interior_distance(np.asarray(gt, bool))
    if distance.max() <= 0:
        return None
    row, col = _pick(distance, rng, interior_fraction)
    return Click(int(row), int(col), True)


def next_click(pred: np.ndarray, gt: np.ndarray, ignore: Optional[np.ndarray] = None,
               rng: Optional[np.random.Generator] = None, interior_fraction: float = 0.5) -> Optional[Click]:
    """A click correcting ``pred`` towards ``gt`` inside the largest error region; None when there is no error.

    ``ignore`` marks pixels that are neither object nor background (not clicked, not scored).
    """
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    care = np.ones_like(gt) if ignore is None else ~np.asarray(ignore, bool)
    false_negative = gt & ~pred & care
    false_positive = pred & ~gt & care
    fn_distance = interior_distance(false_negative)
    fp_distance = interior_distance(false_positive)
    fn_max, fp_max = fn_distance.max(), fp_distance.max()
    if max(fn_max, fp_max) <= 0:
        return None
    positive = fn_max >= fp_max
    row, col = _pick(fn_distance if positive else fp_distance, rng, interior_fraction)
    return Click(int(row), int(col), bool(positive))


def random_initial_clicks(gt: np.ndarray, rng: np.random.Generator, max_positive: int = 3, max_negative: int = 3,
                          ignore: Optional[np.ndarray] = None, interior_fraction: float = 0.3) -> list:
    """Training's starting clicks: 1..max_positive inside the object, 0..max_negative outside it.

    The first is the object's (sampled) interior-most point; the rest are
    sampled among points at least ``interior_fraction`` of the maximum
    distance deep, so clicks keep off boundaries like a user's.
    """
    gt = np.asarray(gt, bool)
    care = np.ones_like(gt) if ignore is None else ~np.asarray(ignore, bool)
    clicks = []
    first = first_click(gt, rng)
    if first is None:
        return clicks
    clicks.append(first)
    inside = interior_distance(gt)
    outside = interior_distance(~gt & care)
    for distance, count, positive in ((inside, int(rng.integers(0, max_positive)), True),
                                      (outside, int(rng.integers(0, max_negative + 1)), False)):
        if distance.max() <= 0:
            continue
        for _ in range(count):
            row, col = _pick(distance, rng, interior_fraction)
            clicks.append(Click(row, col, positive))
    return clicks
