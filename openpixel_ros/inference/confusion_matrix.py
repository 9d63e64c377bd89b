"""Per-pixel scoring of class labels: mIoU, pixel accuracy and per-class IoU.

Shared by the evaluation tools (:mod:`openpixel_ros.eval`), training's held-out scoring
(:mod:`openpixel_ros.training.validation`) and the bag tool's labels topic, so every number
is counted the same way.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np


class ConfusionMatrix:
    """Pixel counts ``[ground truth, prediction]`` over K classes plus a "no class" prediction column."""

    def __init__(self, num_classes: int, ignore_index: Optional[int] = None):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.counts = np.zeros((num_classes, num_classes + 1), np.int64)

    def update(self, ground_truth: np.ndarray, prediction: np.ndarray) -> None:
        """Add one image. Ground-truth pixels equal to ``ignore_index`` or outside 0..K-1 are skipped;
        predictions outside 0..K-1 count in the "no class" column (always wrong)."""
        if ground_truth.shape != prediction.shape:
            raise ValueError(f"label {ground_truth.shape} and prediction {prediction.shape} differ in size")
        gt = ground_truth.astype(np.int64).ravel()
        pred = prediction.astype(np.int64).ravel()
        valid = (gt >= 0) & (gt < self.num_classes)
        if self.ignore_index is not None:
            valid &= gt != self.ignore_index
        k = self.num_classes
        pred = np.where((pred >= 0) & (pred < k), pred, k)
        self.counts += np.bincount(gt[valid] * (k + 1) + pred[valid],
                                   minlength=k * (k + 1)).reshape(k, k + 1)

    def merge(self, other: "ConfusionMatrix") -> None:
        self.counts += other.counts

    def per_class_iou(self) -> np.ndarray:
        """IoU per class; NaN for a class neither in the ground truth nor predicted."""
        k = self.num_classes
        tp = np.diag(self.counts[:, :k]).astype(np.float64)
        gt_total = self.counts.sum(axis=1)
        pred_total = self.counts[:, :k].sum(axis=0)
        union = gt_total + pred_total - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, tp / union, np.nan)

    def miou(self) -> float:
        iou = self.per_class_iou()
        return float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else float("nan")

    def pixel_accuracy(self) -> float:
        total = self.counts.sum()
        return float(np.trace(self.counts[:, :self.num_classes]) / total) if total else float("nan")

    def summary(self, class_names: Sequence[str]) -> dict:
        """``{"miou", "pixel_acc", "per_class_iou": {name: iou or None}}``."""
        return {"miou": _json_float(self.miou()), "pixel_acc": _json_float(self.pixel_accuracy()),
                "per_class_iou": {name: _json_float(v) for name, v in zip(class_names, self.per_class_iou())}}


def _json_float(value: float):
    return None if value is None or math.isnan(value) else round(float(value), 6)
