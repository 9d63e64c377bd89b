"""Lighting adaptation: a per-frame exposure/complexity score and a correction driven by it.

Per frame, :class:`LightingAdapter` does

1. **Statistics** (:func:`compute_stats`) on a decimated luminance image (at most
   ``max_side`` pixels a side): the Shannon entropy of the 256-bin luminance
   histogram divided by 8 bits, the mean luminance, the contrast (luminance
   standard deviation), the fractions of clipped dark and bright pixels and the
   1st luminance percentile (lifted blacks: washed out or hazy).
2. **Score** (:func:`complexity_score`): how far those statistics fall outside
   daylight's range, combined into one number in [0, 1] (0 = well exposed).
3. **Smoothing** (:class:`ScoreSmoother`): an EMA with a dead band, so the score
   and the correction do not flicker; the correction switches on above
   ``activation_score`` and off below ``release_score`` (hysteresis).
4. **Correction**, only while active, with a strength that grows with the
   smoothed score: noise-scaled denoising *before* any brightening, a tone curve
   (black level + gain + gamma, towards daylight's luminance levels) applied as
   one lookup table, and contrast-limited equalisation (CLAHE) of the luminance.
   A well-exposed frame is returned unchanged: the very same array.
5. **Conditioning** (:meth:`LightingAdapter.conditioning_vector`): the score and
   statistics as a float32 vector for models that declare a conditioning input
   (layout: :data:`openpixel_ros.model_contract.CONDITIONING_LAYOUT`). Nothing rewrites weights at run time.

``mode="naive"`` is the baseline the adaptive mode is measured against: adapt
only when mean luminance or entropy leaves daylight's range, then gamma towards
mean luminance 0.45, then CLAHE, with no noise handling.

Plain numpy + OpenCV; one caller at a time.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import cv2
import numpy as np

from .log_text import compact
from .model_contract import CONDITIONING_LAYOUT, CONDITIONING_SIZE  # noqa: F401  (the vector this module fills)

#: Luminance at or below this 8-bit level counts as clipped dark.
CLIP_DARK_LEVEL = 4
#: Luminance at or above this 8-bit level counts as clipped bright.
CLIP_BRIGHT_LEVEL = 251


MODES = ("adaptive", "naive")


@dataclass
class LightingStats:
    """Luminance statistics of one frame, all in [0, 1]."""

    entropy: float          # Shannon entropy of the 256-bin histogram / 8 bits
    mean_luminance: float   # mean luminance / 255
    contrast: float         # luminance standard deviation / 255 (at most 0.5)
    clipped_dark: float     # fraction of pixels at or below CLIP_DARK_LEVEL
    clipped_bright: float   # fraction of pixels at or above CLIP_BRIGHT_LEVEL
    dark_level: float = 0.0  # 1st percentile of luminance / 255: high when blacks are lifted (haze, flare)


@dataclass
class AdaptationState:
    """What the adapter saw and did for one frame; mirrors ``msg/AdaptationState.msg``."""

    entropy: float = 0.0
    mean_luminance: float = 0.0
    contrast: float = 0.0
    clipped_dark: float = 0.0
    clipped_bright: float = 0.0
    dark_level: float = 0.0
    noise_sigma: float = 0.0       # estimated sensor noise, 8-bit levels (0 when not estimated)
    score: float = 0.0
    score_smoothed: float = 0.0
    active: bool = False           # a correction was applied to this frame
    strength: float = 0.0          # [0, 1]
    black_level: float = 0.0       # input level mapped to black, [0, 1]
    gain: float = 1.0
    gamma: float = 1.0             # output = ((input - black_level) * gain) ** gamma
    clahe_clip_limit: float = 0.0  # 0: no equalisation
    denoise_strength: float = 0.0  # bilateral range sigma (8-bit levels) before the curve; 0: none

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class AdaptationConfig:
    """Every tunable of the lighting adaptation. Each becomes a ROS parameter ``adaptation.<name>``."""

    enabled: bool = True
    """Master switch: when false, frames pass through untouched (statistics are still computed)."""
    mode: str = "adaptive"
    """``adaptive`` (noise-aware tone curve + CLAHE, driven by the score) or ``naive`` (the baseline)."""
    stats_max_side: int = 160
    """Statistics are computed on the frame decimated to at most this many pixels a side."""

    # -- score: daylight's range of each statistic ---------------------------------------
    daylight_luminance_low: float = 0.22
    """Mean luminance below this counts as underexposed."""
    daylight_luminance_high: float = 0.60
    """Mean luminance above this counts as overexposed."""
    exposure_stops_span: float = 1.5
    """Stops of underexposure below ``daylight_luminance_low`` that make the exposure term 1."""
    overexposure_span: float = 0.2
    """Mean luminance above ``daylight_luminance_high`` that makes the exposure term 1."""
    daylight_entropy_low: float = 0.85
    """Entropy below this counts as a poor (low-information) histogram."""
    entropy_span: float = 0.15
    """Entropy deficit that makes the entropy term 1."""
    daylight_contrast_low: float = 0.17
    """Contrast (luminance std / 255) below this counts as low contrast."""
    contrast_span: float = 0.10
    """Contrast deficit that makes the contrast term 1."""
    daylight_dark_level_high: float = 0.12
    """1st luminance percentile above this counts as lifted blacks (washed out, hazy)."""
    dark_level_span: float = 0.12
    """Lift of the 1st percentile above ``daylight_dark_level_high`` that makes the black-level term 1."""
    clipped_tolerance: float = 0.10
    """Fraction of clipped (dark or bright) pixels that daylight frames may have."""
    clipped_span: float = 0.30
    """Clipped fraction above the tolerance that makes the clipping term 1."""

    # -- smoothing and switching -----------------------------------------------------------
    smoothing: float = 0.3
    """EMA weight of the newest frame's score, in (0, 1]; 1 = no smoothing."""
    hysteresis: float = 0.02
    """Dead band of the smoothed score: it moves only when the EMA leaves this band around it."""
    activation_score: float = 0.15
    """The correction switches on when the smoothed score reaches this value."""
    release_score: float = 0.10
    """... and off again when it falls below this one (< activation_score)."""
    full_strength_score: float = 0.45
    """Smoothed score at which the correction reaches full strength."""

    # -- tone curve --------------------------------------------------------------------------
    target_black: float = 0.04
    """Luminance the frame's dark percentile is mapped to (daylight's typical value)."""
    target_white: float = 0.90
    """Luminance the frame's bright percentile is mapped to."""
    target_median: float = 0.35
    """Median luminance the gamma step aims for."""
    dark_percentile: float = 1.0
    """Percentile (of luminance) taken as the frame's black level."""
    bright_percentile: float = 99.0
    """Percentile taken as the frame's white level."""
    max_gain: float = 8.0
    """Largest gain of the tone curve."""
    min_gamma: float = 0.4
    """Smallest gamma (strongest brightening of mid-tones)."""
    max_gamma: float = 2.5
    """Largest gamma (strongest darkening of mid-tones)."""

    # -- noise ---------------------------------------------------------------------------------
    noise_tolerance: float = 3.0
    """Amplified noise (sigma x tone-curve slope, 8-bit levels) tolerated without denoising."""
    denoise_factor: float = 10.0
    """Bilateral filter range sigma per level of estimated noise sigma (0 disables denoising)."""
    denoise_diameter: int = 9
    """Bilateral filter diameter in pixels (its spatial sigma is half of it)."""
    noise_crop: int = 256
    """Side of the full-resolution centre crop on which noise is estimated."""

    # -- contrast-limited equalisation -----------------------------------------------------------
    clahe_clip_limit: float = 1.5
    """CLAHE clip limit at full strength (scaled by the strength; 0 disables CLAHE)."""
    clahe_tiles: int = 8
    """CLAHE tile grid size (tiles per side)."""

    # -- naive baseline ------------------------------------------------------------------------------
    naive_target_mean: float = 0.45
    """Naive mode: gamma brings the mean luminance to this value."""
    naive_clahe_clip_limit: float = 2.0
    """Naive mode: CLAHE clip limit."""

    def validate(self) -> "AdaptationConfig":
        """Raise ValueError naming the first bad value; return self when all are valid.

        Every numeric field must lie in its :data:`RANGES` entry first; then the fields that
        depend on each other are checked together.
        """
        def check(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(f"adaptation: {message}")

        check(self.mode in MODES, f"mode must be one of {', '.join(MODES)}, not {compact(self.mode)}")
        for name, (low, high) in RANGES.items():
            value = getattr(self, name)
            kind = type(getattr(_DEFAULT_CONFIG, name))
            if kind is int:
                check(isinstance(value, int) and not isinstance(value, bool),
                      f"{name} must be an integer, not {compact(value)}")
            else:
                check(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
                      f"{name} must be a finite number, not {compact(value)}")
            check(low <= value <= high, f"{name} must be in [{low}, {high}], not {compact(value)}")
        check(self.daylight_luminance_low < self.daylight_luminance_high,
              "daylight_luminance_low must be below daylight_luminance_high")
        check(self.release_score < self.activation_score < self.full_strength_score,
              "need release_score < activation_score < full_strength_score")
        check(self.target_black < self.target_median < self.target_white,
              "need target_black < target_median < target_white")
        check(self.dark_percentile < self.bright_percentile, "need dark_percentile < bright_percentile")
        return self

    @classmethod
    def from_dict(cls, values: dict) -> "AdaptationConfig":
        """Build from ``{name: value}`` (e.g. ROS parameters), rejecting unknown names; validated."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"adaptation: unknown parameter(s) {', '.join(unknown)}")
        return cls(**values).validate()


#: The range of every numeric :class:`AdaptationConfig` field, inclusive: the ROS parameters'
#: ranges (docs/nodes.md). Two reasons bound them. Cost: the correction runs on every frame, up to
#: 4K when the model takes the frame's own size, so a value must keep one frame's correction in
#: bounded time and memory (single core, 4K: bilateral filter 0.1 s at diameter 5, 0.6 s at 9, 1.6 s
#: at 15 and 5 s at 25, as diameter squared; CLAHE allocates a 256-entry table per tile, so 2000
#: tiles a side took 1 GB, while 64 (4096 tiles) stays at 30-40 ms). Arithmetic: lows that feed a
#: logarithm or a division stay above 0 (daylight_luminance_low 0 made every frame fail).
RANGES = {
    "stats_max_side": (8, 4096),
    "daylight_luminance_low": (0.001, 1.0), "daylight_luminance_high": (0.0, 1.0),
    "exposure_stops_span": (0.01, 10.0), "overexposure_span": (0.001, 1.0),
    "daylight_entropy_low": (0.0, 1.0), "entropy_span": (0.001, 1.0),
    "daylight_contrast_low": (0.001, 0.5), "contrast_span": (0.001, 0.5),
    "daylight_dark_level_high": (0.0, 1.0), "dark_level_span": (0.001, 1.0),
    "clipped_tolerance": (0.0, 1.0), "clipped_span": (0.001, 1.0),
    "smoothing": (0.001, 1.0), "hysteresis": (0.0, 1.0),
    "activation_score": (0.0, 1.0), "release_score": (0.0, 1.0), "full_strength_score": (0.0, 1.0),
    "target_black": (0.0, 1.0), "target_white": (0.0, 1.0), "target_median": (0.001, 0.999),
    "dark_percentile": (0.0, 100.0), "bright_percentile": (0.0, 100.0),
    "max_gain": (1.0, 255.0), "min_gamma": (0.05, 1.0), "max_gamma": (1.0, 20.0),
    "noise_tolerance": (0.0, 255.0), "denoise_factor": (0.0, 100.0),
    "denoise_diameter": (3, 15), "noise_crop": (16, 4096),
    "clahe_clip_limit": (0.0, 40.0), "clahe_tiles": (1, 64),
    "naive_target_mean": (0.01, 0.99), "naive_clahe_clip_limit": (0.0, 40.0),
}

# -- statistics -----------------------------------------------------------------------------
def luminance_histogram(rgb: np.ndarray, max_side: int = 160) -> np.ndarray:
    """256-bin histogram (float64 counts) of the Rec.601 luminance of ``rgb`` decimated to
    at most ``max_side`` pixels a side (every k-th pixel, so noise statistics survive)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or rgb.size == 0:
        raise ValueError(f"expected an HxWx3 uint8 RGB frame, got {rgb.dtype} {rgb.shape}")
    step = max(1, math.ceil(max(rgb.shape[:2]) / max_side))
    small = np.ascontiguousarray(rgb[::step, ::step])
    grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    return cv2.calcHist([grey], [0], None, [256], [0, 256]).ravel().astype(np.float64)


_LEVELS = np.arange(256, dtype=np.float64)


def stats_from_histogram(hist: np.ndarray) -> LightingStats:
    """:class:`LightingStats` of a 256-bin luminance histogram."""
    total = hist.sum()
    p = hist / total
    nonzero = p[p > 0]
    entropy = float(-(nonzero * np.log2(nonzero)).sum() / 8.0)
    mean = float((p * _LEVELS).sum())
    std = float(math.sqrt(max(0.0, (p * (_LEVELS - mean) ** 2).sum())))
    return LightingStats(entropy=entropy, mean_luminance=mean / 255.0, contrast=std / 255.0,
                         clipped_dark=float(p[:CLIP_DARK_LEVEL + 1].sum()),
                         clipped_bright=float(p[CLIP_BRIGHT_LEVEL:].sum()),
                         dark_level=_percentile(hist, 1.0))


def compute_stats(rgb: np.ndarray, max_side: int = 160) -> LightingStats:
    """Luminance statistics of an RGB uint8 frame, computed on it decimated to ``max_side``."""
    return stats_from_histogram(luminance_histogram(rgb, max_side))


def _ramp(value: float, span: float) -> float:
    return min(1.0, max(0.0, value / span))


def score_terms(stats: LightingStats, config: AdaptationConfig | None = None) -> dict:
    """The score's terms, each in [0, 1]: exposure, entropy, contrast, black level, clipping."""
    c = config or _DEFAULT_CONFIG
    mean = max(stats.mean_luminance, 1e-4)
    under = math.log2(c.daylight_luminance_low / mean) / c.exposure_stops_span
    over = (mean - c.daylight_luminance_high) / c.overexposure_span
    clipped = max(stats.clipped_dark, stats.clipped_bright) - c.clipped_tolerance
    return {
        "exposure": min(1.0, max(0.0, under, over)),
        "entropy": _ramp(c.daylight_entropy_low - stats.entropy, c.entropy_span),
        "contrast": _ramp(c.daylight_contrast_low - stats.contrast, c.contrast_span),
        "black_level": _ramp(stats.dark_level - c.daylight_dark_level_high, c.dark_level_span),
        "clipping": _ramp(clipped, c.clipped_span),
    }


def complexity_score(stats: LightingStats, config: AdaptationConfig | None = None) -> float:
    """Exposure/complexity score in [0, 1]: 0 inside daylight's range, 1 = severely degraded.

    The terms of :func:`score_terms` combine as a soft OR, ``1 - prod(1 - term)``, so any
    one degraded statistic raises the score and several together raise it further.
    """
    keep = 1.0
    for term in score_terms(stats, config).values():
        keep *= 1.0 - term
    return 1.0 - keep


class ScoreSmoother:
    """EMA of the score with a dead band (hysteresis) against flicker.

    The EMA follows every new score with weight ``alpha``; the output only moves to the
    EMA once the EMA has left ``band`` around the last output. The first score after
    :meth:`reset` is taken as is.
    """

    def __init__(self, alpha: float = 0.3, band: float = 0.02):
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], not {alpha}")
        if band < 0:
            raise ValueError(f"band must be >= 0, not {band}")
        self.alpha = alpha
        self.band = band
        self.reset()

    def reset(self) -> None:
        self._ema = None
        self._output = None

    @property
    def value(self):
        """The last smoothed output (None before the first update)."""
        return self._output

    def update(self, score: float) -> float:
        score = float(score)
        if self._ema is None:
            self._ema = self._output = score
        else:
            self._ema += self.alpha * (score - self._ema)
            if abs(self._ema - self._output) > self.band:
                self._output = self._ema
        return self._output


