"""A faithful PyTorch port of Google's DeepLabV3-MobileNetV2 (PASCAL VOC, 21 classes) from its TFLite file.

Graph of ``deeplabv3_257_mv_gpu.tflite`` (input 1x257x257x3 in [-1, 1],
output 1x257x257x21 logits), reproduced layer by layer:

* MobileNetV2, depth multiplier 0.5, output stride 8 (dilations 2 and 4),
  BatchNorms folded into biased convolutions, TensorFlow SAME padding;
* a light ASPP: global average pool -> 1x1 conv (256, ReLU), broadcast back
  (a bilinear align_corners resize of the 1x1 map, as in the graph),
  concatenated before a 1x1 conv (256, ReLU) of the features,
  then a 1x1 projection (256, ReLU) and the 1x1 classifier;
* bilinear upsampling of the logits to the input size with
  ``align_corners=True`` (the graph's identity 33->33 resize is skipped).

``python -m openpixel_ros.export.deeplab --tflite PATH [--onnx OUT.onnx]``
writes the port as an ONNX reference model with its openpixel metadata
(:mod:`openpixel_ros.export.deeplab`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from openpixel_ros.model_contract import InputSpec, ModelContract, OutputSpec, default_colors
from openpixel_ros.tflite import TFLiteModel

from .backbone import ConvNormAct, MobileNetV2
from .tflite_weights import TFLiteGraphWalker, WeightMappingError, load_conv, walk_mobilenet_v2

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
DEFAULT_ONNX_NAME = "deeplabv3_mnv2_voc.onnx"
INPUT_SIZE = 257


class DeepLabV3MobileNetV2(nn.Module):
    """DeepLabV3 with a MobileNetV2 (0.5) backbone: ``x`` in [-1, 1], NCHW -> logits [B, C, H, W]."""

    def __init__(self, num_classes: int = 21, width: float = 0.5, output_stride: int = 8, aspp_channels: int = 256):
        super().__init__()
        self.backbone = MobileNetV2(width=width, output_stride=output_stride, norm=False)
        c5 = self.backbone.feature_channels["c5"]
        self.image_pool_conv = ConvNormAct(c5, aspp_channels, 1, activation="relu", norm=False)
        self.aspp_conv = ConvNormAct(c5, aspp_channels, 1, activation="relu", norm=False)
        self.project = ConvNormAct(2 * aspp_channels, aspp_channels, 1, activation="relu", norm=False)
        self.classifier = ConvNormAct(aspp_channels, num_classes, 1, activation=None, norm=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)["c5"]
        pooled = self.image_pool_conv(F.adaptive_avg_pool2d(features, 1))
        pooled = F.interpolate(pooled, size=features.shape[-2:], mode="bilinear", align_corners=True)
        y = self.project(torch.cat([pooled, self.aspp_conv(features)], dim=1))
        logits = self.classifier(y)
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=True)


def _check_resize(op) -> None:
    if not op.options.get("align_corners") or op.options.get("half_pixel_centers"):
        raise WeightMappingError(f"RESIZE_BILINEAR {op.index} is not align_corners, the port assumes it is")


def deeplab_from_tflite(tflite_path) -> DeepLabV3MobileNetV2:
    """The port with every weight of the TFLite file loaded (eval mode).

    Raises WeightMappingError when the graph differs from the expected
    structure, or when an operator or constant is left unmapped.
    """
    tflite = TFLiteModel.load(tflite_path)
    walker = TFLiteGraphWalker(tflite)
    features_tensor = tflite.tensors[tflite.outputs[0]]
    model = DeepLabV3MobileNetV2(num_classes=features_tensor.shape[-1])
    features = walk_mobilenet_v2(walker, model.backbone, check_geometry=True)

    pool = walker.next_op(features, "AVERAGE_POOL_2D")
    feature_hw = tflite.tensors[features].shape[1:3]
    if pool.options.get("padding") != "VALID" or \
            (pool.options["filter_height"], pool.options["filter_width"]) != tuple(feature_hw):
        raise WeightMappingError(f"AVERAGE_POOL_2D {pool.index} is not a global average pool")
    op = walker.next_op(pool.outputs[0], "CONV_2D")
    load_conv(walker, model.image_pool_conv, op)
    resize = walker.next_op(op.outputs[0], "RESIZE_BILINEAR")
    _check_resize(resize)
    walker.take(resize.inputs[1])  # the target size: the features' size, which the broadcast uses
    op = walker.next_op(features, "CONV_2D")
    load_conv(walker, model.aspp_conv, op)
    concat = walker.next_op(resize.outputs[0], "CONCATENATION")
    if concat.inputs != [resize.outputs[0], op.outputs[0]] or concat.options.get("axis") not in (3, -1):
        raise WeightMappingError(f"CONCATENATION {concat.index} does not join (pool, conv) on channels")
    op = walker.next_op(concat.outputs[0], "CONV_2D")
    load_conv(walker, model.project, op)
    op = walker.next_op(op.outputs[0], "CONV_2D")
    load_conv(walker, model.classifier, op)
    tensor = op.outputs[0]
    while tensor != tflite.outputs[0]:
        resize = walker.next_op(tensor, "RESIZE_BILINEAR")
        _check_resize(resize)
        walker.take(resize.inputs[1])
        tensor = resize.outputs[0]
    walker.check_complete()
    return model.eval()


def deeplab_contract(height: int = INPUT_SIZE, width: int = INPUT_SIZE, input_name: str = "image",
                     output_name: str = "logits") -> ModelContract:
    """Metadata of the exported port: RGB, x = (p / 255 - 0.5) / 0.5, VOC classes and palette."""
    return ModelContract(
        input=InputSpec(name=input_name, layout="NCHW", height=height, width=width, color_order="rgb",
                        scale=1.0 / 255.0, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), resize="stretch"),
        output=OutputSpec(name=output_name, kind="logits"),
        classes=VOC_CLASSES, colors=tuple(default_colors(len(VOC_CLASSES))),
        extra={"source": "Google DeepLabV3-MobileNetV2 PASCAL VOC (deeplabv3_257_mv_gpu.tflite), "
                         "ported with openpixel_ros.model.deeplab; reference model, not for redistribution"})
