"""Segmentation losses: Dice, focal and cross-entropy, for class logits and for binary mask logits.

Class logits are ``[B, C, H, W]`` with integer targets ``[B, H, W]`` (pixels
equal to ``ignore_index`` count nowhere); binary mask logits are
``[B, 1, H, W]`` with float targets in {0, 1} of the same shape and an
optional ``valid`` mask (e.g. the 128 "unknown" band of GrabCut).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

DEFAULT_SMOOTH = 1e-6


def _dice_from_probs(probs: torch.Tensor, target: torch.Tensor, dims, smooth: float) -> torch.Tensor:
    intersection = (probs * target).sum(dim=dims)
    denominator = probs.sum(dim=dims) + target.sum(dim=dims)
    return 1.0 - (2.0 * intersection + smooth) / (denominator + smooth)


def binary_dice_loss(logits: torch.Tensor, target: torch.Tensor, valid: Optional[torch.Tensor] = None,
                     smooth: float = DEFAULT_SMOOTH) -> torch.Tensor:
    """``1 - (2|P.T| + s) / (|P| + |T| + s)`` per sample on sigmoid probabilities, averaged over the batch.

    An empty target with an empty prediction scores 0 loss for any ``smooth`` > 0.
    """
    probs = torch.sigmoid(logits)
    if valid is not None:
        probs, target = probs * valid, target * valid
    return _dice_from_probs(probs, target, (1, 2, 3), smooth).mean()


def dice_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255,
              smooth: float = DEFAULT_SMOOTH) -> torch.Tensor:
    """Multi-class soft Dice on softmax probabilities, per sample and class, averaged over the
    (sample, class) pairs whose class is present in the sample's target.

    Absent classes are left out because with a small ``smooth`` their Dice is
    about 1 for any non-zero predicted mass; their false positives still
    count through the present classes' denominators.
    """
    num_classes = logits.shape[1]
    valid = (target != ignore_index).unsqueeze(1).to(logits.dtype)
    probs = torch.softmax(logits, dim=1) * valid
    one_hot = F.one_hot(target.clamp(0, num_classes - 1) * (target != ignore_index), num_classes)
    one_hot = one_hot.permute(0, 3, 1, 2).to(logits.dtype) * valid
    per_class = _dice_from_probs(probs, one_hot, (2, 3), smooth)  # [B, C]
    present = one_hot.sum(dim=(2, 3)) > 0
    if not present.any():
        return per_class.sum() * 0.0  # keeps the graph (and a zero gradient) when every pixel is ignored
    return per_class[present].mean()


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0, ignore_index: int = 255,
               alpha: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Multi-class focal loss ``-(1 - p_t)^gamma log p_t`` averaged over non-ignored pixels.

    ``alpha``: optional per-class weights [C]. ``gamma = 0`` gives cross-entropy.
    """
    log_probs = F.log_softmax(logits, dim=1)
    valid = target != ignore_index
    safe_target = torch.where(valid, target, torch.zeros_like(target))
    log_pt = log_probs.gather(1, safe_target.unsqueeze(1)).squeeze(1)
    loss = -((1.0 - log_pt.exp()) ** gamma) * log_pt
    if alpha is not None:
        loss = loss * alpha.to(loss.dtype)[safe_target]
    count = valid.sum().clamp(min=1)
    return (loss * valid).sum() / count


def binary_focal_loss(logits: torch.Tensor, target: torch.Tensor, valid: Optional[torch.Tensor] = None,
                      gamma: float = 2.0, alpha: float = 0.5) -> torch.Tensor:
    """Sigmoid focal loss (RetinaNet form) averaged over valid pixels; ``alpha`` weighs the positives."""
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p = torch.sigmoid(logits)
    p_t = p * target + (1 - p) * (1 - target)
    alpha_t = alpha * target + (1 - alpha) * (1 - target)
    loss = 2.0 * alpha_t * (1 - p_t) ** gamma * bce  # 2x so alpha=0.5, gamma=0 equals BCE
    if valid is None:
        return loss.mean()
    return (loss * valid).sum() / valid.sum().clamp(min=1)


@dataclass
class LossWeights:
    """Weights of the combined losses (0 switches a term off) and their settings."""

    cross_entropy: float = 1.0
    dice: float = 1.0
    focal: float = 0.0
    focal_gamma: float = 2.0
    smooth: float = DEFAULT_SMOOTH
    ignore_index: int = 255
    # Cross-entropy class weights from the training labels' pixel frequencies (for thin classes):
    # "none", "inverse_sqrt" (w ~ f^-1/2) or "median_frequency" (w = median f / f, SegNet's).
    class_weighting: str = "none"
    max_class_weight: float = 10.0
    # Online hard-example mining: cross-entropy over only this fraction of the batch's valid pixels,
    # the hardest (highest loss) ones; 0 (or 1): every pixel. Thin classes are mostly hard pixels.
    ohem_fraction: float = 0.0
    mask: float = 1.0  # the click head's mask loss (focal or BCE + Dice) relative to the semantic loss
    score: float = 0.1  # the click head's IoU-prediction loss

    @classmethod
    def from_dict(cls, data: Optional[dict]) -> "LossWeights":
        data = dict(data or {})
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown loss options: {', '.join(sorted(unknown))}")
        return cls(**data)


