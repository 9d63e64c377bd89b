"""Training-sample augmentation: scale, crop, flip and lighting, then the node's own adaptation.

One :class:`SampleAugmenter` call turns a dataset sample into what the model
sees in the node: the geometry is drawn first (one affine warp does scale,
crop, padding and flip for the image and, nearest-neighbour, for the labels),
then a random lighting shift of ``eval lighting``'s family, then the package's
:class:`~openpixel_ros.adaptation.LightingAdapter` scores the augmented frame,
corrects it when it would in the node, and gives the conditioning vector. So
FiLM learns from the very statistics it gets at run time.
"""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from openpixel_ros.adaptation import AdaptationConfig, LightingAdapter, CONDITIONING_SIZE
from openpixel_ros.lighting_shifts import random_lighting_shift

from .config import DataConfig


def geometry_matrix(crop_hw, scale: float, origin, flip: bool) -> np.ndarray:
    """2x3 affine matrix: source pixel centres scaled by ``scale``, shifted so the crop starts at
    ``origin`` (x, y, in scaled pixels; negative pads), mirrored when ``flip``."""
    x0, y0 = origin
    tx = 0.5 * scale - 0.5 - x0
    ty = 0.5 * scale - 0.5 - y0
    if flip:
        return np.array([[-scale, 0.0, crop_hw[1] - 1 - tx], [0.0, scale, ty]], np.float64)
    return np.array([[scale, 0.0, tx], [0.0, scale, ty]], np.float64)


def _origin(rng: np.random.Generator, scaled: float, crop: int) -> float:
    """Crop start along one axis: inside the scaled image, or a random pad when it is smaller."""
    slack = scaled - crop
    return float(rng.uniform(0, slack)) if slack >= 0 else -float(rng.uniform(0, -slack))


class SampleAugmenter:
    """``(rgb, labels, rng) -> (rgb, labels, conditioning)`` per :class:`DataConfig`."""

    def __init__(self, data: DataConfig, conditioning_size: int):
        self.data = data
        self.conditioning_size = conditioning_size
        if conditioning_size not in (0, CONDITIONING_SIZE):
            raise ValueError(f"conditioning_size must be 0 or {CONDITIONING_SIZE} (the adaptation vector)")
        self._adapters = {True: LightingAdapter(AdaptationConfig(enabled=True)),
                          False: LightingAdapter(AdaptationConfig(enabled=False))}

    def geometry(self, rgb: np.ndarray, labels: np.ndarray, rng: np.random.Generator):
        d = self.data
        h, w = labels.shape
        crop_hw = (d.crop_height, d.crop_width) if d.crop_height else (h, w)
        scale = float(rng.uniform(d.scale_min, d.scale_max)) if d.scale_max > d.scale_min else d.scale_min
        flip = bool(d.hflip and rng.random() < 0.5)
        if scale == 1.0 and crop_hw == (h, w):
            if flip:
                rgb, labels = rgb[:, ::-1], labels[:, ::-1]
            return np.ascontiguousarray(rgb), np.ascontiguousarray(labels)
        origin = (_origin(rng, w * scale, crop_hw[1]), _origin(rng, h * scale, crop_hw[0]))
        matrix = geometry_matrix(crop_hw, scale, origin, flip)
        size = (crop_hw[1], crop_hw[0])
        rgb = cv2.warpAffine(rgb, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                             borderValue=(0, 0, 0))
        labels = cv2.warpAffine(labels, matrix, size, flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                                borderValue=int(d.ignore_index))
        return rgb, labels

    def __call__(self, rgb: np.ndarray, labels: np.ndarray, rng: np.random.Generator):
        d = self.data
        rgb, labels = self.geometry(rgb, labels, rng)
        if d.lighting_prob and rng.random() < d.lighting_prob:
            rgb, _ = random_lighting_shift(rgb, rng)
        conditioning: Optional[np.ndarray] = None
        if self.conditioning_size:
            adapter = self._adapters[bool(rng.random() < d.correction_prob)]
            adapter.reset()  # stills: no history, as in eval lighting
            rgb, state = adapter.process(rgb)
            conditioning = adapter.conditioning_vector(state)
            if d.conditioning_dropout and rng.random() < d.conditioning_dropout:
                conditioning = np.zeros_like(conditioning)
        return np.ascontiguousarray(rgb), labels, conditioning

