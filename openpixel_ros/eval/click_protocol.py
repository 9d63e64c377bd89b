"""The standard interactive-segmentation protocol (NoC@85/90, mIoU@k), engine-agnostic.

Clicks are simulated from the ground truth the way RITM, SimpleClick and SAM's
interactive evaluations do it:

* The first click is positive, at the object pixel farthest from the object's boundary
  (distance transform of the object, with the image border counting as boundary).
* Each next click goes to the error pixel farthest from the boundary of its error region,
  over the false negatives and the false positives together (ignored pixels are neither):
  positive when it is a false negative, negative when it is a false positive.
* Clicks accumulate: the engine sees every click so far (and, optionally, its previous mask).
* NoC@T is the number of clicks after which IoU first reaches T; an image that never does
  within ``max_clicks`` counts as ``max_clicks``.

Ground-truth masks are read by :mod:`openpixel_ros.inference.ground_truth` (GrabCut and DAVIS
styles), and the clicks come from :mod:`openpixel_ros.inference.click_simulation`: the floor
below both evaluation and training, so the protocol and training share one rule.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from ..inference.click_simulation import next_click as simulated_click
from ..inference.click_simulation import next_scribble, scribble_in
from ..interactive import ClickPrompt

NOC_THRESHOLDS = (0.85, 0.90)
MIOU_AT = (1, 3, 5)


# -- protocol ------------------------------------------------------------------------------
def iou(ground_truth: np.ndarray, prediction: np.ndarray, ignore: Optional[np.ndarray] = None) -> float:
    """IoU of two bool masks over the non-ignored pixels (1.0 when both are empty there)."""
    valid = ~ignore if ignore is not None else np.ones(ground_truth.shape, bool)
    intersection = np.count_nonzero(ground_truth & prediction & valid)
    union = np.count_nonzero((ground_truth | prediction) & valid)
    return intersection / union if union else 1.0


def next_click(ground_truth: np.ndarray, prediction: np.ndarray,
               ignore: Optional[np.ndarray] = None) -> Optional[tuple]:
    """The protocol's next click ``(x, y, label)`` (label 1 positive, 0 negative), or None
    when there is no error left. Ties go to the first pixel in raster order.

    The rule is training's (:func:`openpixel_ros.inference.click_simulation.next_click` without
    a generator: the interior-most pixel of the deeper error), so the two cannot drift apart.
    """
    click = simulated_click(prediction, ground_truth, ignore)
    return None if click is None else (click.col, click.row, 1 if click.positive else 0)


def noc(ious: Sequence[float], threshold: float, max_clicks: int) -> int:
    """Clicks needed to reach ``threshold`` (``max_clicks`` when it is never reached)."""
    for index, value in enumerate(ious[:max_clicks]):
        if value >= threshold:
            return index + 1
    return max_clicks


@dataclass
class SampleResult:
    """One image under the protocol."""

    name: str
    clicks: list = field(default_factory=list)        # [(x, y, label)]
    ious: list = field(default_factory=list)          # IoU after each click
    click_ms: list = field(default_factory=list)      # engine time of each click (set_image + predict)
    timings: list = field(default_factory=list)       # the engine's own per-click timings

    def noc(self, threshold: float, max_clicks: int) -> int:
        return noc(self.ious, threshold, max_clicks)

    def iou_at(self, clicks: int) -> float:
        """IoU after ``clicks`` clicks; a run stopped early keeps its last IoU (see evaluate_sample)."""
        return self.ious[min(clicks, len(self.ious)) - 1]


def _predict_and_score(engine, rgb: np.ndarray, prompt, key, ground_truth: np.ndarray, ignore: np.ndarray,
                       result: "SampleResult") -> np.ndarray:
    """One protocol step: the engine's mask for ``prompt`` (timed, ``set_image`` included), its IoU
    recorded in ``result``; returns the mask."""
    started = time.perf_counter()
    engine.set_image(rgb, key=key)
    output = engine.predict(prompt)
    result.click_ms.append((time.perf_counter() - started) * 1e3)
    result.timings.append(dict(output.timings))
    prediction = np.asarray(output.mask, bool)
    result.ious.append(iou(ground_truth, prediction, ignore))
    return prediction


def evaluate_sample(engine, rgb: np.ndarray, ground_truth: np.ndarray, ignore: Optional[np.ndarray] = None,
                    *, name: str = "", max_clicks: int = 20, feed_previous_mask: bool = True,
                    stop_iou: Optional[float] = max(NOC_THRESHOLDS), min_clicks: int = max(MIOU_AT),
                    key=None) -> SampleResult:
    """Run the protocol on one image with a :class:`~openpixel_ros.interactive.PromptEngine`.

    The run stops after ``max_clicks`` clicks, or once IoU has reached ``stop_iou`` and at
    least ``min_clicks`` clicks are done (NoC and mIoU@1..min_clicks are then final; None
    disables the early stop). Stopping early only matters for :meth:`SampleResult.iou_at`
    beyond ``min_clicks``, which then repeats the last IoU. ``key`` names the frame for the
    engine's cache (None: the engine hashes the pixels).
    """
    if ignore is None:
        ignore = np.zeros(ground_truth.shape, bool)
    if not (ground_truth & ~ignore).any():
        raise ValueError(f"{name or 'mask'}: the ground truth has no object pixel")
    result = SampleResult(name=name)
    prediction = np.zeros(ground_truth.shape, bool)
    reached = False
    for _ in range(max_clicks):
        click = next_click(ground_truth, prediction, ignore)
        if click is None:  # no error left: more clicks would change nothing
            break
        result.clicks.append(click)
        points = [(x, y) for x, y, _ in result.clicks]
        labels = [label for _, _, label in result.clicks]
        previous = prediction if feed_previous_mask and len(result.clicks) > 1 else None
        prompt = ClickPrompt.from_lists(points, labels, previous_mask=previous, image_size=ground_truth.shape)
        prediction = _predict_and_score(engine, rgb, prompt, key, ground_truth, ignore, result)
        reached = reached or (stop_iou is not None and result.ious[-1] >= stop_iou)
        if reached and len(result.ious) >= min_clicks:
            break
    return result


def summarize(samples: Sequence[SampleResult], max_clicks: int = 20) -> dict:
    """The protocol's numbers over ``samples``: NoC@85/90, images never reaching 0.90
    (``over20_90``, named after the usual budget of 20, counted within ``max_clicks``),
    mIoU@1/3/5 and the median per-click latency."""
    if not samples:
        raise ValueError("no samples to summarize")
    summary = {"images": len(samples)}
    for threshold in NOC_THRESHOLDS:
        values = [s.noc(threshold, max_clicks) for s in samples]
        summary[f"noc{round(threshold * 100)}"] = round(float(np.mean(values)), 4)
    top = max(NOC_THRESHOLDS)
    summary["over20_90"] = sum(1 for s in samples if all(v < top for v in s.ious[:max_clicks]))
    summary["max_clicks"] = max_clicks
    summary["miou_at"] = {str(k): round(float(np.mean([s.iou_at(k) for s in samples])), 4) for k in MIOU_AT}
    click_ms = [ms for s in samples for ms in s.click_ms]
    first_ms = [s.click_ms[0] for s in samples if s.click_ms]
    later_ms = [ms for s in samples for ms in s.click_ms[1:]]
    summary["per_click_ms_median"] = round(statistics.median(click_ms), 3) if click_ms else None
    summary["first_click_ms_median"] = round(statistics.median(first_ms), 3) if first_ms else None
    summary["later_click_ms_median"] = round(statistics.median(later_ms), 3) if later_ms else None
    return summary


def sample_record(sample: SampleResult, max_clicks: int = 20) -> dict:
    """Per-image details for the JSON report."""
    return {"name": sample.name,
            "noc85": sample.noc(0.85, max_clicks), "noc90": sample.noc(0.90, max_clicks),
            "ious": [round(float(v), 4) for v in sample.ious],
            "clicks": [list(c) for c in sample.clicks],
            "click_ms": [round(float(v), 3) for v in sample.click_ms]}


# -- scribbles -----------------------------------------------------------------------------
SCRIBBLES_AT = (1, 2, 3)


def scribble_prompt_points(scribble) -> list:
    """A simulated stroke (continuous pixel centres) as the pixels a user's polyline names."""
    return [(int(np.floor(x)), int(np.floor(y))) for x, y in scribble.points]


