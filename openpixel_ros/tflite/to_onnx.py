"""Convert a TFLite model to ONNX, NCHW throughout.

TFLite activations are NHWC. Here every 4-D activation is NCHW inside the
ONNX graph: weights are transposed once at conversion time and axis
attributes are remapped, so the graph holds no Transpose except, with
``nchw=False``, one at the input and one per output. ONNX Runtime and
TensorRT both run NCHW convolutions natively.

Only the operators of the MediaPipe selfie segmenters and DeepLab v3
MobileNetV2 are supported (see docs/tflite_converter.md); anything else raises
NotImplementedError naming the opcode. The ONNX operators used (Conv,
ConvTranspose, Add, Mul, Relu, Clip, Tanh, HardSwish, Sigmoid, AveragePool,
GlobalAveragePool, Resize, Concat, Cast, Transpose, Identity) are all in
TensorRT's ONNX parser.
"""
from __future__ import annotations

import struct
from pathlib import Path
from typing import Optional

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from openpixel_ros.tflite.reader import TFLiteModel, TFLiteOperator

MIN_OPSET = 14  # HardSwish; Resize with optional roi/scales inputs needs 13
NHWC_TO_NCHW = (0, 3, 1, 2)
NCHW_TO_NHWC = (0, 2, 3, 1)


def same_pads(in_size: int, out_size: int, kernel: int, stride: int, dilation: int = 1) -> tuple:
    """TFLite/TensorFlow 'SAME' padding of one spatial axis: (before, after).

    The total is whatever makes the strided window reach ``out_size``
    positions; the odd pixel goes after, as in TensorFlow.
    """
    effective_kernel = (kernel - 1) * dilation + 1
    total = max((out_size - 1) * stride + effective_kernel - in_size, 0)
    return total // 2, total - total // 2


def _nchw_shape(shape) -> list:
    shape = list(shape)
    return [shape[i] for i in NHWC_TO_NCHW] if len(shape) == 4 else shape


