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
    """Cached image features + rendered prompt maps -> object mask logits and a quality score.

    Inputs:

    * ``features_s4`` [B, C4, H/4, W/4] and ``features_s8`` [B, C8, H/8, W/8]:
      the encoder's outputs for the frame (sizes round up, as the encoder's);
    * ``prompts`` [B, P, H, W] at the encoder's input resolution: channel 0
      positive clicks/scribbles, 1 negative clicks/scribbles (Gaussians of the
      distance to the nearest prompt pixel), 2 previous mask probability,
      3 box (1 inside the box); absent prompts are zeros
      (:func:`openpixel_ros.model.prompt_maps.render_prompt_maps`).

    Outputs ``mask_logits`` [B, 1, H/4, W/4] and ``score`` [B, 1], a logit of
    the predicted IoU of the mask.
    """

    def __init__(self, s4_channels: int = 48, s8_channels: int = 64, channels: int = 48,
                 context_channels: int = 64, prompt_channels: int = 4):
        super().__init__()
        self.prompt_channels = prompt_channels
        self.prompt_encoder = nn.Sequential(
            ConvNormAct(prompt_channels, 16, 3, stride=2, activation="relu"),
            ConvNormAct(16, channels, 3, stride=2, activation=None))
        self.feature_proj = ConvNormAct(s4_channels, channels, 1, activation=None)
        self.local = SeparableBlock(channels, channels)
        self.down = SeparableBlock(channels, context_channels, stride=2)
        self.context_proj = ConvNormAct(s8_channels, context_channels, 1, activation=None)
        self.context = nn.ModuleList(SeparableBlock(context_channels, context_channels, dilation=d)
                                     for d in (1, 2, 4, 8))
        self.global_context = nn.Conv2d(context_channels, context_channels, 1)
        self.up_proj = ConvNormAct(context_channels, channels, 1, activation=None)
        self.refine = SeparableBlock(channels, channels)
        self.mask_out = nn.Conv2d(channels, 1, 1)
        self.score_out = nn.Sequential(nn.Linear(2 * context_channels, 32), nn.ReLU(inplace=True), nn.Linear(32, 1))

    def forward(self, features_s4: torch.Tensor, features_s8: torch.Tensor, prompts: torch.Tensor):
        x = F.relu(self.feature_proj(features_s4) + self.prompt_encoder(prompts))
        x = self.local(x)
        ctx = F.relu(self.down(x) + self.context_proj(features_s8))
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
