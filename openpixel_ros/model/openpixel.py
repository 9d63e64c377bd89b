"""OpenPixel: one MobileNetV2 encoder, a cross-scale-attention pyramid, a semantic head and a click decoder.

::

    image [B,3,H,W] (x = rgb/255*2 - 1) ----> MobileNetV2 (0.5, DeepLab weights) -> c2..c5
    conditioning [B,K] -> FiLM MLP --------/ (stem)     | laterals (FiLM'd) + top-down
                                                        | p3 += CrossScaleAttention(p3 -> p5)
                                                        v
                            features_s4 [B,48,H/4,W/4], features_s8 [B,64,H/8,W/8]
                                  |                          |
                        SemanticHead -> logits      PromptDecoder(+ prompts [B,4,H/4,W/4])
                        [B,C,H/4,W/4]               -> mask_logits [B,1,H/4,W/4], score [B,1]

The encoder runs once per frame; the decoder once per click. Exported as two
ONNX graphs (:mod:`openpixel_ros.export.onnx_export`). Sizes written H/4 round up.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import ConvNormAct, MobileNetV2
from .cross_scale_attention import CrossScaleAttention
from ..model_contract import CONDITIONING_SIZE
from .film import FiLMGenerator
from .heads import PromptDecoder, SemanticHead, SeparableBlock, upsample_to
from ..inference.prompt_maps import PROMPT_CHANNELS

CHECKPOINT_FORMAT = "openpixel-checkpoint/1"


@dataclass
class OpenPixelConfig:
    """Architecture hyper-parameters (stored in checkpoints, so a checkpoint rebuilds its model)."""

    num_classes: int = 21
    width: float = 0.5
    output_stride: int = 32
    s4_channels: int = 48
    pyramid_channels: int = 64
    attention_dim: int = 64
    attention_heads: int = 4
    conditioning_size: int = CONDITIONING_SIZE  # 0: no conditioning input, no FiLM
    film_hidden: int = 32
    prompt_channels: int = PROMPT_CHANNELS
    prompt_hidden: int = 16
    decoder_dilations: tuple = (2, 4, 8)

    @classmethod
    def from_dict(cls, data: dict) -> "OpenPixelConfig":
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model options: {', '.join(sorted(unknown))}")
        return cls(**data)

    def to_dict(self) -> dict:
        return asdict(self)


class CrossScalePyramid(nn.Module):
    """Top-down feature pyramid over c2..c5 with cross-scale attention from 1/8 to c5 (1/32; 1/16 at output stride 16).

    Each lateral 1x1 conv is normalised and FiLM-modulated (names ``p2``..``p5``).
    ``p5`` also gets image-level context (global average pool), like DeepLab's ASPP.
    Returns ``(p2, p3)``: 1/4 and 1/8 features.
    """

    def __init__(self, in_channels: dict, s4_channels: int, channels: int, attention_dim: int, heads: int):
        super().__init__()
        self.lateral = nn.ModuleDict({
            "p5": ConvNormAct(in_channels["c5"], channels, 1, activation="relu"),
            "p4": ConvNormAct(in_channels["c4"], channels, 1, activation="relu"),
            "p3": ConvNormAct(in_channels["c3"], channels, 1, activation="relu"),
            "p2": ConvNormAct(in_channels["c2"], s4_channels, 1, activation="relu"),
        })
        self.image_pool = nn.Conv2d(in_channels["c5"], channels, 1)
        self.smooth4 = SeparableBlock(channels, channels)
        self.attention = CrossScaleAttention(channels, channels, dim=attention_dim, heads=heads)
        self.smooth3 = SeparableBlock(channels, channels)
        self.reduce3 = ConvNormAct(channels, s4_channels, 1, activation=None)
        self.smooth2 = SeparableBlock(s4_channels, s4_channels)

    @property
    def film_channels(self) -> dict:
        return {name: layer.out_channels for name, layer in self.lateral.items()}

    def forward(self, feats: dict, film: Optional[dict] = None):
        film = film or {}
        p5 = self.lateral["p5"](feats["c5"], film.get("p5"))
        p5 = p5 + self.image_pool(F.adaptive_avg_pool2d(feats["c5"], 1))
        p4 = self.smooth4(self.lateral["p4"](feats["c4"], film.get("p4")) + upsample_to(p5, feats["c4"]))
        p3 = self.lateral["p3"](feats["c3"], film.get("p3")) + upsample_to(p4, feats["c3"])
        p3 = self.smooth3(self.attention(p3, p5))
        p2 = self.lateral["p2"](feats["c2"], film.get("p2")) + upsample_to(self.reduce3(p3), feats["c2"])
        return self.smooth2(p2), p3


class OpenPixel(nn.Module):
    """The OpenPixel network. Use :meth:`encode` per frame and :meth:`decode` per click.

    Inputs are normalised images ``x = rgb / 255 * 2 - 1`` (the DeepLab
    convention, so the pretrained backbone sees what it was trained on).
    """

    def __init__(self, config: Optional[OpenPixelConfig] = None):
        super().__init__()
        self.config = config or OpenPixelConfig()
        c = self.config
        self.backbone = MobileNetV2(width=c.width, output_stride=c.output_stride, norm=True)
        self.pyramid = CrossScalePyramid(self.backbone.feature_channels, c.s4_channels, c.pyramid_channels,
                                         c.attention_dim, c.attention_heads)
        self.semantic_head = SemanticHead(c.s4_channels, c.num_classes)
        self.decoder = PromptDecoder(c.s4_channels, c.pyramid_channels, c.prompt_channels, c.prompt_hidden,
                                     tuple(c.decoder_dilations))
        if c.conditioning_size > 0:
            film_channels = {"stem": self.backbone.stem.out_channels, **self.pyramid.film_channels}
            self.film = FiLMGenerator(c.conditioning_size, film_channels, c.film_hidden)
        else:
            self.film = None

    def encode(self, image: torch.Tensor, conditioning: Optional[torch.Tensor] = None):
        """Per frame: ``(features_s4, features_s8, semantic_logits)``."""
        film = None
        if self.film is not None:
            if conditioning is None:
                conditioning = image.new_zeros(image.shape[0], self.config.conditioning_size)
            film = self.film(conditioning)
        feats = self.backbone(image, stem_modulation=film["stem"] if film else None)
        features_s4, features_s8 = self.pyramid(feats, film)
        return features_s4, features_s8, self.semantic_head(features_s4)

    def decode(self, features_s4: torch.Tensor, features_s8: torch.Tensor, prompts: torch.Tensor):
        """Per click: ``(mask_logits [B,1,H/4,W/4], score [B,1])``."""
        return self.decoder(features_s4, features_s8, prompts)

    def forward(self, image: torch.Tensor, prompts: Optional[torch.Tensor] = None,
                conditioning: Optional[torch.Tensor] = None) -> dict:
        """Training pass: semantic logits, and mask logits and score when ``prompts`` are given."""
        features_s4, features_s8, logits = self.encode(image, conditioning)
        out = {"semantic_logits": logits}
        if prompts is not None:
            out["mask_logits"], out["score"] = self.decode(features_s4, features_s8, prompts)
        return out

    def load_pretrained_backbone(self, tflite_path) -> None:
        """Initialise the MobileNetV2 from Google's DeepLabV3-MobileNetV2 TFLite file."""
        from .tflite_weights import load_mobilenet_v2
        load_mobilenet_v2(self.backbone, tflite_path)