def evaluate_scribbles(engine, rgb: np.ndarray, ground_truth: np.ndarray, ignore: Optional[np.ndarray] = None,
                       *, name: str = "", count: int = max(SCRIBBLES_AT), key=None) -> SampleResult:
    """The scribble protocol on one image: one stroke inside the object along its main axis, then
    one corrective stroke per round in the largest error (positive in a false negative, negative
    in a false positive), each the deterministic stroke of
    :func:`openpixel_ros.inference.click_simulation.scribble_in`. The engine sees every stroke so
    far and its previous mask. ``clicks`` of the result hold ``(points, label)`` per stroke."""
    if ignore is None:
        ignore = np.zeros(ground_truth.shape, bool)
    if not (ground_truth & ~ignore).any():
        raise ValueError(f"{name or 'mask'}: the ground truth has no object pixel")
    result = SampleResult(name=name)
    prediction = None
    for _ in range(count):
        stroke = scribble_in(ground_truth & ~ignore, True) if prediction is None else \
            next_scribble(prediction, ground_truth, ignore)
        if stroke is None:
            break
        result.clicks.append((scribble_prompt_points(stroke), 1 if stroke.positive else 0))
        prompt = ClickPrompt.from_lists([], [], scribbles=[s for s, _ in result.clicks],
                                        scribble_labels=[label for _, label in result.clicks],
                                        previous_mask=prediction, image_size=ground_truth.shape)
        prediction = _predict_and_score(engine, rgb, prompt, key, ground_truth, ignore, result)
    return result


def summarize_scribbles(samples: Sequence[SampleResult]) -> dict:
    """mIoU after 1, 2 and 3 strokes (a run with no error left keeps its last IoU)."""
    if not samples:
        raise ValueError("no samples to summarize")
    return {"images": len(samples),
            "miou_at_scribbles": {str(k): round(float(np.mean([s.iou_at(k) for s in samples])), 4)
                                  for k in SCRIBBLES_AT},
            "per_scribble_ms_median": round(statistics.median([ms for s in samples for ms in s.click_ms]), 3)}
