"""Lighting adaptation: exact statistics, score, smoothing, the correction, conditioning plumbing."""
from __future__ import annotations

import json
import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from skimage import data as skdata
from skimage.metrics import peak_signal_noise_ratio

from openpixel_ros.adaptation import (CONDITIONING_LAYOUT, CONDITIONING_SIZE, AdaptationConfig,
                                      LightingAdapter, LightingStats, ScoreSmoother, complexity_score,
                                      compute_stats, estimate_noise, score_terms)
from openpixel_ros.eval.lighting import shift_rng
from openpixel_ros.lighting_shifts import SHIFTS, darken, dusk
from openpixel_ros.semantic import SemanticSegmenter


def grey_frame(levels: np.ndarray) -> np.ndarray:
    """RGB frame whose luminance is exactly ``levels`` (equal channels)."""
    return np.repeat(levels.astype(np.uint8)[..., None], 3, axis=2)


# -- statistics ----------------------------------------------------------------------------
def test_entropy_of_a_uniform_histogram_is_one():
    levels = np.tile(np.arange(256), 100).reshape(160, 160)  # every level 100 times
    stats = compute_stats(grey_frame(levels))
    assert stats.entropy == pytest.approx(1.0, abs=1e-12)
    assert stats.mean_luminance == pytest.approx(127.5 / 255, abs=1e-12)
    assert stats.contrast == pytest.approx(math.sqrt((256 ** 2 - 1) / 12) / 255, abs=1e-12)
    assert stats.clipped_dark == pytest.approx(5 / 256)     # levels 0..4
    assert stats.clipped_bright == pytest.approx(5 / 256)   # levels 251..255
    assert stats.dark_level == pytest.approx(2.5 / 256)     # 1 % of pixels reached within level 2


@pytest.mark.parametrize("values,bits", [((0, 255), 1), ((10, 90, 170, 250), 2),
                                         (tuple(range(0, 256, 32)), 3), ((128,), 0)])
def test_entropy_counts_bits_of_equiprobable_levels(values, bits):
    levels = np.resize(np.array(values), 160 * 160).reshape(160, 160)
    stats = compute_stats(grey_frame(levels))
    assert stats.entropy == pytest.approx(bits / 8, abs=1e-12)
    assert stats.mean_luminance == pytest.approx(np.mean(values) / 255, abs=1e-12)


def test_stats_use_a_decimated_frame_with_the_same_histogram():
    """A 1280x960 frame whose 8x8 blocks are constant decimates to the same 160x120 histogram."""
    rng = np.random.default_rng(3)
    small = rng.integers(0, 256, (120, 160))
    large = np.kron(small, np.ones((8, 8), np.int64))
    assert compute_stats(grey_frame(large)) == compute_stats(grey_frame(small))
    hist = np.bincount(small.ravel(), minlength=256) / small.size
    nonzero = hist[hist > 0]
    assert compute_stats(grey_frame(large)).entropy == pytest.approx(-(nonzero * np.log2(nonzero)).sum() / 8)


def test_stats_reject_non_rgb_input():
    with pytest.raises(ValueError):
        compute_stats(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError):
        compute_stats(np.zeros((10, 10, 3), np.float32))


# -- score -------------------------------------------------------------------------------
def test_score_is_zero_for_a_well_exposed_photo_and_grows_with_darkness():
    coffee = skdata.coffee()
    assert complexity_score(compute_stats(coffee)) == 0.0
    scores = [complexity_score(compute_stats(darken(coffee, f))) for f in (1.0, 0.6, 0.35, 0.2, 0.1)]
    assert all(b >= a for a, b in zip(scores, scores[1:])), scores
    assert scores[-1] == 1.0


@pytest.mark.parametrize("level", [0, 3, 128, 252, 255])
def test_score_stays_in_unit_interval_and_flags_flat_frames(level):
    score = complexity_score(compute_stats(grey_frame(np.full((90, 160), level))))
    assert 0.0 <= score <= 1.0
    assert score == 1.0  # a flat frame carries no information, whatever its level


def test_lifted_blacks_raise_the_score():
    """A washed-out frame (gamma 0.4) keeps its mean in range but loses its blacks."""
    coffee = skdata.coffee()
    washed = SHIFTS["gamma_0.4"](coffee, None)
    terms = score_terms(compute_stats(washed))
    assert compute_stats(washed).dark_level > 3 * compute_stats(coffee).dark_level
    assert terms["black_level"] > 0.5 and complexity_score(compute_stats(washed)) >= terms["black_level"]