CLASS_WEIGHTINGS = ("none", "inverse_sqrt", "median_frequency")


def class_weights(pixel_counts, method: str, max_weight: float = 10.0) -> Optional[torch.Tensor]:
    """Per-class cross-entropy weights from pixel counts per class, normalised to a pixel-weighted
    mean of 1 (so the loss keeps its scale); ``None`` for ``"none"``. Absent classes get weight 0."""
    if method == "none":
        return None
    counts = torch.as_tensor(pixel_counts, dtype=torch.float64)
    present = counts > 0
    freq = counts / counts.sum()
    weights = torch.zeros_like(freq)
    if method == "inverse_sqrt":
        weights[present] = freq[present].rsqrt()
    elif method == "median_frequency":
        weights[present] = freq[present].median() / freq[present]
    else:
        raise ValueError(f"unknown class weighting {method!r}")
    weights = weights / (weights * freq).sum()
    return weights.clamp(max=max_weight).float()


def ohem_cross_entropy(logits: torch.Tensor, target: torch.Tensor, fraction: float,
                       ce_weights: Optional[torch.Tensor] = None, ignore_index: int = 255) -> torch.Tensor:
    """Cross-entropy averaged over the hardest ``fraction`` of the non-ignored pixels (at least one)."""
    per_pixel = F.cross_entropy(logits, target, weight=ce_weights, ignore_index=ignore_index, reduction="none")
    valid = per_pixel[target != ignore_index]
    if valid.numel() == 0:
        return per_pixel.sum() * 0.0
    k = max(1, int(round(fraction * valid.numel())))
    return valid.topk(k, sorted=False).values.mean()


def semantic_loss(logits: torch.Tensor, target: torch.Tensor, weights: LossWeights,
                  ce_weights: Optional[torch.Tensor] = None) -> dict:
    """Weighted sum of cross-entropy (optionally class-weighted), Dice and focal on class logits
    (upsampled to the target's size)."""
    if logits.shape[-2:] != target.shape[-2:]:
        logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
    terms = {}
    if weights.cross_entropy and 0.0 < weights.ohem_fraction < 1.0:
        terms["ce"] = weights.cross_entropy * ohem_cross_entropy(logits, target, weights.ohem_fraction,
                                                                 ce_weights, weights.ignore_index)
    elif weights.cross_entropy:
        terms["ce"] = weights.cross_entropy * F.cross_entropy(
            logits, target, weight=ce_weights, ignore_index=weights.ignore_index)
    if weights.dice:
        terms["dice"] = weights.dice * dice_loss(logits, target, weights.ignore_index, weights.smooth)
    if weights.focal:
        terms["focal"] = weights.focal * focal_loss(logits, target, weights.focal_gamma, weights.ignore_index)
    terms["total"] = sum(terms.values())
    return terms


def mask_iou(logits: torch.Tensor, target: torch.Tensor, valid: Optional[torch.Tensor] = None) -> torch.Tensor:
    """IoU of ``logits > 0`` against ``target`` per sample, [B] (1 when both are empty)."""
    pred = (logits > 0).to(target.dtype)
    if valid is not None:
        pred, target = pred * valid, target * valid
    inter = (pred * target).sum(dim=(1, 2, 3))
    union = (pred + target - pred * target).sum(dim=(1, 2, 3))
    return torch.where(union > 0, inter / union.clamp(min=1e-9), torch.ones_like(union))


def click_mask_loss(mask_logits: torch.Tensor, score: torch.Tensor, target: torch.Tensor, weights: LossWeights,
                    valid: Optional[torch.Tensor] = None) -> dict:
    """Click-head loss: (focal if ``weights.focal`` else BCE) + Dice on the mask, and BCE of the
    score against the mask's actual IoU (a detached target)."""
    if mask_logits.shape[-2:] != target.shape[-2:]:
        mask_logits = F.interpolate(mask_logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
    if weights.focal:
        pixel = binary_focal_loss(mask_logits, target, valid, weights.focal_gamma)
    elif valid is None:
        pixel = F.binary_cross_entropy_with_logits(mask_logits, target)
    else:
        pixel = (F.binary_cross_entropy_with_logits(mask_logits, target, reduction="none") * valid).sum() \
            / valid.sum().clamp(min=1)
    terms = {"mask_pixel": weights.mask * pixel}
    if weights.dice:
        terms["mask_dice"] = weights.mask * weights.dice * binary_dice_loss(mask_logits, target, valid, weights.smooth)
    if weights.score:
        iou = mask_iou(mask_logits.detach(), target, valid)
        terms["score"] = weights.score * F.binary_cross_entropy_with_logits(score.squeeze(1), iou)
    terms["total"] = sum(terms.values())
    return terms
