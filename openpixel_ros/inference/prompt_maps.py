"""Render click, scribble, box and previous-mask prompts into the OpenPixel decoder's ``prompts`` input.

numpy, SciPy and OpenCV only (no torch), so the promptable engine in the node and the
training code render prompts identically.

The maps live on the decoder's grid: the encoder's 1/4-resolution grid,
``ceil(H/4) x ceil(W/4)`` for an ``H x W`` model input. Prompt coordinates
are continuous pixel coordinates of the model input, as in
:mod:`openpixel_ros.interactive.prompts` (pixel ``k`` spans ``[k, k + 1)``, so
its centre is ``k + 0.5``); they map to the grid by the size ratio, keeping
sub-cell precision. Channels of the ``[4, gh, gw]`` float32 result:

0. positive clicks and scribbles: ``exp(-d^2 / (2 sigma^2))`` with ``d`` the
   distance to the nearest positive prompt (so 1 on a click);
1. negative clicks and scribbles, the same way;
2. the previous mask's object probability in [0, 1] (zeros when none);
3. the box: 1 on cells whose centre is inside it (zeros when none).

``sigma`` is given in model-input pixels.
"""
from __future__ import annotations

from typing import Optional, Sequence

import cv2
import numpy as np
from scipy import ndimage

PROMPT_CHANNELS = 4
POSITIVE, NEGATIVE, PREVIOUS_MASK, BOX = range(PROMPT_CHANNELS)
DEFAULT_SIGMA = 8.0  # model-input pixels (2 cells of the 1/4 grid)
GRID_STRIDE = 4


def grid_size(height: int, width: int, stride: int = GRID_STRIDE) -> tuple:
    """The decoder grid for a model input of ``height x width`` (sizes round up, as the encoder's)."""
    return -(-int(height) // stride), -(-int(width) // stride)


def _to_grid(points, scale_x: float, scale_y: float) -> np.ndarray:
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    # Continuous coordinates -> cell indices, whose centres sit at index + 0.5.
    return np.stack([pts[:, 0] * scale_x - 0.5, pts[:, 1] * scale_y - 0.5], axis=1)


def _prompt_gaussian(grid_hw, points: np.ndarray, scribbles: Sequence, scale_x: float, scale_y: float,
                     sigma_cells: float) -> np.ndarray:
    """Gaussian of the distance to the nearest point (exact, sub-cell) or scribble (rasterised)."""
    gh, gw = grid_hw
    nearest_sq = np.full(grid_hw, np.inf, np.float64)
    if len(points):
        ys, xs = np.mgrid[0:gh, 0:gw]
        for gx, gy in _to_grid(points, scale_x, scale_y):
            np.minimum(nearest_sq, (xs - gx) ** 2 + (ys - gy) ** 2, out=nearest_sq)
    if scribbles:
        seeds = np.zeros(grid_hw, np.uint8)
        for line in scribbles:
            pts = np.round(_to_grid(line, scale_x, scale_y)).astype(np.int32).reshape(-1, 1, 2)
            if len(pts) > 1:
                cv2.polylines(seeds, [pts], False, 1, 1)
            elif len(pts) == 1:
                cv2.circle(seeds, tuple(int(v) for v in pts[0, 0]), 0, 1, -1)
        if seeds.any():
            # The exact distance to the nearest seed (the EDT measures to the nearest zero, so invert
            # the seeds). Not cv2.distanceTransform: its precise mode differed in the last bit from
            # call to call, so training and evaluation were not reproducible.
            d = ndimage.distance_transform_edt(seeds == 0)
            np.minimum(nearest_sq, d * d, out=nearest_sq)
    return np.exp(-nearest_sq / (2.0 * sigma_cells * sigma_cells)).astype(np.float32)


def render_prompt_maps(input_hw: Sequence[int], positive: Sequence = (), negative: Sequence = (),
                       previous_mask: Optional[np.ndarray] = None, box: Optional[Sequence] = None,
                       positive_scribbles: Sequence = (), negative_scribbles: Sequence = (),
                       sigma: float = DEFAULT_SIGMA, stride: int = GRID_STRIDE) -> np.ndarray:
    """The ``[4, gh, gw]`` float32 prompt maps for a model input of ``input_hw = (H, W)``.

    ``positive``/``negative``: ``(x, y)`` model-input pixel coordinates;
    scribbles: polylines, each a sequence of ``(x, y)``; ``previous_mask``: a
    probability (or boolean) map of any size, resized onto the grid; ``box``:
    ``(x0, y0, x1, y1)``, top-left inclusive, bottom-right exclusive.
    """
    height, width = (int(v) for v in input_hw)
    gh, gw = grid_size(height, width, stride)
    scale_x, scale_y = gw / width, gh / height
    sigma_cells = sigma * 0.5 * (scale_x + scale_y)
    maps = np.zeros((PROMPT_CHANNELS, gh, gw), np.float32)
    maps[POSITIVE] = _prompt_gaussian((gh, gw), np.asarray(positive, np.float64).reshape(-1, 2),
                                      positive_scribbles, scale_x, scale_y, sigma_cells)
    maps[NEGATIVE] = _prompt_gaussian((gh, gw), np.asarray(negative, np.float64).reshape(-1, 2),
                                      negative_scribbles, scale_x, scale_y, sigma_cells)
    if previous_mask is not None:
        prev = np.asarray(previous_mask, np.float32)
        if prev.ndim != 2:
            raise ValueError(f"previous mask must be 2-D, got shape {prev.shape}")
        if prev.shape != (gh, gw):
            prev = cv2.resize(prev, (gw, gh), interpolation=cv2.INTER_AREA)
        maps[PREVIOUS_MASK] = np.clip(prev, 0.0, 1.0)
    if box is not None:
        x0, y0, x1, y1 = (float(v) for v in box)
        centres_x = (np.arange(gw) + 0.5) / scale_x  # cell centres in input pixel units (edges at 0 and W)
        centres_y = (np.arange(gh) + 0.5) / scale_y
        inside_x = (centres_x >= x0) & (centres_x < x1)
        inside_y = (centres_y >= y0) & (centres_y < y1)
        maps[BOX] = np.outer(inside_y, inside_x).astype(np.float32)
    return maps
