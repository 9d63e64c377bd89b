"""Corner-agreement label upsampling (openpixel_ros.label_upsampling) against full
bilinear-then-argmax references, on the default model's real logits.

Two references: the exact one (every class plane upsampled in float64 with OpenCV's INTER_LINEAR
geometry, then argmax) and OpenCV's own float32 resize, plane by plane (the node's previous path).
A pixel may differ from either only where the two classes' exact bilinear scores tie to within
float32 rounding: OpenCV's float resize itself is off by up to ~5e-5 at large scales.
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from openpixel_ros.frame_sources import iter_frames
from openpixel_ros.label_upsampling import _axis, bilinear_argmax, grid_argmax
from openpixel_ros.model_io import ModelInput
from openpixel_ros.segmentor import Segmentor
from openpixel_ros.semantic import SemanticSegmenter

SIZES = [(1, 1), (80, 100), (400, 500), (720, 1280), (1080, 1920), (361, 479), (90, 120), (45, 60), (2, 3)]
# Exact scores this close (relative to their size) are ties as far as float32 can tell.
TIE_TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def segmentor():
    seg = Segmentor(None)  # the packaged default model (11 classes, 90x120 logits)
    yield seg
    seg.close()


@pytest.fixture(scope="module")
def real_frames():
    frames = iter_frames("auto", loop=True, size=(640, 360))
    out = []
    for _ in range(4):
        for _ in range(25):
            frame = next(frames)
        out.append(frame)
    return out


@pytest.fixture(scope="module")
def real_logits(segmentor, real_frames):
    return [np.ascontiguousarray(segmentor.semantic.run_model(f)[0][0]) for f in real_frames]


def exact_scores(maps, frame_hw, ys, xs, classes):
    """float64 bilinear scores of ``classes`` at pixels (ys, xs), OpenCV's geometry."""
    rows, cols = _axis(maps.shape[1], frame_hw[0]), _axis(maps.shape[2], frame_hw[1])
    m = maps.astype(np.float64)
    i0, i1, j0, j1 = rows.i0[ys], rows.next[rows.i0[ys]], cols.i0[xs], cols.next[cols.i0[xs]]
    a0, a1, b0, b1 = cols.w0[xs], cols.w1[xs], rows.w0[ys], rows.w1[ys]
    return (m[classes, i0, j0] * a0 + m[classes, i0, j1] * a1) * b0 + (m[classes, i1, j0] * a0 +
                                                                        m[classes, i1, j1] * a1) * b1


def exact_reference(maps, frame_hw):
    """argmax of every class plane upsampled in float64 (first maximum wins)."""
    rows, cols = _axis(maps.shape[1], frame_hw[0]), _axis(maps.shape[2], frame_hw[1])
    best, labels = None, np.zeros(frame_hw, np.uint8 if maps.shape[0] <= 256 else np.uint16)
    for c, plane in enumerate(maps.astype(np.float64)):
        horizontal = plane[:, cols.i0] * cols.w0 + plane[:, cols.next[cols.i0]] * cols.w1
        value = horizontal[rows.i0] * rows.w0[:, None] + horizontal[rows.next[rows.i0]] * rows.w1[:, None]
        if best is None:
            best = value
        else:
            higher = value > best
            labels[higher] = c
            np.maximum(best, value, out=best)
    return labels


def opencv_reference(maps, frame_hw):
    """The previous path: each class plane through cv2.resize INTER_LINEAR, running maximum."""
    H, W = frame_hw
    best = cv2.resize(np.ascontiguousarray(maps[0]), (W, H), interpolation=cv2.INTER_LINEAR)
    labels = np.zeros((H, W), np.uint8)
    for c in range(1, maps.shape[0]):
        plane = cv2.resize(np.ascontiguousarray(maps[c]), (W, H), interpolation=cv2.INTER_LINEAR)
        labels[plane > best] = c
        np.maximum(best, plane, out=best)
    return labels