class _Converter:
    """Walks the TFLite operators in order and emits ONNX nodes."""

    def __init__(self, model: TFLiteModel, nchw: bool):
        self.model = model
        self.nchw = nchw
        self.nodes: list = []
        self.initializers: list = []
        self._initializer_names: dict = {}  # key -> ONNX name, so shared weights stay shared
        # Values known at conversion time (NHWC semantics), e.g. dequantized weights.
        self.folded: dict = {}
        self.names = self._unique_names()
        self._used_names = set(self.names.values())

    def _unique_names(self) -> dict:
        names, seen = {}, set()
        for tensor in self.model.tensors:
            name = tensor.name or f"tensor_{tensor.index}"
            if name in seen:
                name = f"{name}_{tensor.index}"
            seen.add(name)
            names[tensor.index] = name
        return names

    # ---- helpers --------------------------------------------------------

    def shape(self, index: int) -> tuple:
        return self.model.tensors[index].shape

    def value(self, index: int) -> Optional[np.ndarray]:
        """The constant value of a tensor (NHWC semantics), or None for activations."""
        if index in self.folded:
            return self.folded[index]
        return self.model.constant(index)

    def fresh(self, base: str) -> str:
        """``base``, or ``base_<n>`` if a tensor already has that name."""
        name, n = base, 0
        while name in self._used_names:
            n += 1
            name = f"{base}_{n}"
        self._used_names.add(name)
        return name

    def initializer(self, key: str, array: np.ndarray) -> str:
        """The ONNX name of a constant; ``key`` names it and makes repeated requests share it."""
        if key not in self._initializer_names:
            name = self._initializer_names[key] = self.fresh(key)
            self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return self._initializer_names[key]

    def node(self, op_type: str, inputs: list, outputs: list, name: str, **attrs) -> None:
        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=name, **attrs))

    def activation_input(self, index: int, op: TFLiteOperator) -> str:
        """The ONNX name of a non-constant input; rejects constants where a handler
        expects an activation."""
        if self.value(index) is not None:
            raise NotImplementedError(
                f"{op.opcode} (operator {op.index}) with a constant data input is not supported")
        return self.names[index]

    def operand(self, index: int, like_rank: int) -> str:
        """An elementwise operand: activations by name; constants as NCHW initializers,
        broadcast-aligned the way NHWC broadcasting aligned them."""
        value = self.value(index)
        if value is None:
            return self.names[index]
        value = value.astype(np.float32) if value.dtype.kind == "f" else value
        if like_rank == 4 and value.ndim <= 4:
            value = value.reshape((1,) * (4 - value.ndim) + value.shape).transpose(NHWC_TO_NCHW)
        return self.initializer(f"{self.names[index]}_nchw", value)

    def emit_activation(self, function: str, source: str, target: str, name: str) -> None:
        """Append TFLite's activation ``function`` from ``source`` into ``target``."""
        if function == "RELU":
            self.node("Relu", [source], [target], name)
        elif function in ("RELU6", "RELU_N1_TO_1"):
            low, high = (0.0, 6.0) if function == "RELU6" else (-1.0, 1.0)
            self.node("Clip", [source, self.initializer(f"clip_min_{low:g}", np.float32(low)),
                               self.initializer(f"clip_max_{high:g}", np.float32(high))],
                      [target], name)
        else:
            # TFLite's float kernels clamp for the three above and silently ignore the rest
            # (TANH, SIGN_BIT), so there is no one meaning to reproduce.
            raise NotImplementedError(f"fused activation {function} is not supported")

    def emit_with_activation(self, op: TFLiteOperator, op_type: str, inputs: list, **attrs) -> None:
        """Emit ``op_type`` writing op's output, followed by its fused activation if any."""
        target = self.names[op.outputs[0]]
        function = op.options.get("fused_activation_function", "NONE")
        if function == "NONE":
            self.node(op_type, inputs, [target], f"{op.opcode}_{op.index}", **attrs)
            return
        raw = self.fresh(f"{target}_{op_type.lower()}")
        self.node(op_type, inputs, [raw], f"{op.opcode}_{op.index}", **attrs)
        self.emit_activation(function, raw, target, f"{op.opcode}_{op.index}_{function.lower()}")

    def weights(self, op: TFLiteOperator, position: int) -> np.ndarray:
        index = op.inputs[position]
        value = self.value(index) if index >= 0 else None
        if value is None:
            raise NotImplementedError(
                f"{op.opcode} (operator {op.index}) needs constant weights in input {position}")
        return value.astype(np.float32)

    def bias(self, op: TFLiteOperator, position: int = 2) -> list:
        """[name] of the bias initializer, or [] when the op has none."""
        if len(op.inputs) <= position or op.inputs[position] < 0:
            return []
        bias = self.weights(op, position)
        return [self.initializer(f"{self.names[op.inputs[position]]}_bias", bias.reshape(-1))]

    def spatial_pads(self, op: TFLiteOperator, kernel_hw, stride_hw, dilation_hw=(1, 1)) -> list:
        """ONNX pads [top, left, bottom, right] for op's padding option."""
        if op.options["padding"] == "VALID":
            return [0, 0, 0, 0]
        _, in_h, in_w, _ = self.shape(op.inputs[0])
        _, out_h, out_w, _ = self.shape(op.outputs[0])
        top, bottom = same_pads(in_h, out_h, kernel_hw[0], stride_hw[0], dilation_hw[0])
        left, right = same_pads(in_w, out_w, kernel_hw[1], stride_hw[1], dilation_hw[1])
        return [top, left, bottom, right]

    def require_rank4(self, op: TFLiteOperator) -> None:
        for index in [op.inputs[0], op.outputs[0]]:
            if len(self.shape(index)) != 4:
                raise NotImplementedError(
                    f"{op.opcode} (operator {op.index}) on a rank-{len(self.shape(index))} "
                    "tensor is not supported")

    # ---- operators ------------------------------------------------------

    def convert_conv_2d(self, op: TFLiteOperator) -> None:
        self.require_rank4(op)
        weight = self.weights(op, 1)  # [O, KH, KW, I]
        groups, remainder = divmod(self.shape(op.inputs[0])[3], weight.shape[3])
        if remainder or weight.shape[0] % groups:
            raise ValueError(f"CONV_2D (operator {op.index}): weight {list(weight.shape)} does "
                             f"not fit input {list(self.shape(op.inputs[0]))}")
        stride = (op.options["stride_h"], op.options["stride_w"])
        dilation = (op.options["dilation_h_factor"], op.options["dilation_w_factor"])
        w = self.initializer(f"{self.names[op.inputs[1]]}_oihw", weight.transpose(0, 3, 1, 2))
        self.emit_with_activation(
            op, "Conv", [self.activation_input(op.inputs[0], op), w] + self.bias(op),
            kernel_shape=list(weight.shape[1:3]), strides=list(stride), dilations=list(dilation),
            pads=self.spatial_pads(op, weight.shape[1:3], stride, dilation), group=groups)

    def convert_depthwise_conv_2d(self, op: TFLiteOperator) -> None:
        self.require_rank4(op)
        weight = self.weights(op, 1)  # [1, KH, KW, C * multiplier]
        channels = self.shape(op.inputs[0])[3]
        stride = (op.options["stride_h"], op.options["stride_w"])
        dilation = (op.options["dilation_h_factor"], op.options["dilation_w_factor"])
        # Output channel c * multiplier + m reads input channel c: ONNX grouped-conv order.
        w = self.initializer(f"{self.names[op.inputs[1]]}_oihw", weight.transpose(3, 0, 1, 2))
        self.emit_with_activation(
            op, "Conv", [self.activation_input(op.inputs[0], op), w] + self.bias(op),
            kernel_shape=list(weight.shape[1:3]), strides=list(stride), dilations=list(dilation),
            pads=self.spatial_pads(op, weight.shape[1:3], stride, dilation), group=channels)

    def convert_transpose_conv_bias(self, op: TFLiteOperator) -> None:
        """MediaPipe's Convolution2DTransposeBias: inputs (x, weight [O,KH,KW,I], bias [O]).

        Its custom options are the leading int32 fields of TfLiteTransposeConvParams /
        TfLitePoolParams: padding (1 SAME, 2 VALID), stride_width, stride_height.
        """
        self.require_rank4(op)
        if len(op.custom_options) < 12:
            raise NotImplementedError(
                f"{op.opcode} (operator {op.index}) has {len(op.custom_options)} bytes of "
                "custom options, expected at least 12")
        padding, stride_w, stride_h = struct.unpack_from("<3i", op.custom_options)
        if padding not in (1, 2):
            raise NotImplementedError(f"{op.opcode} (operator {op.index}) padding code {padding}")
        weight = self.weights(op, 1)
        _, in_h, in_w, _ = self.shape(op.inputs[0])
        _, out_h, out_w, _ = self.shape(op.outputs[0])
        pads, output_padding = [0, 0, 0, 0], [0, 0]
        axes = [(in_h, out_h, weight.shape[1], stride_h), (in_w, out_w, weight.shape[2], stride_w)]
        for axis, (size_in, size_out, kernel, stride) in enumerate(axes):
            # Full transposed-conv extent minus the output size is what SAME crops;
            # the odd pixel is cropped at the end, as TFLite's padding offset does.
            total = (size_in - 1) * stride + kernel - size_out
            if total >= 0:
                pads[axis], pads[axis + 2] = total // 2, total - total // 2
            else:
                output_padding[axis] = -total
        w = self.initializer(f"{self.names[op.inputs[1]]}_iohw", weight.transpose(3, 0, 1, 2))
        attrs = dict(kernel_shape=list(weight.shape[1:3]), strides=[stride_h, stride_w], pads=pads)
        if any(output_padding):
            attrs["output_padding"] = output_padding
        self.node("ConvTranspose", [self.activation_input(op.inputs[0], op), w] + self.bias(op),
                  [self.names[op.outputs[0]]], f"{op.opcode}_{op.index}", **attrs)

    def convert_elementwise(self, op: TFLiteOperator, op_type: str, numpy_fn) -> None:
        a, b = op.inputs[:2]
        values = [self.value(a), self.value(b)]
        if all(v is not None for v in values):
            if op.options.get("fused_activation_function", "NONE") != "NONE":
                raise NotImplementedError(f"{op.opcode} of constants with a fused activation")
            self.folded[op.outputs[0]] = numpy_fn(*values)
            return
        ranks = {len(self.shape(i)) for i, v in zip((a, b), values) if v is None}
        if len(ranks) != 1:
            raise NotImplementedError(
                f"{op.opcode} (operator {op.index}) between activations of ranks {sorted(ranks)}")
        rank = ranks.pop()
        self.emit_with_activation(op, op_type, [self.operand(a, rank), self.operand(b, rank)])

    def convert_add(self, op: TFLiteOperator) -> None:
        self.convert_elementwise(op, "Add", np.add)

    def convert_mul(self, op: TFLiteOperator) -> None:
        self.convert_elementwise(op, "Mul", np.multiply)

    def convert_average_pool_2d(self, op: TFLiteOperator) -> None:
        self.require_rank4(op)
        x = self.activation_input(op.inputs[0], op)
        _, in_h, in_w, _ = self.shape(op.inputs[0])
        kernel = (op.options["filter_height"], op.options["filter_width"])
        stride = (op.options["stride_h"], op.options["stride_w"])
        if op.options["padding"] == "VALID" and kernel == (in_h, in_w):
            self.emit_with_activation(op, "GlobalAveragePool", [x])
            return
        # count_include_pad=0: TFLite averages only the pixels inside the image.
        self.emit_with_activation(op, "AveragePool", [x], kernel_shape=list(kernel),
                                  strides=list(stride), pads=self.spatial_pads(op, kernel, stride),
                                  count_include_pad=0)

    def convert_mean(self, op: TFLiteOperator) -> None:
        self.require_rank4(op)
        axes = self.value(op.inputs[1])
        if axes is None:
            raise NotImplementedError(f"MEAN (operator {op.index}) with non-constant axes")
        axes = sorted({int(a) % 4 for a in np.atleast_1d(axes)})
        if axes != [1, 2] or not op.options.get("keep_dims", False):
            raise NotImplementedError(
                f"MEAN (operator {op.index}) over NHWC axes {axes} with keep_dims="
                f"{op.options.get('keep_dims')}; only the spatial mean with keep_dims is supported")
        self.node("GlobalAveragePool", [self.activation_input(op.inputs[0], op)],
                  [self.names[op.outputs[0]]], f"MEAN_{op.index}")

    def convert_resize_bilinear(self, op: TFLiteOperator) -> None:
        self.require_rank4(op)
        x = self.activation_input(op.inputs[0], op)
        n, in_h, in_w, c = self.shape(op.inputs[0])
        size = self.value(op.inputs[1])
        if size is None:
            raise NotImplementedError(f"RESIZE_BILINEAR (operator {op.index}) with a dynamic size")
        out_h, out_w = (int(v) for v in size.reshape(-1))
        if (out_h, out_w) == (in_h, in_w):  # every coordinate mode maps a pixel onto itself
            self.node("Identity", [x], [self.names[op.outputs[0]]], f"RESIZE_BILINEAR_{op.index}")
            return
        if op.options.get("align_corners"):
            mode = "align_corners"
        elif op.options.get("half_pixel_centers"):
            mode = "half_pixel"
        else:
            mode = "asymmetric"
        sizes = self.initializer(f"{self.names[op.outputs[0]]}_sizes",
                                 np.array([n, c, out_h, out_w], dtype=np.int64))
        self.node("Resize", [x, "", "", sizes], [self.names[op.outputs[0]]],
                  f"RESIZE_BILINEAR_{op.index}", mode="linear",
                  coordinate_transformation_mode=mode)

    def convert_concatenation(self, op: TFLiteOperator) -> None:
        rank = len(self.shape(op.outputs[0]))
        axis = op.options["axis"] % rank
        if rank == 4:
            axis = NHWC_TO_NCHW.index(axis)
        inputs = [self.operand(i, rank) for i in op.inputs]
        self.emit_with_activation(op, "Concat", inputs, axis=axis)

    def convert_dequantize(self, op: TFLiteOperator) -> None:
        value = self.value(op.inputs[0])
        if value is not None:
            dequantized = self.model.constant(op.outputs[0])
            self.folded[op.outputs[0]] = (value.astype(np.float32) if dequantized is None
                                          else dequantized)
            return
        if self.model.tensors[op.inputs[0]].type_name != "FLOAT16":
            raise NotImplementedError(
                f"DEQUANTIZE (operator {op.index}) of a quantized activation is not supported")
        self.node("Cast", [self.names[op.inputs[0]]], [self.names[op.outputs[0]]],
                  f"DEQUANTIZE_{op.index}", to=TensorProto.FLOAT)

    def convert_unary(self, op: TFLiteOperator) -> None:
        x = self.activation_input(op.inputs[0], op)
        target = self.names[op.outputs[0]]
        name = f"{op.opcode}_{op.index}"
        if op.opcode == "HARD_SWISH":
            self.node("HardSwish", [x], [target], name)
        elif op.opcode == "LOGISTIC":
            self.node("Sigmoid", [x], [target], name)
        elif op.opcode == "TANH":
            self.node("Tanh", [x], [target], name)
        else:  # RELU, RELU6, RELU_N1_TO_1 share the fused-activation lowering
            self.emit_activation(op.opcode, x, target, name)

    HANDLERS = {
        "CONV_2D": convert_conv_2d,
        "DEPTHWISE_CONV_2D": convert_depthwise_conv_2d,
        "Convolution2DTransposeBias": convert_transpose_conv_bias,
        "ADD": convert_add,
        "MUL": convert_mul,
        "AVERAGE_POOL_2D": convert_average_pool_2d,
        "MEAN": convert_mean,
        "RESIZE_BILINEAR": convert_resize_bilinear,
        "CONCATENATION": convert_concatenation,
        "DEQUANTIZE": convert_dequantize,
        "HARD_SWISH": convert_unary,
        "LOGISTIC": convert_unary,
        "RELU": convert_unary,
        "RELU6": convert_unary,
        "RELU_N1_TO_1": convert_unary,
        "TANH": convert_unary,
    }

    # ---- graph ----------------------------------------------------------

    def graph_io(self, index: int) -> tuple:
        """(ONNX value info, internal NCHW name) of a graph input or output."""
        tensor = self.model.tensors[index]
        if tensor.type_name != "FLOAT32":
            raise NotImplementedError(
                f"graph input/output {tensor.name!r} is {tensor.type_name}; "
                "only FLOAT32 is supported")
        rank4 = len(tensor.shape) == 4
        shape = _nchw_shape(tensor.shape) if self.nchw or not rank4 else list(tensor.shape)
        info = helper.make_tensor_value_info(self.names[index], TensorProto.FLOAT, shape)
        internal = self.names[index] if self.nchw or not rank4 else self.fresh(f"{info.name}_nchw")
        return info, internal

    def build(self) -> onnx.GraphProto:
        model = self.model
        graph_inputs, graph_outputs = [], []
        for index in model.inputs:
            info, internal = self.graph_io(index)
            graph_inputs.append(info)
            if internal != info.name:
                self.node("Transpose", [info.name], [internal], f"input_{index}_to_nchw",
                          perm=list(NHWC_TO_NCHW))
                self.names[index] = internal
        output_names = {}
        for index in model.outputs:
            info, internal = self.graph_io(index)
            graph_outputs.append(info)
            output_names[index] = info.name
            self.names[index] = internal

        for op in model.operators:
            handler = self.HANDLERS.get(op.opcode)
            if handler is None:
                raise NotImplementedError(
                    f"TFLite operator {op.opcode} (operator {op.index}) is not supported by the "
                    f"ONNX converter; supported: {', '.join(sorted(self.HANDLERS))}")
            try:
                handler(self, op)
            except (IndexError, KeyError, TypeError, ZeroDivisionError) as exc:  # damaged op
                raise ValueError(f"{op.opcode} (operator {op.index}) in "
                                 f"{self.model.path.name} is malformed: {exc!r}") from None

        for index in model.outputs:
            internal, public = self.names[index], output_names[index]
            if index in self.folded:
                raise NotImplementedError(f"graph output {public!r} is a constant")
            if internal != public:
                self.node("Transpose", [internal], [public], f"output_{index}_to_nhwc",
                          perm=list(NCHW_TO_NHWC))
        self.drop_identities(set(output_names.values()))
        return helper.make_graph(self.nodes, "tflite_graph", graph_inputs, graph_outputs,
                                 initializer=self.initializers)

    def drop_identities(self, keep: set) -> None:
        """Fold Identity nodes into their consumers, except where they write a graph output."""
        rename = {}
        kept = []
        for node in self.nodes:
            inputs = [rename.get(name, name) for name in node.input]
            del node.input[:]
            node.input.extend(inputs)
            if node.op_type == "Identity" and node.output[0] not in keep:
                rename[node.output[0]] = node.input[0]
            else:
                kept.append(node)
        self.nodes = kept


