"""Render click, scribble, box and previous-mask prompts into the OpenPixel decoder's input maps.

numpy + OpenCV only (no torch), so the promptable engine in the node and the
training code render prompts identically.

Channels of the ``[4, H, W]`` float32 result (the decoder's ``prompts`` input):

0. positive clicks and scribbles: ``exp(-d^2 / (2 sigma^2))`` with ``d`` the
   distance to the nearest positive prompt pixel (so 1 on a click);
1. negative clicks and scribbles, the same way;
2. the previous mask's object probability in [0, 1] (zeros when none);
3. the box: 1 inside, 0 outside (zeros when none).
"""
from __future__ import annotations

from typing import Optional, Sequence

import cv2
import numpy as np

PROMPT_CHANNELS = 4
POSITIVE, NEGATIVE, PREVIOUS_MASK, BOX = range(PROMPT_CHANNELS)
DEFAULT_SIGMA = 5.0  # pixels at the model's input resolution


def distance_gaussian(seeds: np.ndarray, sigma: float) -> np.ndarray:
    """``exp(-d^2 / (2 sigma^2))`` of each pixel's distance ``d`` to the nearest nonzero pixel of ``seeds``."""
    if not seeds.any():
        return np.zeros(seeds.shape, np.float32)
    # distanceTransform measures the distance to the nearest zero pixel, so invert the seeds.
    distance = cv2.distanceTransform((seeds == 0).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return np.exp(-(distance * distance) / np.float32(2.0 * sigma * sigma)).astype(np.float32)


def _draw_seeds(shape, points: Sequence, scribbles: Sequence) -> np.ndarray:
    seeds = np.zeros(shape, np.uint8)
    h, w = shape
    for x, y in points:
        xi, yi = int(round(x)), int(round(y))
        if 0 <= xi < w and 0 <= yi < h:
            seeds[yi, xi] = 1
    for line in scribbles:
        pts = np.round(np.asarray(line, np.float64)).astype(np.int32).reshape(-1, 1, 2)
        if len(pts) == 1:
            cv2.circle(seeds, tuple(int(v) for v in pts[0, 0]), 0, 1, -1)
        elif len(pts) > 1:
            cv2.polylines(seeds, [pts], False, 1, 1)
    return seeds


def render_prompt_maps(height: int, width: int, positive: Sequence = (), negative: Sequence = (),
                       previous_mask: Optional[np.ndarray] = None, box: Optional[Sequence] = None,
                       positive_scribbles: Sequence = (), negative_scribbles: Sequence = (),
                       sigma: float = DEFAULT_SIGMA) -> np.ndarray:
    """The ``[4, height, width]`` float32 prompt maps.

    ``positive``/``negative`` are ``(x, y)`` pixel coordinates at the model's
    input resolution; scribbles are polylines, each a sequence of ``(x, y)``;
    ``previous_mask`` is an HxW probability or boolean mask at that
    resolution; ``box`` is ``(x0, y0, x1, y1)``, inclusive-exclusive.
    """
    maps = np.zeros((PROMPT_CHANNELS, height, width), np.float32)
    maps[POSITIVE] = distance_gaussian(_draw_seeds((height, width), positive, positive_scribbles), sigma)
    maps[NEGATIVE] = distance_gaussian(_draw_seeds((height, width), negative, negative_scribbles), sigma)
    if previous_mask is not None:
        prev = np.asarray(previous_mask, np.float32)
        if prev.shape != (height, width):
            raise ValueError(f"previous mask is {prev.shape}, expected {(height, width)}")
        maps[PREVIOUS_MASK] = np.clip(prev, 0.0, 1.0)
    if box is not None:
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        x0, x1 = sorted((max(0, min(width, x0)), max(0, min(width, x1))))
        y0, y1 = sorted((max(0, min(height, y0)), max(0, min(height, y1))))
        maps[BOX, y0:y1, x0:x1] = 1.0
    return maps
