"""MobileNetV2 with the layer structure of Google's DeepLabV3-MobileNetV2 (depth multiplier 0.5).

The layers, channel widths and padding follow the TFLite file
``deeplabv3_257_mv_gpu.tflite`` so that its weights load one to one
(:mod:`openpixel_ros.model.tflite_weights`):

* stem: 3x3 conv, stride 2, 16 channels, ReLU6;
* 17 inverted-residual blocks (expand 1x1 + ReLU6, depthwise 3x3 + ReLU6,
  project 1x1 linear, identity shortcut when the shape allows);
* no final 1x1 conv to 1280 channels (DeepLab drops it).

Convolutions pad like TensorFlow's ``SAME``: the total padding is
``max((ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)`` with the odd pixel at
the bottom/right. For stride 1 that is symmetric; for stride 2 on an even
size it is asymmetric, which PyTorch's ``padding=`` cannot express, so the
pad is computed from the input's size at run time (it traces to shape ops in
ONNX, so exported graphs keep working with dynamic input sizes).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

# (expansion, output channels at width 1.0, repeats, stride) of MobileNetV2's bottleneck stages.
MOBILENET_V2_STAGES = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)
# Index of the last block of the stage that ends at each nominal reduction (FPN naming: c2 = 1/4 ...).
FEATURE_TAPS = {"c2": 2, "c3": 5, "c4": 12, "c5": 16}

ACTIVATIONS = {"relu6": nn.ReLU6, "relu": nn.ReLU, None: nn.Identity}


def tf_same_pads(size, kernel: int, stride: int, dilation: int):
    """(before, after) padding of one spatial axis under TensorFlow's SAME rule.

    ``size`` may be a traced size during ONNX export, so the arithmetic uses
    floor division only (``ceil`` or ``max`` would freeze it to a constant);
    callers guarantee ``stride <= (kernel - 1) * dilation + 1``, which keeps
    the total non-negative without a ``max``.
    """
    effective = (kernel - 1) * dilation + 1
    out = (size + stride - 1) // stride
    total = (out - 1) * stride + effective - size
    return total // 2, total - total // 2


class SamePadConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow SAME padding (asymmetric where TensorFlow's is).

    Stride-1 convolutions have a fixed symmetric pad, which is passed to the
    convolution itself; only strided ones pad explicitly at run time.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1, groups: int = 1, bias: bool = True):
        symmetric = stride == 1
        super().__init__(in_channels, out_channels, kernel_size, stride=stride,
                         padding=((kernel_size - 1) * dilation) // 2 if symmetric else 0,
                         dilation=dilation, groups=groups, bias=bias)
        self._runtime_pad = not symmetric
        if self._runtime_pad and stride > (kernel_size - 1) * dilation + 1:
            raise ValueError("SAME padding with a stride larger than the kernel is not supported")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._runtime_pad:
            x = self._pad_same(x)
        return super().forward(x)

    def _pad_same(self, x: torch.Tensor) -> torch.Tensor:
        """Pad as SAME does for this input's size.

        Pads the most SAME can ask for on each side, then slices out the window
        this size needs: a static pad plus slices constant-folds in fixed-size
        exports, where a pad computed from the size would leave shape ops behind.
        """
        most, windows = [], []
        for axis, dim in ((1, 3), (0, 2)):  # F.pad lists the last axis first
            effective = (self.kernel_size[axis] - 1) * self.dilation[axis] + 1
            most_before = (effective - 1) // 2
            most += [most_before, effective - 1 - most_before]
            size = x.shape[dim]
            before, after = tf_same_pads(size, self.kernel_size[axis], self.stride[axis], self.dilation[axis])
            windows.append((dim, most_before - before, size + before + after))
        x = F.pad(x, most)
        for dim, start, length in windows:
            x = x.narrow(dim, start, length)
        return x


class ConvNormAct(nn.Module):
    """Convolution, optional BatchNorm, optional FiLM modulation, activation.

    ``norm=False`` gives a biased convolution and no BatchNorm: the form of a
    TFLite graph, whose BatchNorms are folded into the convolutions.
    ``norm=True`` gives an unbiased convolution followed by BatchNorm; a FiLM
    ``modulation`` (gamma, beta of shape [B, C, 1, 1]) then applies to the
    normalised output, before the activation.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1,
                 dilation: int = 1, groups: int = 1, activation: Optional[str] = "relu6", norm: bool = True):
        super().__init__()
        self.conv = SamePadConv2d(in_channels, out_channels, kernel_size, stride=stride, dilation=dilation,
                                  groups=groups, bias=not norm)
        self.norm = nn.BatchNorm2d(out_channels) if norm else None
        self.activation_name = activation
        self.act = ACTIVATIONS[activation]()

    @property
    def out_channels(self) -> int:
        return self.conv.out_channels

    def forward(self, x: torch.Tensor, modulation=None) -> torch.Tensor:
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        if modulation is not None:
            gamma, beta = modulation
            x = x * gamma + beta
        return self.act(x)


