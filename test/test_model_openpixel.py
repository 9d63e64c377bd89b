"""OpenPixel: shapes on odd sizes, gradients everywhere, size budget, pretrained initialisation, MAC counting."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from openpixel_ros.model.compute_cost import count_macs, parameter_count  # noqa: E402
from openpixel_ros.model.heads import PromptDecoder, SemanticHead  # noqa: E402
from openpixel_ros.model.openpixel import OpenPixel, OpenPixelConfig  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DEEPLAB = SHARED / "models" / "deeplabv3_mnv2_voc" / "deeplabv3_257_mv_gpu.tflite"
SIZE_BUDGET_BYTES = 8.7e6


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return OpenPixel(OpenPixelConfig(num_classes=5, conditioning_size=6)).eval()


def test_encoder_and_decoder_shapes_on_an_odd_size(model):
    h, w = 75, 101
    with torch.no_grad():
        f4, f8, logits = model.encode(torch.zeros(1, 3, h, w), torch.zeros(1, 6))
        h4, w4 = math.ceil(h / 4), math.ceil(w / 4)
        assert logits.shape == (1, 5, h4, w4)
        assert f4.shape == (1, 48, h4, w4)
        assert f8.shape == (1, 64, math.ceil(h4 / 2), math.ceil(w4 / 2))
        mask, score = model.decode(f4, f8, torch.zeros(1, 4, h4, w4))
    assert mask.shape == (1, 1, h4, w4) and score.shape == (1, 1)


def test_conditioning_is_optional_and_neutral_at_initialisation(model):
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        a = model.encode(x)[2]
        b = model.encode(x, torch.randn(1, 6))[2]
    assert torch.allclose(a, b)  # FiLM starts as the identity


def test_the_prompts_change_the_mask(model):
    with torch.no_grad():
        f4, f8, _ = model.encode(torch.randn(1, 3, 64, 64))
        prompts = torch.zeros(1, 4, 16, 16)
        empty = model.decode(f4, f8, prompts)[0]
        prompts[0, 0, 8, 8] = 1.0
        clicked = model.decode(f4, f8, prompts)[0]
    assert not torch.allclose(empty, clicked)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    net = OpenPixel(OpenPixelConfig(num_classes=3, conditioning_size=4)).train()
    torch.nn.init.normal_(net.film.mlp[-1].weight, std=0.01)  # else the first layer gets no gradient
    out = net(torch.randn(2, 3, 48, 40), torch.rand(2, 4, 12, 10), torch.randn(2, 4))
    (out["semantic_logits"].mean() + out["mask_logits"].mean() + out["score"].mean()).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


def test_semantic_head_alone():
    head = SemanticHead(48, 7)
    out = head(torch.randn(2, 48, 9, 11))
    assert out.shape == (2, 7, 9, 11)
    out.mean().backward()
    assert all(p.grad is not None for p in head.parameters())


def test_prompt_decoder_alone():
    head = PromptDecoder()
    f4 = torch.randn(2, 48, 9, 11, requires_grad=True)
    mask, score = head(f4, torch.randn(2, 64, 5, 6), torch.rand(2, 4, 9, 11))
    assert mask.shape == (2, 1, 9, 11) and score.shape == (2, 1)
    (mask.mean() + score.mean()).backward()
    assert f4.grad.abs().sum() > 0
    assert all(p.grad is not None for p in head.parameters())


def test_fp32_size_fits_the_budget(model):
    assert parameter_count(model) * 4 <= SIZE_BUDGET_BYTES


def test_mac_count_matches_hand_arithmetic():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1, groups=1)
    assert count_macs(conv, torch.zeros(1, 3, 10, 12)) == 8 * 10 * 12 * 3 * 9
    dw = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8)
    assert count_macs(dw, torch.zeros(1, 8, 10, 12)) == 8 * 10 * 12 * 9
    from openpixel_ros.model.cross_scale_attention import CrossScaleAttention
    att = CrossScaleAttention(4, 4, dim=8, heads=2)
    per_position_convs = 6 * 5 * 8 * 4 + 2 * (2 * 3 * 8 * 4) + 6 * 5 * 4 * 8
    assert count_macs(att, torch.zeros(1, 4, 6, 5), torch.zeros(1, 4, 2, 3)) == per_position_convs + 2 * 30 * 6 * 8


def test_pretrained_backbone_reproduces_deeplab_features():
    """Loaded into OpenPixel (BatchNorm form, output stride 32), the first stages compute exactly what the
    DeepLab port (folded form) computes: same weights, same padding."""
    if not DEEPLAB.is_file():
        pytest.skip("needs ../shared")
    from openpixel_ros.model.deeplab import deeplab_from_tflite
    reference = deeplab_from_tflite(DEEPLAB)
    net = OpenPixel(OpenPixelConfig(conditioning_size=0)).eval()
    before = net.backbone.blocks[0].project.conv.weight.clone()
    net.load_pretrained_backbone(DEEPLAB)
    assert not torch.equal(before, net.backbone.blocks[0].project.conv.weight)
    x = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (1, 3, 96, 128)).astype(np.float32))
    with torch.no_grad():
        ours = net.backbone(x)
        theirs = reference.backbone(x)
    for name in ("c2", "c3"):  # before the stride/dilation of the two networks differ
        assert torch.allclose(ours[name], theirs[name], atol=1e-4), name
