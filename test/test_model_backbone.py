"""MobileNetV2 backbone: TensorFlow SAME padding, output strides, feature shapes and gradients."""
from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from openpixel_ros.model.backbone import MobileNetV2, SamePadConv2d, tf_same_pads  # noqa: E402


def reference_same_conv(x, conv):
    """TensorFlow's SAME rule written out with math.ceil, as its documentation states it."""
    def pads(n, k, s, d):
        effective = (k - 1) * d + 1
        total = max((math.ceil(n / s) - 1) * s + effective - n, 0)
        return total // 2, total - total // 2
    top, bottom = pads(x.shape[2], conv.kernel_size[0], conv.stride[0], conv.dilation[0])
    left, right = pads(x.shape[3], conv.kernel_size[1], conv.stride[1], conv.dilation[1])
    return F.conv2d(F.pad(x, (left, right, top, bottom)), conv.weight, conv.bias, conv.stride, 0, conv.dilation,
                    conv.groups)


@pytest.mark.parametrize("kernel,stride,dilation", [(3, 2, 1), (3, 2, 2), (5, 2, 1), (3, 3, 1), (3, 1, 1), (3, 1, 4)])
def test_same_padding_matches_tensorflow_rule_for_odd_and_even_sizes(kernel, stride, dilation):
    torch.manual_seed(0)
    conv = SamePadConv2d(2, 3, kernel, stride=stride, dilation=dilation)
    for h, w in [(7, 8), (8, 7), (9, 9), (10, 12), (33, 32)]:
        x = torch.randn(1, 2, h, w)
        expected = reference_same_conv(x, conv)
        got = conv(x)
        assert got.shape == expected.shape
        assert torch.allclose(got, expected, atol=1e-6)


def test_same_pads_are_asymmetric_for_even_sizes_with_stride_two():
    assert tf_same_pads(8, 3, 2, 1) == (0, 1)  # TensorFlow puts the odd pixel at the end
    assert tf_same_pads(9, 3, 2, 1) == (1, 1)
    assert tf_same_pads(257, 3, 1, 2) == (2, 2)


@pytest.mark.parametrize("output_stride,c4_stride,c5_stride", [(32, 16, 32), (16, 16, 16), (8, 8, 8)])
def test_feature_strides_and_channels(output_stride, c4_stride, c5_stride):
    net = MobileNetV2(output_stride=output_stride).eval()
    h, w = 65, 97
    with torch.no_grad():
        feats = net(torch.zeros(1, 3, h, w))
    expected = {"c2": 4, "c3": 8, "c4": c4_stride, "c5": c5_stride}
    for name, stride in expected.items():
        assert feats[name].shape[2:] == (math.ceil(h / stride), math.ceil(w / stride)), name
        assert feats[name].shape[1] == net.feature_channels[name]
    assert net.feature_channels == {"c2": 12, "c3": 16, "c4": 48, "c5": 160}  # DeepLab's width 0.5


def test_deeplab_dilation_pattern():
    """At output stride 8 the first block of a stage keeps the old rate, later ones take the new one."""
    net = MobileNetV2(output_stride=8, norm=False)
    rates = [block.depthwise.conv.dilation[0] for block in net.blocks]
    strides = [block.depthwise.conv.stride[0] for block in net.blocks]
    assert strides == [1, 2, 1, 2, 1, 1] + [1] * 11
    assert rates == [1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 4, 4, 4]


def test_gradients_reach_every_parameter():
    net = MobileNetV2()
    feats = net(torch.randn(2, 3, 40, 36))
    sum(f.mean() for f in feats.values()).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