def test_score_is_zero_inside_daylight_range():
    stats = LightingStats(entropy=0.9, mean_luminance=0.4, contrast=0.25, clipped_dark=0.01, clipped_bright=0.02)
    assert complexity_score(stats) == 0.0
    dimmer = LightingStats(entropy=0.9, mean_luminance=0.05, contrast=0.25, clipped_dark=0.01, clipped_bright=0.02)
    assert complexity_score(dimmer) > 0.5


# -- smoothing ---------------------------------------------------------------------------
def test_smoother_follows_a_step_as_an_ema():
    smoother = ScoreSmoother(alpha=0.5, band=0.0)
    assert smoother.update(0.0) == 0.0
    outputs = [smoother.update(1.0) for _ in range(4)]
    assert outputs == pytest.approx([0.5, 0.75, 0.875, 0.9375])


def test_smoother_hysteresis_stops_flicker():
    smoother = ScoreSmoother(alpha=0.5, band=0.05)
    smoother.update(0.5)
    outputs = [smoother.update(0.5 + (0.04 if i % 2 else -0.04)) for i in range(50)]
    assert set(outputs) == {0.5}  # +-0.04 jitter never leaves the band
    smoother.update(0.9)
    assert smoother.value > 0.6   # a real change gets through at once
    smoother.reset()
    assert smoother.value is None and smoother.update(0.2) == 0.2


def test_adapter_switches_with_hysteresis_on_a_sequence():
    """A tunnel: daylight, dark, back to daylight; active only in the middle, no toggling."""
    coffee = skdata.coffee()
    adapter = LightingAdapter(AdaptationConfig(smoothing=0.5))
    sequence = [coffee] * 3 + [darken(coffee, 0.2)] * 6 + [coffee] * 6
    active = [adapter.process(frame)[1].active for frame in sequence]
    switches = sum(a != b for a, b in zip(active, active[1:]))
    assert not any(active[:3]) and any(active[3:9]) and not active[-1]
    assert switches == 2


# -- correction --------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["adaptive", "naive"])
def test_correction_is_the_identity_on_a_well_exposed_frame(mode):
    coffee = skdata.coffee()
    before = coffee.copy()
    adapted, state = LightingAdapter(AdaptationConfig(mode=mode)).process(coffee)
    assert adapted is coffee and np.array_equal(coffee, before)
    assert not state.active and state.strength == 0.0 and state.gamma == 1.0 and state.gain == 1.0


def test_disabled_adapter_still_scores_but_never_corrects():
    dark = darken(skdata.coffee(), 0.2)
    adapted, state = LightingAdapter(AdaptationConfig(enabled=False)).process(dark)
    assert adapted is dark and not state.active and state.score > 0.5


@pytest.mark.parametrize("shift", ["dark_0.25", "dark_0.5", "gamma_2.5", "gamma_0.4", "low_contrast"])
def test_shifted_real_frame_is_brought_back_towards_the_original(shift):
    original = skdata.coffee()
    shifted = SHIFTS[shift](original, shift_rng(0, "coffee", shift))
    adapted, state = LightingAdapter().process(shifted)
    assert state.active
    before = peak_signal_noise_ratio(original, shifted)
    after = peak_signal_noise_ratio(original, adapted)
    assert after > before + 3.0, (before, after)


def test_noise_is_removed_before_brightening():
    """On a noisy dusk frame the adaptive mode denoises, and ends closer to the original than
    the naive baseline, which brightens the noise with the scene."""
    original = skdata.coffee()
    noisy = dusk(original, np.random.default_rng(0))
    adapted, state = LightingAdapter().process(noisy)
    naive, _ = LightingAdapter(AdaptationConfig(mode="naive")).process(noisy)
    assert state.active and state.denoise_strength > 0 and state.gain > 1.5
    assert estimate_noise(adapted) < estimate_noise(naive)
    assert peak_signal_noise_ratio(original, adapted) > peak_signal_noise_ratio(original, naive)
    clean_dark = darken(original, 0.3)
    assert LightingAdapter().process(clean_dark)[1].denoise_strength == 0.0  # nothing to denoise


def test_noise_estimate_tracks_added_noise():
    flat = np.full((256, 256, 3), 120, np.float32) + np.linspace(0, 40, 256)[None, :, None]
    rng = np.random.default_rng(1)
    estimates = [estimate_noise(np.clip(np.round(flat + s * rng.standard_normal(flat.shape)), 0, 255)
                                .astype(np.uint8)) for s in (0.0, 2.0, 4.0, 8.0)]
    assert estimates[0] == 0.0
    assert estimates[1] < estimates[2] < estimates[3]
    # luminance of independent channel noise: sigma x |(0.299, 0.587, 0.114)| = 0.668 sigma
    assert estimates[3] == pytest.approx(8 * 0.668, rel=0.1)


