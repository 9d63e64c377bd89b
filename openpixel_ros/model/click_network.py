"""The OpenPixel click network: clicks fused into the encoder's first layer, trained end to end on objects.

::

    image [B,3,H,W] (x = rgb/255*2 - 1) -> stem (3x3/2) --+--> MobileNetV2 blocks (0.5) -> c2, c3, c5
    prompts [B,4,H/2,W/2] -> PromptFusion (3x3, 1x1) -----+     (DeepLab VOC weights, output stride 16)
                                                                   |
                      ObjectDecoder: ASPP-lite on c5, + c3 at 1/8, + c2 at 1/4
                                                                   v
                                       mask_logits [B,1,H/4,W/4], score [B,1]

Unlike the road model's click decoder (late fusion on frozen semantic
features), the prompt maps here enter right after the stem ("Conv1S" early
fusion, as RITM and ClickSEG do), so every layer sees the clicks, and the
whole network learns objects. The prompt maps are
:func:`~openpixel_ros.inference.prompt_maps.render_prompt_maps` at stride 2 (the
stem's grid): positive and negative clicks/scribbles, the previous mask, the
box. The network runs once per click, on the frame or on a zoom-in window.
Sizes written H/2, H/4 round up.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import ConvNormAct, MobileNetV2
from .heads import SeparableBlock, upsample_to
from ..inference.prompt_maps import PROMPT_CHANNELS

CLICK_NETWORK_CHECKPOINT = "openpixel-click-network-checkpoint/1"
PROMPT_STRIDE = 2  # the prompt maps live on the stem's grid


@dataclass
class ClickNetworkConfig:
    """Architecture hyper-parameters (stored in checkpoints, so a checkpoint rebuilds its model)."""

    width: float = 0.5
    output_stride: int = 16
    prompt_channels: int = PROMPT_CHANNELS
    fusion_hidden: int = 16
    context_channels: int = 64
    s8_channels: int = 48
    s4_channels: int = 32

    @classmethod
    def from_dict(cls, data: dict) -> "ClickNetworkConfig":
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown click network options: {', '.join(sorted(unknown))}")
        return cls(**data)

    def to_dict(self) -> dict:
        return asdict(self)


class PromptFusion(nn.Module):
    """Prompt maps on the stem's grid -> an addition to the stem's output (zero at initialisation,
    so the pretrained backbone starts exactly as it was trained)."""

    def __init__(self, prompt_channels: int, hidden: int, out_channels: int):
        super().__init__()
        self.encode = ConvNormAct(prompt_channels, hidden, 3, activation="relu")
        self.project = nn.Conv2d(hidden, out_channels, 1)
        nn.init.zeros_(self.project.weight)
        nn.init.zeros_(self.project.bias)

    def forward(self, prompts: torch.Tensor) -> torch.Tensor:
        return self.project(self.encode(prompts))


class ObjectDecoder(nn.Module):
    """c2 (1/4), c3 (1/8), c5 (1/16) -> object mask logits at 1/4 and a predicted-IoU logit."""

    def __init__(self, in_channels: dict, context: int, s8: int, s4: int):
        super().__init__()
        c5 = in_channels["c5"]
        self.context_1x1 = ConvNormAct(c5, context, 1, activation="relu")
        self.context_dilated = nn.Sequential(
            ConvNormAct(c5, c5, 3, dilation=2, groups=c5, activation="relu"),
            ConvNormAct(c5, context, 1, activation="relu"))
        self.context_pool = nn.Conv2d(c5, context, 1)
        self.context_merge = ConvNormAct(2 * context, context, 1, activation="relu")
        self.lateral8 = ConvNormAct(in_channels["c3"], s8, 1, activation=None)
        self.reduce8 = ConvNormAct(context, s8, 1, activation=None)
        self.refine8 = SeparableBlock(s8, s8)
        self.lateral4 = ConvNormAct(in_channels["c2"], s4, 1, activation=None)
        self.reduce4 = ConvNormAct(s8, s4, 1, activation=None)
        self.refine4 = nn.Sequential(SeparableBlock(s4, s4), SeparableBlock(s4, s4))
        self.mask_out = nn.Conv2d(s4, 1, 1)
        self.score_out = nn.Sequential(nn.Linear(2 * context, 32), nn.ReLU(inplace=True), nn.Linear(32, 1))

    def forward(self, feats: dict):
        c5 = feats["c5"]
        ctx = self.context_merge(torch.cat([self.context_1x1(c5), self.context_dilated(c5)], dim=1))
        ctx = F.relu(ctx + self.context_pool(F.adaptive_avg_pool2d(c5, 1)))
        x8 = self.refine8(F.relu(self.lateral8(feats["c3"]) + upsample_to(self.reduce8(ctx), feats["c3"])))
        x4 = self.refine4(F.relu(self.lateral4(feats["c2"]) + upsample_to(self.reduce4(x8), feats["c2"])))
        mask_logits = self.mask_out(x4)
        # Score from the context pooled over the whole input and over the predicted object.
        weight = torch.sigmoid(F.interpolate(mask_logits, size=ctx.shape[-2:], mode="bilinear", align_corners=False))
        object_pool = (ctx * weight).sum(dim=(2, 3)) / (weight.sum(dim=(2, 3)) + 1e-6)
        score = self.score_out(torch.cat([ctx.mean(dim=(2, 3)), object_pool], dim=1))
        return mask_logits, score


class ClickNetwork(nn.Module):
    """``(image [B,3,H,W] in [-1, 1], prompts [B,P,ceil(H/2),ceil(W/2)]) -> (mask_logits, score)``."""

    def __init__(self, config: ClickNetworkConfig | None = None):
        super().__init__()
        self.config = config or ClickNetworkConfig()
        c = self.config
        self.backbone = MobileNetV2(width=c.width, output_stride=c.output_stride, norm=True)
        self.fusion = PromptFusion(c.prompt_channels, c.fusion_hidden, self.backbone.stem.out_channels)
        self.decoder = ObjectDecoder(self.backbone.feature_channels, c.context_channels, c.s8_channels,
                                     c.s4_channels)

    def forward(self, image: torch.Tensor, prompts: torch.Tensor):
        x = self.backbone.stem(image)
        if prompts.shape[-2:] != x.shape[-2:]:
            raise ValueError(f"prompt maps are {tuple(prompts.shape[-2:])}, the stem's grid {tuple(x.shape[-2:])}")
        return self.decoder(self.backbone.forward_blocks(x + self.fusion(prompts)))

    def load_pretrained_backbone(self, tflite_path) -> None:
        """Initialise the MobileNetV2 from Google's DeepLabV3-MobileNetV2 (PASCAL VOC) TFLite file."""
        from .tflite_weights import load_mobilenet_v2
        load_mobilenet_v2(self.backbone, tflite_path)


def load_click_network_checkpoint(path, map_location="cpu"):
    """``(model in eval mode, checkpoint dict)`` from a click-network training checkpoint."""
    checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CLICK_NETWORK_CHECKPOINT:
        raise ValueError(f"{path} is not an OpenPixel click-network checkpoint ({CLICK_NETWORK_CHECKPOINT})")
    model = ClickNetwork(ClickNetworkConfig.from_dict(checkpoint["model_config"]))
    model.load_state_dict(checkpoint["model"])
    model.eval()
    return model, checkpoint