def convert(tflite_path, onnx_path=None, *, opset: int = 17, nchw: bool = True) -> onnx.ModelProto:
    """Convert the TFLite model at ``tflite_path`` to ONNX; save it if ``onnx_path`` is given.

    With ``nchw=True`` (the default) 4-D inputs and outputs are NCHW, e.g. an
    image input ``[1, 3, H, W]`` and a mask output ``[1, C, H, W]``; with
    ``nchw=False`` they keep TFLite's NHWC shapes. Raises ValueError for an
    unreadable or inconsistent file or an opset below 14, and NotImplementedError
    for an unsupported operator.
    """
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise ValueError(f"opset {opset} is outside the supported range {MIN_OPSET}..{newest}")
    model = TFLiteModel.load(tflite_path)
    graph = _Converter(model, nchw).build()
    opset_ids = [helper.make_opsetid("", opset)]
    onnx_model = helper.make_model(
        graph, opset_imports=opset_ids, producer_name="openpixel_ros.tflite",
        ir_version=helper.find_min_ir_version_for(opset_ids),
        doc_string=f"Converted from {Path(tflite_path).name} ({model.description})".strip())
    try:
        onnx.checker.check_model(onnx_model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ValueError(f"{Path(tflite_path).name} converts to an invalid ONNX graph "
                         f"(inconsistent TFLite file?): {first_line}") from None
    if onnx_path is not None:
        onnx.save(onnx_model, str(onnx_path))
    return onnx_model
