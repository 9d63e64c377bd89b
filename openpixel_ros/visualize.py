"""Label image -> mask, colour image and overlay (what RViz shows)."""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np


def foreground_mask(labels: np.ndarray, foreground_ids: Sequence[int]) -> np.ndarray:
    """mono8 0/255: 255 where the label is one of ``foreground_ids``."""
    ids = list(foreground_ids)
    if labels.dtype == np.uint8:
        # A table lookup: ~10x faster than np.isin on a 1080p frame (0.4 against 4.7 ms).
        lut = np.zeros(256, np.uint8)
        lut[[i for i in ids if 0 <= i < 256]] = 255
        return cv2.LUT(labels, lut)
    if len(ids) == 1:
        hit = labels == ids[0]
    else:
        hit = np.isin(labels, ids)
    return hit.view(np.uint8) * np.uint8(255)


def colorize(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """rgb8 class colours; ``palette`` is ``[num_classes, 3]`` uint8 (ids beyond it render black)."""
    palette = np.asarray(palette, np.uint8).reshape(-1, 3)
    if labels.dtype == np.uint8:
        # cv2.LUT is ~10x faster than fancy indexing on large frames.
        lut = np.zeros((256, 1, 3), np.uint8)
        lut[:min(len(palette), 256), 0] = palette[:256]
        return cv2.LUT(cv2.merge([labels, labels, labels]), lut)
    table = np.zeros((65536, 3), np.uint8)
    table[:min(len(palette), 65536)] = palette[:65536]
    return table[labels]


def overlay(rgb: np.ndarray, color: np.ndarray, alpha: float, labels: np.ndarray = None,
            background_id: int = 0) -> np.ndarray:
    """Blend the colour image over the frame: ``(1-alpha)*rgb + alpha*color``.

    With ``labels`` given, background pixels keep the frame untouched, so only
    segmented objects are tinted.
    """
    blended = cv2.addWeighted(rgb, 1.0 - alpha, color, alpha, 0.0)
    if labels is None:
        return blended
    out = np.array(rgb, copy=True, order="C")
    cv2.copyTo(blended, (labels != background_id).view(np.uint8), out)
    return out


#: The per-frame image outputs, in the order the node and openpixel_bag produce them.
OUTPUTS = ("label", "mask", "color", "overlay")


def label_encoding(labels: np.ndarray) -> str:
    """Class ids: mono8, or mono16 beyond 256 classes."""
    return "mono8" if labels.dtype == np.uint8 else "mono16"


def render_outputs(rgb: np.ndarray, labels: np.ndarray, mask: np.ndarray, palette: np.ndarray, alpha: float,
                   wanted) -> dict:
    """``{output: (image, encoding)}`` for each of :data:`OUTPUTS` in ``wanted``, in that order.

    Only what is wanted is built; colour is computed once when both colour and overlay are.
    The node and openpixel_bag both publish exactly this (one definition of the outputs).
    """
    wanted = set(wanted)
    images = {}
    if "label" in wanted:
        images["label"] = (labels, label_encoding(labels))
    if "mask" in wanted:
        images["mask"] = (mask, "mono8")
    if "color" in wanted or "overlay" in wanted:
        color = colorize(labels, palette)
        if "color" in wanted:
            images["color"] = (color, "rgb8")
        if "overlay" in wanted:
            images["overlay"] = (overlay(rgb, color, alpha, labels), "rgb8")
    return images
