"""Load the weights of a TFLite DeepLabV3-MobileNetV2 into the PyTorch modules.

Tensors are matched by walking the TFLite graph along the data flow from its
input, in the order the PyTorch model computes, never by tensor names: each
step asks for "the CONV_2D that consumes this tensor" and checks the opcode,
weight shape, padding, fused activation and (optionally) stride and
dilation against the PyTorch layer before copying. At the end of a full
model load every operator must have been visited and every constant tensor
used exactly once.

Layouts: TFLite CONV_2D weights are ``[O, KH, KW, I]`` and DEPTHWISE_CONV_2D
weights ``[1, KH, KW, C]``; PyTorch wants ``[O, I, KH, KW]`` and ``[C, 1, KH, KW]``.
"""
from __future__ import annotations

import collections
import math

import numpy as np
import torch

from openpixel_ros.tflite import TFLiteModel, TFLiteOperator

from .backbone import ConvNormAct, MobileNetV2

_TFLITE_ACTIVATIONS = {"relu6": "RELU6", "relu": "RELU", None: "NONE"}


class WeightMappingError(ValueError):
    """The TFLite graph does not have the structure the PyTorch model expects."""


class TFLiteGraphWalker:
    """Follows a TFLite graph from tensor to consuming operator, recording what it used."""

    def __init__(self, model: TFLiteModel):
        self.model = model
        self._consumers = collections.defaultdict(list)
        for op in model.operators:
            for t in op.inputs:
                if t >= 0:
                    self._consumers[t].append(op)
        self.visited_ops: set = set()
        self.used_constants: collections.Counter = collections.Counter()

    def next_op(self, tensor: int, opcode: str) -> TFLiteOperator:
        """The one not yet visited ``opcode`` operator that reads ``tensor``; marks it visited."""
        candidates = [op for op in self._consumers[tensor] if op.opcode == opcode and op.index not in self.visited_ops]
        if len(candidates) != 1:
            name = self.model.tensors[tensor].name
            raise WeightMappingError(f"expected one {opcode} reading tensor {tensor} ({name!r}), "
                                     f"found {len(candidates)}")
        op = candidates[0]
        self.visited_ops.add(op.index)
        return op

    def take(self, tensor: int) -> np.ndarray:
        """The float32 value of constant ``tensor``, counted as used."""
        value = self.model.constant(tensor)
        if value is None:
            raise WeightMappingError(f"tensor {tensor} ({self.model.tensors[tensor].name!r}) is not a constant")
        self.used_constants[tensor] += 1
        return np.asarray(value, np.float32)

    def check_complete(self) -> None:
        """Every operator visited, every constant used exactly once; else WeightMappingError."""
        unvisited = [f"{op.index}:{op.opcode}" for op in self.model.operators if op.index not in self.visited_ops]
        if unvisited:
            raise WeightMappingError(f"operators not mapped: {', '.join(unvisited)}")
        constants = {t.index for t in self.model.tensors if self.model.tensor_data(t.index) is not None}
        unused = sorted(constants - set(self.used_constants))
        if unused:
            raise WeightMappingError(f"constant tensors not used: {unused}")
        repeated = sorted(t for t, n in self.used_constants.items() if n != 1)
        if repeated:
            raise WeightMappingError(f"constant tensors used more than once: {repeated}")

    def check_used_once(self) -> None:
        """Every constant taken so far was taken exactly once (for partial loads)."""
        repeated = sorted(t for t, n in self.used_constants.items() if n != 1)
        if repeated:
            raise WeightMappingError(f"constant tensors used more than once: {repeated}")