# -- correction ----------------------------------------------------------------------------------
def estimate_noise(rgb: np.ndarray, crop: int = 256) -> float:
    """Sensor-noise sigma in 8-bit levels, from a full-resolution centre crop of the luminance.

    Immerkaer's estimate made robust to edges: the 3x3 kernel below cancels smooth image
    structure, and only the smaller half of its absolute responses is averaged (edges
    land in the larger half). For Gaussian noise of sigma s the response has sigma 6 s,
    and the mean of the smaller half of its absolute values is 0.3247 x 6 s.
    """
    h, w = rgb.shape[:2]
    ch, cw = min(h, crop), min(w, crop)
    if ch < 3 or cw < 3:
        return 0.0
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    grey = cv2.cvtColor(np.ascontiguousarray(rgb[y0:y0 + ch, x0:x0 + cw]), cv2.COLOR_RGB2GRAY)
    response = np.abs(cv2.filter2D(grey.astype(np.float32), -1, _NOISE_KERNEL)[1:-1, 1:-1]).ravel()
    half = response.size // 2
    smaller = np.partition(response, half)[:half]
    return float(smaller.mean() / (0.3247 * 6.0)) if half else 0.0


_NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
_DEFAULT_CONFIG = AdaptationConfig()


def _percentile(hist: np.ndarray, q: float) -> float:
    """Luminance (0..1) below which ``q`` percent of the histogram lies (bin centres)."""
    cdf = np.cumsum(hist) / hist.sum()
    return (float(np.searchsorted(cdf, q / 100.0)) + 0.5) / 256.0


