"""The two heads on OpenPixel's shared features: semantic classes, and the click-prompt decoder.

The prompt decoder is built for interactive latency: the encoder runs once
per frame and its features are cached; every click only re-runs this small
decoder, which fuses the rendered prompt maps with those features at 1/4
resolution (late fusion) and gathers context at 1/8 with dilated depthwise
blocks and a global pooling branch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import ConvNormAct


class SeparableBlock(nn.Module):
    """Depthwise 3x3 (BN, ReLU) then pointwise 1x1 (BN); residual when the shape allows, then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int = 1, stride: int = 1):
        super().__init__()
        self.depthwise = ConvNormAct(in_channels, in_channels, 3, stride=stride, dilation=dilation,
                                     groups=in_channels, activation="relu")
        self.pointwise = ConvNormAct(in_channels, out_channels, 1, activation=None)
        self.residual = stride == 1 and in_channels == out_channels
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pointwise(self.depthwise(x))
        return self.act(x + y if self.residual else y)


class SemanticHead(nn.Module):
    """Features [B, C, h, w] -> class logits [B, num_classes, h, w]."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.block = SeparableBlock(in_channels, in_channels)
        self.classifier = nn.Conv2d(in_channels, num_classes, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.block(features))


def upsample_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Bilinear resize of ``x`` to ``like``'s spatial size (half-pixel centres, as ONNX Resize)."""
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


class PromptDecoder(nn.Module):
    """Cached image features + prompt maps -> object mask logits and a quality score.

    Inputs, all on the encoder's grids (``h4 = ceil(H/4)``, ``h8 = ceil(h4/2)``):

    * ``features_s4`` [B, C4, h4, w4] and ``features_s8`` [B, C8, h8, w8]:
      the encoder's outputs for the frame;
    * ``prompts`` [B, P, h4, w4]: channel 0 positive clicks/scribbles,
      1 negative ones (Gaussians of the distance to the nearest prompt),
      2 previous mask probability, 3 box (1 inside); absent prompts are zeros
      (:func:`openpixel_ros.inference.prompt_maps.render_prompt_maps`).

    Outputs ``mask_logits`` [B, 1, h4, w4] and ``score`` [B, 1], a logit of
    the predicted IoU of the mask. The prompts meet the features at 1/4
    (late fusion); three dilated blocks and a global pooling branch at 1/8
    spread a click's influence over the object.
    """

    def __init__(self, s4_channels: int = 48, s8_channels: int = 64, prompt_channels: int = 4,
                 prompt_hidden: int = 16, dilations: tuple = (2, 4, 8)):
        super().__init__()
        self.prompt_channels = prompt_channels
        self.prompt_encoder = nn.Sequential(
            ConvNormAct(prompt_channels, prompt_hidden, 3, activation="relu"),
            ConvNormAct(prompt_hidden, s4_channels, 1, activation=None))
        self.local = SeparableBlock(s4_channels, s4_channels)
        self.down = SeparableBlock(s4_channels, s8_channels, stride=2)
        self.context = nn.ModuleList(SeparableBlock(s8_channels, s8_channels, dilation=d) for d in dilations)
        self.global_context = nn.Conv2d(s8_channels, s8_channels, 1)
        self.up_proj = ConvNormAct(s8_channels, s4_channels, 1, activation=None)
        self.refine = ConvNormAct(s4_channels, s4_channels, 3, groups=s4_channels, activation="relu")
        self.mask_out = nn.Conv2d(s4_channels, 1, 1)
        self.score_out = nn.Sequential(nn.Linear(2 * s8_channels, 32), nn.ReLU(inplace=True), nn.Linear(32, 1))

    def forward(self, features_s4: torch.Tensor, features_s8: torch.Tensor, prompts: torch.Tensor):
        x = self.local(F.relu(features_s4 + self.prompt_encoder(prompts)))
        ctx = F.relu(self.down(x) + features_s8)
        for block in self.context:
            ctx = block(ctx)
        ctx = F.relu(ctx + self.global_context(F.adaptive_avg_pool2d(ctx, 1)))
        y = self.refine(F.relu(x + upsample_to(self.up_proj(ctx), x)))
        mask_logits = self.mask_out(y)
        # Score from the context pooled over the whole frame and over the predicted object.
        weight = torch.sigmoid(F.interpolate(mask_logits, size=ctx.shape[-2:], mode="bilinear", align_corners=False))
        object_pool = (ctx * weight).sum(dim=(2, 3)) / (weight.sum(dim=(2, 3)) + 1e-6)
        score = self.score_out(torch.cat([ctx.mean(dim=(2, 3)), object_pool], dim=1))
        return mask_logits, score