def load_conv(walker: TFLiteGraphWalker, layer: ConvNormAct, op: TFLiteOperator, check_geometry: bool = True) -> None:
    """Copy the weights of TFLite ``op`` into ``layer`` after checking that they correspond.

    With BatchNorm in ``layer``, the TFLite bias (a folded BatchNorm) goes into
    the BatchNorm's shift and the BatchNorm is set to the identity otherwise.
    """
    conv = layer.conv
    depthwise = conv.groups > 1
    if depthwise and not (conv.groups == conv.in_channels == conv.out_channels):
        raise WeightMappingError("only depthwise grouped convolutions are supported")
    expected = "DEPTHWISE_CONV_2D" if depthwise else "CONV_2D"
    if op.opcode != expected:
        raise WeightMappingError(f"operator {op.index} is {op.opcode}, the layer needs {expected}")
    opts = op.options
    if opts.get("padding") != "SAME" and conv.kernel_size != (1, 1):
        raise WeightMappingError(f"operator {op.index} pads {opts.get('padding')}, the layer pads SAME")
    act = _TFLITE_ACTIVATIONS[layer.activation_name]
    if opts.get("fused_activation_function") != act:
        raise WeightMappingError(f"operator {op.index} fuses {opts.get('fused_activation_function')}, "
                                 f"the layer applies {act}")
    if depthwise and opts.get("depth_multiplier", 1) != 1:
        raise WeightMappingError(f"operator {op.index} has depth multiplier {opts['depth_multiplier']}")
    if check_geometry:
        geometry = ((opts["stride_h"], opts["stride_w"]), (opts["dilation_h_factor"], opts["dilation_w_factor"]))
        if geometry != (conv.stride, conv.dilation):
            raise WeightMappingError(f"operator {op.index} has stride/dilation {geometry}, "
                                     f"the layer {(conv.stride, conv.dilation)}")
    weight = walker.take(op.inputs[1])
    weight = weight.transpose(3, 0, 1, 2) if depthwise else weight.transpose(0, 3, 1, 2)
    if tuple(weight.shape) != tuple(conv.weight.shape):
        raise WeightMappingError(f"operator {op.index} weight {list(weight.shape)} (as OIHW) does not fit "
                                 f"the layer's {list(conv.weight.shape)}")
    bias = walker.take(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else \
        np.zeros(conv.out_channels, np.float32)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(weight)))
        if layer.norm is None:
            conv.bias.copy_(torch.from_numpy(bias))
        else:
            bn = layer.norm
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0)
            bn.weight.fill_(math.sqrt(1.0 + bn.eps))  # cancels eps: (x - 0) / sqrt(1 + eps) * w = x
            bn.bias.copy_(torch.from_numpy(bias))


def walk_mobilenet_v2(walker: TFLiteGraphWalker, backbone: MobileNetV2, check_geometry: bool = True) -> int:
    """Load ``backbone`` from the graph, starting at the model input. Returns the tensor after the last block."""
    model = walker.model
    if len(model.inputs) != 1:
        raise WeightMappingError(f"expected one model input, found {len(model.inputs)}")
    tensor = model.inputs[0]
    op = walker.next_op(tensor, "CONV_2D")
    load_conv(walker, backbone.stem, op, check_geometry)
    tensor = op.outputs[0]
    for block in backbone.blocks:
        block_input = tensor
        for layer, opcode in ((block.expand, "CONV_2D"), (block.depthwise, "DEPTHWISE_CONV_2D"),
                              (block.project, "CONV_2D")):
            if layer is None:
                continue
            op = walker.next_op(tensor, opcode)
            load_conv(walker, layer, op, check_geometry)
            tensor = op.outputs[0]
        if block.use_shortcut:
            add = walker.next_op(tensor, "ADD")
            if sorted(add.inputs) != sorted((tensor, block_input)):
                raise WeightMappingError(f"ADD {add.index} does not join the block's input and output")
            if add.options.get("fused_activation_function", "NONE") != "NONE":
                raise WeightMappingError(f"ADD {add.index} fuses an activation")
            tensor = add.outputs[0]
    return tensor


def load_mobilenet_v2(backbone: MobileNetV2, tflite_path) -> None:
    """Initialise ``backbone`` from the MobileNetV2 part of a DeepLab TFLite file.

    Strides and dilations are not compared, so a backbone with another output
    stride (same weights, different geometry) loads too. The DeepLab head's
    operators are left unvisited.
    """
    walker = TFLiteGraphWalker(TFLiteModel.load(tflite_path))
    walk_mobilenet_v2(walker, backbone, check_geometry=False)
    walker.check_used_once()
