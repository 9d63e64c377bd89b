"""Click simulation from error regions (RITM-style), for training and for the standard evaluation protocol.

A click goes inside the largest error of the current prediction: the false
negatives and the false positives are each distance-transformed (the image
border counts as a boundary), and the error with the larger maximum distance
gets the click, positive for a false negative, negative for a false
positive. :func:`next_click` with ``rng=None`` is the deterministic protocol
(the interior-most point); with a generator it samples among the points at
least ``interior_fraction`` of that maximum deep, as training does so the
model sees varied clicks.

numpy, SciPy and OpenCV only. Masks are HxW bool arrays; clicks are pixel indices
(row, column) plus a sign; :meth:`Click.xy` gives the continuous coordinates
of the pixel centre that the prompt renderers take.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np
from scipy import ndimage


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
    padded = np.pad(np.asarray(mask, bool), 1)
    # Exact and reproducible (cv2.distanceTransform's precise mode varied in the last bit from call
    # to call, which moved clicks between near-ties): float32, as the protocol has always ranked.
    distance = ndimage.distance_transform_edt(padded).astype(np.float32)
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


# -- scribbles -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Scribble:
    """A stroke: ``points`` are ``(x, y)`` pixel centres in continuous coordinates, as :attr:`Click.xy`."""

    points: tuple
    positive: bool


def scribble_in(region: np.ndarray, positive: bool, rng: Optional[np.random.Generator] = None,
                depth_fraction: float = 0.3, step: float = 3.0) -> Optional[Scribble]:
    """A stroke a user would draw inside ``region``: through its interior-most point (a sampled deep
    point with ``rng``), along the main axis of the region's core (the pixels at least
    ``depth_fraction`` of the maximum depth deep), ending where it would leave the core.

    With ``rng`` the direction is jittered and each half of the stroke is randomly shortened, so
    training sees varied strokes; without it the stroke is deterministic (the scribble protocol).
    Returns None for an empty region.
    """
    distance = interior_distance(np.asarray(region, bool))
    deepest = float(distance.max())
    if deepest <= 0:
        return None
    row, col = _pick(distance, rng, 0.5)
    core = (distance >= max(depth_fraction * deepest, 1e-6)).astype(np.uint8)
    core[row, col] = 1
    _, components = cv2.connectedComponents(core, connectivity=8)
    ys, xs = np.nonzero(components == components[row, col])
    angle = 0.0
    if len(xs) > 2:
        cov = np.cov(np.stack([xs, ys]).astype(np.float64))
        values, vectors = np.linalg.eigh(cov)
        axis = vectors[:, int(np.argmax(values))]
        # An eigenvector's sign is arbitrary, and LAPACK's choice varied from run to run here (with
        # memory alignment): fix it, or a stroke's two halves swap and a resumed run is not exact.
        if axis[0] < 0 or (axis[0] == 0 and axis[1] < 0):
            axis = -axis
        angle = float(np.arctan2(axis[1], axis[0]))
    if rng is not None:
        angle += float(rng.normal(0.0, 0.35))
    inside = components == components[row, col]
    h, w = inside.shape
    halves = []
    for direction in (1.0, -1.0):
        dx, dy = direction * step * np.cos(angle), direction * step * np.sin(angle)
        x, y, half = float(col), float(row), []
        while True:
            x, y = x + dx, y + dy
            c, r = int(round(x)), int(round(y))
            if not (0 <= c < w and 0 <= r < h and inside[r, c]):
                break
            half.append((c, r))
        if rng is not None and half:
            half = half[:max(1, int(round(len(half) * rng.uniform(0.4, 1.0))))]
        halves.append(half)
    pixels = halves[1][::-1] + [(col, row)] + halves[0]
    return Scribble(tuple((c + 0.5, r + 0.5) for c, r in pixels), bool(positive))


def largest_error(pred: np.ndarray, gt: np.ndarray, ignore: Optional[np.ndarray] = None):
    """``(region, positive)``: the false negatives or false positives, whichever error is deeper
    (false negatives on ties, as :func:`next_click`); None when there is no error."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    care = np.ones_like(gt) if ignore is None else ~np.asarray(ignore, bool)
    false_negative = gt & ~pred & care
    false_positive = pred & ~gt & care
    fn_max, fp_max = interior_distance(false_negative).max(), interior_distance(false_positive).max()
    if max(fn_max, fp_max) <= 0:
        return None
    return (false_negative, True) if fn_max >= fp_max else (false_positive, False)


def next_scribble(pred: np.ndarray, gt: np.ndarray, ignore: Optional[np.ndarray] = None,
                  rng: Optional[np.random.Generator] = None) -> Optional[Scribble]:
    """A corrective stroke inside the largest error of ``pred`` (positive in a false negative)."""
    error = largest_error(pred, gt, ignore)
    if error is None:
        return None
    return scribble_in(error[0], error[1], rng)