def tone_lut(black_level: float, gain: float, gamma: float) -> np.ndarray:
    """uint8 LUT of ``((x - black_level) * gain) ** gamma`` on x in [0, 1], clipped."""
    x = np.clip((_LEVELS / 255.0 - black_level) * gain, 0.0, 1.0)
    return np.round(255.0 * x ** gamma).astype(np.uint8)


class LightingAdapter:
    """Score every frame and correct the ones that need it. See the module docstring."""

    def __init__(self, config: AdaptationConfig | None = None):
        self.config = (config or AdaptationConfig()).validate()
        self.smoother = ScoreSmoother(self.config.smoothing, self.config.hysteresis)
        self._active = False
        self._clahe = {}

    def configure(self, config: AdaptationConfig) -> None:
        """Apply a new configuration (e.g. a run-time ROS parameter change), keeping the smoothed score."""
        self.config = config.validate()
        self.smoother.alpha, self.smoother.band = config.smoothing, config.hysteresis
        self._clahe = {}

    def reset(self) -> None:
        """Forget the history (smoothed score and on/off state), e.g. when the camera changes."""
        self.smoother.reset()
        self._active = False

    def process(self, rgb: np.ndarray):
        """``(frame, state)``: the corrected frame, or ``rgb`` itself when nothing is corrected."""
        c = self.config
        hist = luminance_histogram(rgb, c.stats_max_side)
        stats = stats_from_histogram(hist)
        score = complexity_score(stats, c)
        smoothed = self.smoother.update(score)
        state = AdaptationState(**asdict(stats), score=score, score_smoothed=smoothed)
        if c.mode == "naive":
            return self._naive(rgb, stats, state)
        if self._active:
            self._active = smoothed >= c.release_score
        else:
            self._active = smoothed >= c.activation_score
        if not (c.enabled and self._active):
            return rgb, state
        state.active = True
        state.strength = min(1.0, (smoothed - c.release_score) / (c.full_strength_score - c.release_score))
        return self._correct(rgb, hist, state), state

    def _correct(self, rgb: np.ndarray, hist: np.ndarray, state: AdaptationState) -> np.ndarray:
        c, s = self.config, state.strength
        low = _percentile(hist, c.dark_percentile)
        high = _percentile(hist, c.bright_percentile)
        median = _percentile(hist, 50.0)
        # Levels: stretch (never compress) the dark..bright percentiles onto daylight's.
        gain = min(c.max_gain, max(1.0, (c.target_white - c.target_black) / max(high - low, 1e-3)))
        black = max(0.0, low - c.target_black / gain)
        # Gamma: bring the stretched median to daylight's median.
        stretched = min(max((median - black) * gain, 1e-3), 0.999)
        gamma = min(c.max_gamma, max(c.min_gamma, math.log(c.target_median) / math.log(stretched)))
        # Strength interpolates every parameter from the identity.
        state.black_level, state.gain, state.gamma = black * s, gain ** s, gamma ** s
        lut = tone_lut(state.black_level, state.gain, state.gamma)

        # Denoise before the curve brightens anything, when the curve's slope at the median
        # would amplify the noise beyond the tolerance.
        state.noise_sigma = estimate_noise(rgb, c.noise_crop)
        level = int(np.clip(median * 255.0, 1, 254))
        slope = (float(lut[min(255, level + 8)]) - float(lut[max(0, level - 8)])) / 16.0
        out = rgb
        if c.denoise_factor > 0 and state.noise_sigma * slope > c.noise_tolerance:
            state.denoise_strength = c.denoise_factor * state.noise_sigma
            out = cv2.bilateralFilter(out, c.denoise_diameter, state.denoise_strength, c.denoise_diameter / 2.0)
        out = cv2.LUT(out, lut)
        state.clahe_clip_limit = c.clahe_clip_limit * s
        if state.clahe_clip_limit > 0:
            out = self._equalise(out, state.clahe_clip_limit)
        return out

    def _equalise(self, rgb: np.ndarray, clip_limit: float) -> np.ndarray:
        """CLAHE on the L channel of Lab, colours kept."""
        key = round(clip_limit, 2)
        clahe = self._clahe.get(key)
        if clahe is None:
            if len(self._clahe) > 32:
                self._clahe.clear()
            clahe = self._clahe[key] = cv2.createCLAHE(clipLimit=max(key, 0.01),
                                                       tileGridSize=(self.config.clahe_tiles,) * 2)
        lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
        lab[..., 0] = clahe.apply(np.ascontiguousarray(lab[..., 0]))
        return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)

    def _naive(self, rgb: np.ndarray, stats: LightingStats, state: AdaptationState):
        """Baseline: gate on daylight's luminance/entropy range, gamma to a fixed mean, CLAHE."""
        c = self.config
        outside = not (c.daylight_luminance_low <= stats.mean_luminance <= c.daylight_luminance_high) \
            or stats.entropy < c.daylight_entropy_low
        if not (c.enabled and outside):
            return rgb, state
        mean = min(max(stats.mean_luminance, 1e-3), 0.999)
        state.active, state.strength = True, 1.0
        state.gamma = math.log(c.naive_target_mean) / math.log(mean)
        state.clahe_clip_limit = c.naive_clahe_clip_limit
        out = cv2.LUT(rgb, tone_lut(0.0, 1.0, state.gamma))
        if state.clahe_clip_limit > 0:
            out = self._equalise(out, state.clahe_clip_limit)
        return out, state

    def conditioning_vector(self, state: AdaptationState) -> np.ndarray:
        """float32 ``[CONDITIONING_SIZE]`` in the order of :data:`CONDITIONING_LAYOUT`."""
        values = (state.score_smoothed, state.score, state.entropy, state.mean_luminance,
                  2.0 * state.contrast, state.clipped_dark, state.clipped_bright, state.dark_level,
                  min(1.0, state.noise_sigma / 16.0), state.strength if state.active else 0.0)
        return np.clip(np.asarray(values, np.float32), 0.0, 1.0)