# -- configuration -----------------------------------------------------------------------
@pytest.mark.parametrize("field,value", [("mode", "magic"), ("smoothing", 0.0), ("max_gain", 0.5),
                                         ("release_score", 0.5), ("daylight_luminance_low", 1.5),
                                         ("clahe_tiles", 0), ("target_median", 0.99)])
def test_config_validation_names_the_bad_field(field, value):
    with pytest.raises(ValueError, match=field.split("_")[0]):
        AdaptationConfig(**{field: value}).validate()


def test_config_from_dict_rejects_unknown_names():
    assert AdaptationConfig.from_dict({"max_gain": 4.0}).max_gain == 4.0
    with pytest.raises(ValueError, match="no_such"):
        AdaptationConfig.from_dict({"no_such": 1})


def test_every_config_field_is_a_plain_ros_parameter_type():
    for name, value in vars(AdaptationConfig()).items():
        assert type(value) in (bool, int, float, str), name


# -- conditioning --------------------------------------------------------------------------
def test_conditioning_vector_layout():
    adapter = LightingAdapter()
    _, state = adapter.process(darken(skdata.coffee(), 0.2))
    vector = adapter.conditioning_vector(state)
    assert vector.dtype == np.float32 and vector.shape == (CONDITIONING_SIZE,) == (len(CONDITIONING_LAYOUT),)
    assert np.all((vector >= 0) & (vector <= 1))
    named = dict(zip(CONDITIONING_LAYOUT, vector))
    assert named["score_smoothed"] == pytest.approx(state.score_smoothed)
    assert named["mean_luminance"] == pytest.approx(state.mean_luminance)
    assert named["strength"] == pytest.approx(state.strength) and state.strength > 0


def _conditioned_model(path, weights: np.ndarray) -> dict:
    """ONNX model: image [1,3,H,W] + adaptation [1,k] -> logits [1,2,H,W] where every pixel's
    logits are ``adaptation @ weights`` (the image only sets the output's size)."""
    k = weights.shape[0]
    nodes = [
        helper.make_node("MatMul", ["adaptation", "W"], ["per_class"]),              # [1,2]
        helper.make_node("Reshape", ["per_class", "shape"], ["per_class4"]),         # [1,2,1,1]
        helper.make_node("Conv", ["image", "zero_kernel"], ["zeros"]),               # [1,2,H,W] of 0
        helper.make_node("Add", ["zeros", "per_class4"], ["logits"]),
    ]
    inits = [numpy_helper.from_array(weights.astype(np.float32), "W"),
             numpy_helper.from_array(np.array([1, 2, 1, 1], np.int64), "shape"),
             numpy_helper.from_array(np.zeros((2, 3, 1, 1), np.float32), "zero_kernel")]
    graph = helper.make_graph(
        nodes, "conditioned",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 16, 16]),
         helper.make_tensor_value_info("adaptation", TensorProto.FLOAT, [1, k])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2, 16, 16])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return {"format": "openpixel-model/1", "task": "semantic",
            "input": {"name": "image", "layout": "NCHW", "height": 16, "width": 16},
            "output": {"name": "logits", "kind": "logits"}, "classes": ["daylight", "degraded"],
            "conditioning": {"name": "adaptation", "size": k}}


def test_conditioning_tensor_reaches_a_model_that_declares_it(tmp_path):
    weights = np.zeros((CONDITIONING_SIZE, 2), np.float32)
    weights[1:, 0] = np.linspace(0.1, 0.5, CONDITIONING_SIZE - 1)  # class 0: every value but the score
    weights[0, 1] = 10.0                                            # class 1: 10 x score_smoothed
    contract = _conditioned_model(tmp_path / "conditioned.onnx", weights)
    (tmp_path / "conditioned.json").write_text(json.dumps(contract))
    segmenter = SemanticSegmenter.from_file(tmp_path / "conditioned.onnx")
    assert segmenter.contract.conditioning.size == CONDITIONING_SIZE
    adapter = LightingAdapter()
    for frame, expected in ((skdata.coffee(), 0), (darken(skdata.coffee(), 0.15), 1)):
        adapter.reset()
        adapted, state = adapter.process(frame)
        vector = adapter.conditioning_vector(state)
        raw, _, _ = segmenter.run_model(adapted, vector)
        assert np.allclose(raw[0, :, 0, 0], vector @ weights, atol=1e-6)  # the exact vector arrived
        labels = segmenter.infer(adapted, conditioning=vector).labels
        assert labels.shape == frame.shape[:2] and np.all(labels == expected)
