"""Full-resolution mask boundaries: edge-aware upsampling of a coarse mask, guided by the frame.

A click decoder predicts on the encoder's 1/4 grid (120x90 for a 480x360 model input), so a
bilinearly upsampled mask cannot follow an object's edge inside a grid cell; at IoU 0.90 that
is what matters. The guided filter (He, Sun and Tang, ECCV 2010) fits, in every window of
``radius`` pixels, the mask probability as a linear function of the frame's grey level, so the
0.5 contour moves onto nearby image edges; it costs a handful of box filters (O(pixels)).
"""
from __future__ import annotations

import cv2
import numpy as np


def guided_filter(guide: np.ndarray, source: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """The grey-guide guided filter of ``source`` (float32 HxW) by ``guide`` (float32 HxW in [0, 1])."""
    size = (2 * int(radius) + 1,) * 2

    def box(x):
        return cv2.boxFilter(x, cv2.CV_32F, size, borderType=cv2.BORDER_REFLECT)

    mean_i, mean_p = box(guide), box(source)
    cov_ip = box(guide * source) - mean_i * mean_p
    var_i = box(guide * guide) - mean_i * mean_i
    a = cov_ip / (var_i + np.float32(eps))
    b = mean_p - a * mean_i
    return box(a) * guide + box(b)


def refine_probability(rgb: np.ndarray, probability: np.ndarray, cell: float, eps: float = 1e-2,
                       band: float = 0.02) -> np.ndarray:
    """``probability`` (float32 HxW, bilinearly upsampled from a grid of ``cell`` frame pixels per cell)
    snapped to the edges of ``rgb`` (HxWx3 uint8): the guided filter with a window of about one cell.

    Only the rectangle around the boundary band (``band < p < 1 - band``), widened by the filter's
    reach, is filtered; elsewhere the probability is returned as is (it is near 0 or 1 there, and
    so is the filter's output).
    """
    probability = probability.astype(np.float32, copy=False)
    radius = max(1, int(round(cell)))
    uncertain = (probability > band) & (probability < 1.0 - band)
    if not uncertain.any():
        return probability
    rows, cols = np.nonzero(uncertain.any(axis=1))[0], np.nonzero(uncertain.any(axis=0))[0]
    reach = 2 * radius + 1  # a box of boxes: the output sees 2 * radius pixels away
    h, w = probability.shape
    y0, y1 = max(0, rows[0] - reach), min(h, rows[-1] + 1 + reach)
    x0, x1 = max(0, cols[0] - reach), min(w, cols[-1] + 1 + reach)
    grey = cv2.cvtColor(rgb[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY).astype(np.float32) * np.float32(1 / 255)
    out = probability.copy()
    out[y0:y1, x0:x1] = guided_filter(grey, probability[y0:y1, x0:x1], radius, eps)
    return out