class InvertedResidual(nn.Module):
    """MobileNetV2 bottleneck: expand (1x1, ReLU6), depthwise (3x3, ReLU6), project (1x1, linear)."""

    def __init__(self, in_channels: int, out_channels: int, expansion: int, stride: int, dilation: int,
                 norm: bool):
        super().__init__()
        hidden = in_channels * expansion
        self.expand = ConvNormAct(in_channels, hidden, 1, norm=norm) if expansion != 1 else None
        self.depthwise = ConvNormAct(hidden, hidden, 3, stride=stride, dilation=dilation, groups=hidden, norm=norm)
        self.project = ConvNormAct(hidden, out_channels, 1, activation=None, norm=norm)
        self.use_shortcut = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return x + y if self.use_shortcut else y


class MobileNetV2(nn.Module):
    """MobileNetV2 feature extractor.

    ``width`` scales the channels (0.5 matches the DeepLab TFLite model: plain
    ``int(c * width)``, no rounding to multiples of 8). ``output_stride`` 8 or
    16 replaces the later strides by dilation, the DeepLab way: the first
    block of a stage past the output stride keeps the previous rate and the
    rate then grows by that stage's stride. ``norm`` adds BatchNorm layers
    (for training); without it the convolutions carry biases (the folded
    form of the TFLite file).

    ``forward`` returns a dict of the stage outputs named by their nominal
    reduction: ``c2`` (1/4), ``c3`` (1/8), ``c4`` (1/16), ``c5`` (1/32; at
    ``output_stride`` 8 or 16 these last two are dilated and larger).
    """

    def __init__(self, width: float = 0.5, output_stride: int = 32, norm: bool = True):
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, not {output_stride}")
        self.width = width
        self.output_stride = output_stride
        stem_channels = int(32 * width)
        self.stem = ConvNormAct(3, stem_channels, 3, stride=2, norm=norm)
        blocks = []
        in_channels, current_stride, rate = stem_channels, 2, 1
        for expansion, channels, repeats, stage_stride in MOBILENET_V2_STAGES:
            out_channels = int(channels * width)
            for i in range(repeats):
                stride = stage_stride if i == 0 else 1
                if current_stride == output_stride:
                    layer_stride, layer_rate = 1, rate
                    rate *= stride
                else:
                    layer_stride, layer_rate = stride, 1
                    current_stride *= stride
                blocks.append(InvertedResidual(in_channels, out_channels, expansion, layer_stride, layer_rate, norm))
                in_channels = out_channels
        self.blocks = nn.ModuleList(blocks)
        self.feature_channels = {name: self.blocks[i].project.out_channels for name, i in FEATURE_TAPS.items()}

    def forward(self, x: torch.Tensor, stem_modulation=None) -> dict:
        return self.forward_blocks(self.stem(x, stem_modulation))

    def forward_blocks(self, x: torch.Tensor) -> dict:
        """The blocks after the stem (early-fusion networks add their prompt maps to the stem's output)."""
        taps = {i: name for name, i in FEATURE_TAPS.items()}
        features = {}
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in taps:
                features[taps[i]] = x
        return features

    def conv_layers(self) -> list:
        """Every :class:`ConvNormAct` in execution order (the order the TFLite graph computes them)."""
        layers = [self.stem]
        for block in self.blocks:
            layers += [m for m in (block.expand, block.depthwise, block.project) if m is not None]
        return layers