class EncoderGraph(nn.Module):
    """The per-frame graph for export: ``image [, conditioning] -> logits, features_s4, features_s8``.

    Logits come first: they are the semantic output the node reads.
    """

    def __init__(self, model: OpenPixel):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor, conditioning: Optional[torch.Tensor] = None):
        features_s4, features_s8, logits = self.model.encode(image, conditioning)
        return logits, features_s4, features_s8


class DecoderGraph(nn.Module):
    """The per-click graph for export: ``features_s4, features_s8, prompts -> mask_logits, score``."""

    def __init__(self, model: OpenPixel):
        super().__init__()
        self.model = model

    def forward(self, features_s4: torch.Tensor, features_s8: torch.Tensor, prompts: torch.Tensor):
        return self.model.decode(features_s4, features_s8, prompts)


@dataclass
class ModelInfo:
    """What a checkpoint says about its model beyond the weights (labels, colours, input size)."""

    classes: list = field(default_factory=list)
    colors: list = field(default_factory=list)
    input_height: int = 360
    input_width: int = 480
    foreground_classes: list = field(default_factory=list)  # the ~/mask classes when none are configured


def load_checkpoint_model(path, map_location="cpu"):
    """``(model in eval mode, ModelInfo, checkpoint dict)`` from a training checkpoint.

    Checkpoints are written by :mod:`openpixel_ros.training.train`; loading
    uses ``weights_only=True`` (tensors and plain containers only).
    """
    checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not an OpenPixel checkpoint (format {CHECKPOINT_FORMAT})")
    model = OpenPixel(OpenPixelConfig.from_dict(checkpoint["model_config"]))
    model.load_state_dict(checkpoint["model"])
    model.eval()
    info = ModelInfo(**checkpoint.get("model_info", {}))
    return model, info, checkpoint
