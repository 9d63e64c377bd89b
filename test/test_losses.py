"""Dice, focal and cross-entropy losses: values on hand-computable cases, ignore handling, gradients."""
from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from openpixel_ros.training.losses import (LossWeights, binary_dice_loss, binary_focal_loss,  # noqa: E402
                                           click_mask_loss, dice_loss, focal_loss, mask_iou, semantic_loss)

BIG = 30.0  # a logit whose sigmoid/softmax is 1 to float precision


def test_binary_dice_by_hand():
    target = torch.tensor([[[[1.0, 1.0, 0.0, 0.0]]]])
    logits = torch.tensor([[[[BIG, -BIG, BIG, -BIG]]]])  # prediction 1, 0, 1, 0
    # intersection 1, |P| = 2, |T| = 2 -> dice 0.5
    assert binary_dice_loss(logits, target, smooth=0.0).item() == pytest.approx(0.5, abs=1e-6)
    assert binary_dice_loss(logits * 0 + BIG * (2 * target - 1), target).item() == pytest.approx(0.0, abs=1e-5)


def test_dice_smooth_term_is_configurable_and_rescues_empty_masks():
    empty = torch.zeros(1, 1, 2, 2)
    logits = torch.full((1, 1, 2, 2), -BIG)
    assert binary_dice_loss(logits, empty).item() == pytest.approx(0.0, abs=1e-6)  # default smooth 1e-6
    logits = torch.zeros(1, 1, 2, 2)  # p = 0.5 everywhere: |P| = 2
    assert binary_dice_loss(logits, empty, smooth=1.0).item() == pytest.approx(1 - 1 / 3, abs=1e-6)
    assert binary_dice_loss(logits, empty, smooth=1e-6).item() == pytest.approx(1.0, abs=1e-5)


def test_binary_dice_respects_the_valid_mask():
    target = torch.tensor([[[[1.0, 0.0]]]])
    logits = torch.tensor([[[[BIG, BIG]]]])
    valid = torch.tensor([[[[1.0, 0.0]]]])
    assert binary_dice_loss(logits, target, valid).item() == pytest.approx(0.0, abs=1e-5)


def test_multiclass_dice_by_hand_and_ignore_index():
    target = torch.tensor([[[0, 1, 1, 255]]])
    logits = torch.full((1, 3, 1, 4), -BIG)
    logits[0, 0, 0, 0] = BIG
    logits[0, 1, 0, 1] = BIG
    logits[0, 0, 0, 2] = BIG  # wrong: class 0 where class 1 is
    logits[0, 2, 0, 3] = BIG  # on an ignored pixel: does not count
    # class 0: inter 1, |P| 2, |T| 1 -> 1 - 2/3; class 1: inter 1, |P| 1, |T| 2 -> 1 - 2/3; class 2 absent.
    assert dice_loss(logits, target, smooth=0.0).item() == pytest.approx(1 - 2 / 3, abs=1e-5)


def test_focal_with_gamma_zero_is_cross_entropy_and_gamma_down_weights_easy_pixels():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 5, 6)
    target = torch.randint(0, 4, (2, 5, 6))
    target[0, 0, 0] = 255
    ce = F.cross_entropy(logits, target, ignore_index=255)
    assert focal_loss(logits, target, gamma=0.0).item() == pytest.approx(ce.item(), rel=1e-5)
    assert focal_loss(logits, target, gamma=2.0).item() < ce.item()
    # One pixel by hand: p_t = softmax(...)[target].
    one = torch.tensor([[[[2.0]], [[0.0]]]])
    p = math.exp(2) / (math.exp(2) + 1)
    expected = -(1 - p) ** 2 * math.log(p)
    assert focal_loss(one, torch.tensor([[[0]]]), gamma=2.0).item() == pytest.approx(expected, rel=1e-5)


def test_binary_focal_reduces_to_bce():
    torch.manual_seed(1)
    logits, target = torch.randn(2, 1, 4, 4), (torch.rand(2, 1, 4, 4) > 0.5).float()
    bce = F.binary_cross_entropy_with_logits(logits, target)
    assert binary_focal_loss(logits, target, gamma=0.0, alpha=0.5).item() == pytest.approx(bce.item(), rel=1e-5)
    assert binary_focal_loss(logits, target, gamma=2.0).item() < bce.item()


def test_mask_iou():
    target = torch.tensor([[[[1.0, 1.0, 0.0, 0.0]]]])
    logits = torch.tensor([[[[1.0, -1.0, 1.0, -1.0]]]])
    assert mask_iou(logits, target).item() == pytest.approx(1 / 3)
    assert mask_iou(-torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)).item() == 1.0


def test_combined_losses_have_gradients_and_switchable_terms():
    torch.manual_seed(2)
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    target = torch.randint(0, 3, (2, 8, 8))  # twice the logits' size: upsampled inside
    weights = LossWeights(cross_entropy=1.0, dice=0.5, focal=0.25)
    terms = semantic_loss(logits, target, weights)
    assert set(terms) == {"ce", "dice", "focal", "total"}
    terms["total"].backward()
    assert logits.grad.abs().sum() > 0
    assert set(semantic_loss(logits, target, LossWeights(dice=0.0))) == {"ce", "total"}

    mask_logits = torch.randn(2, 1, 4, 4, requires_grad=True)
    score = torch.zeros(2, 1, requires_grad=True)
    mask_target = (torch.rand(2, 1, 8, 8) > 0.5).float()
    terms = click_mask_loss(mask_logits, score, mask_target, LossWeights())
    assert set(terms) == {"mask_pixel", "mask_dice", "score", "total"}
    terms["total"].backward()
    assert mask_logits.grad.abs().sum() > 0 and score.grad.abs().sum() > 0


def test_unknown_loss_option_is_rejected():
    with pytest.raises(ValueError, match="unknown"):
        LossWeights.from_dict({"dise": 1.0})


def test_ohem_averages_only_the_hardest_pixels_and_ignores_void():
    from openpixel_ros.training.losses import LossWeights, ohem_cross_entropy, semantic_loss
    logits = torch.zeros(1, 2, 1, 4)
    logits[0, 1] = torch.tensor([4.0, 1.0, -1.0, -4.0])  # class 1 wins on the first two pixels
    target = torch.tensor([[[1, 1, 1, 255]]])  # the last pixel is void
    per_pixel = F.cross_entropy(logits, target, ignore_index=255, reduction="none")[0, 0]
    # half of the 3 valid pixels rounds to 2: the two hardest (pixels 2 and 1), never the void one
    assert torch.isclose(ohem_cross_entropy(logits, target, 0.5), per_pixel[1:3].mean())
    assert torch.isclose(ohem_cross_entropy(logits, target, 0.01), per_pixel[2])
    everything = semantic_loss(logits, target, LossWeights(dice=0.0, ignore_index=255))["ce"]
    assert torch.isclose(everything, per_pixel[:3].mean())
    hard = semantic_loss(logits, target, LossWeights(dice=0.0, ignore_index=255, ohem_fraction=0.5))["ce"]
    assert hard > everything