def assert_only_ties_differ(got, reference, maps, frame_hw):
    """Every pixel equal, except where the two labels' exact scores tie within float32 rounding."""
    ys, xs = np.nonzero(got != reference)
    if ys.size == 0:
        return 0
    a = exact_scores(maps, frame_hw, ys, xs, got[ys, xs].astype(np.intp))
    b = exact_scores(maps, frame_hw, ys, xs, reference[ys, xs].astype(np.intp))
    gap = np.abs(a - b) / np.maximum(1.0, np.maximum(np.abs(a), np.abs(b)))
    assert gap.max() <= TIE_TOLERANCE, \
        f"{ys.size} pixels differ at {frame_hw}, the largest score gap {gap.max():.3g} is not a tie"
    assert ys.size <= max(2, got.size // 100_000)  # ties are rare, not a pattern
    return ys.size


@pytest.mark.parametrize("frame_hw", SIZES)
def test_labels_equal_full_bilinear_then_argmax(real_logits, frame_hw):
    for maps in real_logits:
        got = bilinear_argmax(maps, frame_hw)
        assert got.shape == frame_hw and got.dtype == np.uint8
        assert_only_ties_differ(got, exact_reference(maps, frame_hw), maps, frame_hw)
        assert_only_ties_differ(got, opencv_reference(maps, frame_hw), maps, frame_hw)


@pytest.mark.parametrize("frame_hw", [(720, 1280), (1080, 1920), (500, 640), (1000, 333)])
def test_letterboxed_model_labels_equal_the_reference(segmentor, real_frames, frame_hw):
    """A letterboxing contract: the output grid is cropped to the frame's part before upsampling."""
    contract = segmentor.contract
    boxed = dataclasses.replace(contract, input=dataclasses.replace(contract.input, resize="letterbox"))
    semantic = SemanticSegmenter(segmentor.semantic.engine, boxed)
    for frame in real_frames[:2]:
        rgb = cv2.resize(frame, frame_hw[::-1], interpolation=cv2.INTER_AREA)
        out, placement, _ = semantic.run_model(rgb)
        assert (placement.height, placement.width) != placement.input_hw  # really letterboxed
        maps = np.ascontiguousarray(ModelInput.crop(out[0], placement))
        got = semantic.labels_from_output(out, placement, frame_hw)
        assert_only_ties_differ(got, exact_reference(maps, frame_hw), maps, frame_hw)
        assert_only_ties_differ(got, opencv_reference(maps, frame_hw), maps, frame_hw)


@pytest.mark.parametrize("classes,dtype", [(2, np.uint8), (40, np.uint8), (256, np.uint8), (300, np.uint16)])
def test_any_class_count_that_fits_the_label_dtype(real_logits, classes, dtype):
    """Many classes with near-equal scores (many hard cells, many candidates per cell)."""
    rng = np.random.default_rng(classes)
    base = real_logits[0]
    maps = np.concatenate([base, base[rng.integers(0, base.shape[0], classes)] +
                           rng.normal(0, 0.3, (classes,) + base.shape[1:]).astype(np.float32)])[:classes]
    for frame_hw in ((97, 131), (360, 640)):
        got = bilinear_argmax(maps, frame_hw, dtype)
        assert got.dtype == dtype
        reference = exact_reference(maps, frame_hw)
        assert_only_ties_differ(got, reference, maps, frame_hw)
    with pytest.raises(ValueError, match="do not fit"):
        bilinear_argmax(np.zeros((257, 4, 4), np.float32), (8, 8), np.uint8)


def test_skipping_classes_no_corner_wins_would_be_wrong():
    """A class that wins at no corner can still win inside the cell (here the middle); the
    candidate test keeps it, so the labels stay exact."""
    maps = np.zeros((3, 2, 1), np.float32)
    maps[0] = [[1.0], [0.0]]   # wins the upper corner
    maps[1] = [[0.0], [1.0]]   # wins the lower corner
    maps[2] = [[0.9], [0.9]]   # wins nowhere on the grid, but at the middle (0.9 > 0.5)
    labels = bilinear_argmax(maps, (8, 1))
    np.testing.assert_array_equal(labels, exact_reference(maps, (8, 1)))
    assert 2 in labels


def test_grid_argmax_matches_numpy_argmax(real_logits):
    for classes in (1, 11, 40):
        maps = np.concatenate([real_logits[0]] * 4)[:classes]
        np.testing.assert_array_equal(grid_argmax(maps), np.argmax(maps, axis=0).astype(np.uint8))
