"""Photometric lighting shifts: the family that ``eval lighting`` scores and the trainer draws from.

Plain numpy on RGB uint8 frames. :data:`SHIFTS` holds the fixed, named
shifts of the evaluation; :func:`random_lighting_shift` draws a shift of the
same family with random strength, for training augmentation.
"""
from __future__ import annotations

import numpy as np


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.round(values), 0, 255).astype(np.uint8)


def darken(rgb: np.ndarray, factor: float) -> np.ndarray:
    """Exposure cut: every channel times ``factor``."""
    return _to_uint8(rgb.astype(np.float32) * factor)


def gamma_shift(rgb: np.ndarray, gamma: float) -> np.ndarray:
    """Tone-curve shift ``255 (x/255)^gamma``: gamma < 1 washes out, gamma > 1 crushes shadows."""
    return _to_uint8(255.0 * (rgb.astype(np.float32) / 255.0) ** gamma)


def low_contrast(rgb: np.ndarray, keep: float = 0.35) -> np.ndarray:
    """Haze-like flattening: pixels pulled towards the frame's mean grey, keeping ``keep`` of the contrast."""
    x = rgb.astype(np.float32)
    return _to_uint8(x.mean() + keep * (x - x.mean()))


def dusk(rgb: np.ndarray, rng: np.random.Generator, noise: bool = True, gamma: float = 1.5,
         exposure: float = 0.3, tint=(0.9, 1.0, 1.1), read_noise: float = 2.0, shot_noise: float = 0.5) -> np.ndarray:
    """Dusk: shadows crushed (``gamma``), exposure cut (``exposure``), a slight blue cast (``tint``),
    then sensor noise: Gaussian with variance ``read_noise^2 + shot_noise * signal``."""
    x = 255.0 * (rgb.astype(np.float32) / 255.0) ** gamma * exposure
    x *= np.asarray(tint, np.float32)
    if noise:
        sigma = np.sqrt(read_noise ** 2 + shot_noise * x)
        x = x + sigma * rng.standard_normal(x.shape, dtype=np.float32)
    return _to_uint8(x)


#: name -> shift(rgb, rng). Fixed; ``rng`` is seeded per image, so runs are repeatable.
SHIFTS = {
    "dark_0.25": lambda rgb, rng: darken(rgb, 0.25),
    "dark_0.5": lambda rgb, rng: darken(rgb, 0.5),
    "gamma_0.4": lambda rgb, rng: gamma_shift(rgb, 0.4),
    "gamma_2.5": lambda rgb, rng: gamma_shift(rgb, 2.5),
    "low_contrast": lambda rgb, rng: low_contrast(rgb),
    "dusk_noise": lambda rgb, rng: dusk(rgb, rng),
}
#: Extra shifts, selectable with ``--shifts``, not in the default set.
EXTRA_SHIFTS = {
    "dusk_clean": lambda rgb, rng: dusk(rgb, rng, noise=False),
}


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def random_lighting_shift(rgb: np.ndarray, rng: np.random.Generator):
    """One random shift of the evaluation's family, at a random strength: ``(frame, name)``.

    Strength ranges bracket the evaluation's fixed settings (a model trained on
    them sees the evaluated conditions, and milder and harsher ones too).
    """
    kind = ("dark", "gamma", "low_contrast", "dusk")[int(rng.integers(4))]
    if kind == "dark":
        return darken(rgb, _log_uniform(rng, 0.15, 0.8)), kind
    if kind == "gamma":
        gamma = _log_uniform(rng, 0.35, 0.8) if rng.random() < 0.5 else _log_uniform(rng, 1.3, 3.0)
        return gamma_shift(rgb, gamma), kind
    if kind == "low_contrast":
        return low_contrast(rgb, float(rng.uniform(0.25, 0.7))), kind
    tint = 1.0 + rng.uniform(-0.12, 0.12, 3)
    return dusk(rgb, rng, noise=bool(rng.random() < 0.7), gamma=float(rng.uniform(1.2, 1.8)),
                exposure=_log_uniform(rng, 0.2, 0.5), tint=tint, read_noise=float(rng.uniform(0.5, 3.0)),
                shot_noise=float(rng.uniform(0.1, 0.8))), kind
