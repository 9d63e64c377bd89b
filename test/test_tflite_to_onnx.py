"""TFLite -> ONNX converter: parity with the LiteRT interpreter on real models and images,
and on small synthetic TFLite models that exercise each operator's edge cases."""
from __future__ import annotations

from pathlib import Path

import cv2
import flatbuffers
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import skimage.data
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter

from openpixel_ros import selfie_model
from openpixel_ros.tflite.__main__ import main as cli_main
from openpixel_ros.tflite.to_onnx import convert, same_pads

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SELFIE_NAMES = ["selfie_segmentation_landscape", "selfie_segmentation"]
TRT_FRIENDLY_OPS = {"Conv", "ConvTranspose", "Add", "Mul", "Relu", "Clip", "Tanh", "HardSwish",
                    "Sigmoid", "AveragePool", "GlobalAveragePool", "Resize", "Concat", "Cast",
                    "Transpose", "Identity"}


# ---- real models and images ----------------------------------------------

@pytest.fixture(scope="session")
def mediapipe_wheel(tmp_path_factory) -> Path:
    """The mediapipe wheel: the one openpixel_fetch_model keeps, else one pip download per
    test session (skipped when PyPI cannot be reached)."""
    cached = selfie_model.model_dir() / "downloads" / selfie_model.WHEEL_FILENAME
    if cached.is_file():
        return cached
    downloads = tmp_path_factory.getbasetemp() / "mediapipe_downloads"
    try:
        return selfie_model.download_wheel(downloads)
    except RuntimeError as exc:
        pytest.skip(f"no cached mediapipe wheel and PyPI unreachable: {exc}")


@pytest.fixture(scope="session")
def selfie_models(request, tmp_path_factory) -> dict:
    """{name: TFLite path} of both selfie models, from ../shared or else the mediapipe wheel."""
    shared = SHARED / "models" / "mediapipe_selfie"
    if all((shared / f"{name}.tflite").is_file() for name in SELFIE_NAMES):
        return {name: shared / f"{name}.tflite" for name in SELFIE_NAMES}
    wheel = request.getfixturevalue("mediapipe_wheel")
    return selfie_model.extract_selfie_tflite(wheel, tmp_path_factory.mktemp("selfie"))


def real_images() -> list:
    """(label, RGB uint8) pairs: scikit-image samples, plus DAVIS and GrabCut frames if present."""
    images = [("astronaut", skimage.data.astronaut()), ("coffee", skimage.data.coffee()),
              ("chelsea", skimage.data.chelsea())]
    for folder, stems in [("davis345", ["000.jpg", "120.jpg", "240.jpg"]),
                          ("grabcut", ["106024.jpg", "153077.jpg", "181079.jpg"])]:
        for stem in stems:
            path = SHARED / "datasets" / folder / "images" / stem
            if path.is_file():
                images.append((f"{folder}/{stem}", cv2.cvtColor(cv2.imread(str(path)),
                                                                cv2.COLOR_BGR2RGB)))
    return images


def run_both(tflite_path: Path, nhwc_batch: np.ndarray, nchw: bool = True):
    """(interpreter output, ONNX Runtime output), both NHWC, for one NHWC float32 input."""
    interpreter = Interpreter(model_path=str(tflite_path))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], nhwc_batch)
    interpreter.invoke()
    reference = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    session = ort.InferenceSession(convert(tflite_path, nchw=nchw).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    feed = np.ascontiguousarray(nhwc_batch.transpose(0, 3, 1, 2)) if nchw else nhwc_batch
    output = session.run(None, {session.get_inputs()[0].name: feed})[0]
    return reference, (output.transpose(0, 2, 3, 1) if nchw else output)


def model_input(image: np.ndarray, height: int, width: int, low: float, high: float) -> np.ndarray:
    resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32)
    return (resized / 255.0 * (high - low) + low)[None]


@pytest.mark.parametrize("name", SELFIE_NAMES)
def test_selfie_masks_match_interpreter_on_real_images(name, selfie_models):
    path = selfie_models[name]
    height, width = (selfie_model.SELFIE_MODELS[name][k] for k in ("height", "width"))
    worst_agreement, worst_diff = 1.0, 0.0
    for label, image in real_images():
        reference, output = run_both(path, model_input(image, height, width, 0.0, 1.0))
        assert output.shape == reference.shape == (1, height, width, 1)
        agreement = float(np.mean((reference > 0.5) == (output > 0.5)))
        assert agreement >= 0.99, f"{label}: person masks agree on {agreement:.4%}"
        worst_agreement = min(worst_agreement, agreement)
        worst_diff = max(worst_diff, float(np.abs(reference - output).max()))
    print(f"{name}: worst mask agreement {worst_agreement:.5%}, max |dp| {worst_diff:.2e}")
    assert worst_diff < 1e-3


def test_selfie_finds_the_astronaut(selfie_models):
    """The converted model is a working person segmenter: most of the astronaut photo's
    centre column (her face and suit) is person, its top corners are not."""
    path = selfie_models["selfie_segmentation"]
    _, output = run_both(path, model_input(skimage.data.astronaut(), 256, 256, 0.0, 1.0))
    mask = output[0, :, :, 0] > 0.5
    assert mask[40:200, 90:150].mean() > 0.8
    assert mask[:30, :30].mean() < 0.2 and mask[:30, -30:].mean() < 0.2


def test_deeplab_labels_match_interpreter_on_real_images():
    path = SHARED / "models" / "deeplabv3_mnv2_voc" / "deeplabv3_257_mv_gpu.tflite"
    if not path.is_file():
        pytest.skip("needs ../shared")
    worst_agreement, worst_diff = 1.0, 0.0
    for label, image in real_images()[:6]:
        reference, output = run_both(path, model_input(image, 257, 257, -1.0, 1.0))
        agreement = float(np.mean(reference.argmax(-1) == output.argmax(-1)))
        assert agreement >= 0.99, f"{label}: argmax agrees on {agreement:.4%}"
        worst_agreement = min(worst_agreement, agreement)
        worst_diff = max(worst_diff, float(np.abs(reference - output).max()))
    print(f"deeplab: worst argmax agreement {worst_agreement:.5%}, max |dlogit| {worst_diff:.2e}")
    assert worst_diff < 1e-3


def test_nhwc_io_keeps_tflite_shapes(selfie_models):
    path = selfie_models["selfie_segmentation_landscape"]
    model = convert(path, nchw=False)
    dims = [[d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in (model.graph.input[0], model.graph.output[0])]
    assert dims == [[1, 144, 256, 3], [1, 144, 256, 1]]
    reference, output = run_both(path, model_input(skimage.data.astronaut(), 144, 256, 0, 1),
                                 nchw=False)
    np.testing.assert_allclose(output, reference, atol=1e-3)


def test_graph_is_nchw_throughout_with_trt_friendly_ops(selfie_models, tmp_path):
    path = selfie_models["selfie_segmentation_landscape"]
    out = tmp_path / "selfie.onnx"
    model = convert(path, out, opset=17)
    assert onnx.load(str(out)).graph.node[0].op_type == model.graph.node[0].op_type
    op_types = {node.op_type for node in model.graph.node}
    assert op_types <= TRT_FRIENDLY_OPS, op_types - TRT_FRIENDLY_OPS
    assert "Transpose" not in op_types and "Identity" not in op_types
    # float16 weights behind DEQUANTIZE are folded into float32 initializers, no Cast nodes
    assert "Cast" not in op_types
    assert {init.data_type for init in model.graph.initializer} <= {onnx.TensorProto.FLOAT,
                                                                    onnx.TensorProto.INT64}
    dims = [[d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in (model.graph.input[0], model.graph.output[0])]
    assert dims == [[1, 3, 144, 256], [1, 1, 144, 256]]
    assert model.opset_import[0].version == 17


# ---- synthetic TFLite models ----------------------------------------------

_TENSOR_TYPES = {np.dtype(np.float32): schema.TensorType.FLOAT32,
                 np.dtype(np.float16): schema.TensorType.FLOAT16,
                 np.dtype(np.int32): schema.TensorType.INT32,
                 np.dtype(np.int8): schema.TensorType.INT8}


def tensor(name, shape, data=None, dtype=np.float32, scale=None, zero_point=None) -> dict:
    """A tensor for :func:`build_tflite`; ``data`` makes it a constant."""
    return dict(name=name, shape=shape, data=data, dtype=np.dtype(dtype), scale=scale,
                zero_point=zero_point)


def operator(code, inputs, outputs, options_type=0, options=None, custom=None) -> dict:
    """An operator for :func:`build_tflite`: ``code`` is a BuiltinOperator value or a custom
    code string."""
    return dict(code=code, inputs=inputs, outputs=outputs, options_type=options_type,
                options=options, custom=custom)


def build_tflite(tensors: list, operators: list, inputs: list, outputs: list) -> bytes:
    """A one-subgraph TFLite FlatBuffer, written with the schema's generated object API."""
    model = schema.ModelT()
    model.version = 3
    model.buffers = [schema.BufferT()]
    graph = schema.SubGraphT()
    graph.tensors, graph.operators, graph.inputs, graph.outputs = [], [], inputs, outputs
    for spec in tensors:
        t = schema.TensorT()
        t.name, t.shape, t.type = spec["name"], list(spec["shape"]), _TENSOR_TYPES[spec["dtype"]]
        if spec["data"] is not None:
            buffer = schema.BufferT()
            buffer.data = np.frombuffer(np.asarray(spec["data"], spec["dtype"]).tobytes(), np.uint8)
            t.buffer = len(model.buffers)
            model.buffers.append(buffer)
        if spec["scale"] is not None:
            t.quantization = schema.QuantizationParametersT()
            t.quantization.scale = list(spec["scale"])
            t.quantization.zeroPoint = list(spec["zero_point"])
            t.quantization.quantizedDimension = 0
        graph.tensors.append(t)
    codes = []
    for spec in operators:
        if spec["code"] not in codes:
            codes.append(spec["code"])
        op = schema.OperatorT()
        op.opcodeIndex = codes.index(spec["code"])
        op.inputs, op.outputs = spec["inputs"], spec["outputs"]
        op.builtinOptionsType, op.builtinOptions = spec["options_type"], spec["options"]
        if spec["custom"] is not None:
            op.customOptions = list(spec["custom"])
        graph.operators.append(op)
    model.operatorCodes = []
    for code in codes:
        opcode = schema.OperatorCodeT()
        opcode.version = 1
        if isinstance(code, str):
            opcode.builtinCode = opcode.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
            opcode.customCode = code
        else:  # codes past 127 only fit builtin_code; the int8 field holds the placeholder
            opcode.builtinCode = code
            opcode.deprecatedBuiltinCode = min(
                code, schema.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES)
        model.operatorCodes.append(opcode)
    model.subgraphs = [graph]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def options(cls, **fields):
    """A generated options object, e.g. options(schema.Conv2DOptionsT, strideW=2)."""
    obj = cls()
    for key, value in fields.items():
        setattr(obj, key, value)
    return obj


OP = schema.BuiltinOperator
OPT = schema.BuiltinOptions
SAME, VALID = schema.Padding.SAME, schema.Padding.VALID
ACT = schema.ActivationFunctionType


def unary_model(code, x_shape, y_shape, options_type=0, opts=None, extra=()):
    """x -> op(x, *extra constants) -> y."""
    tensors = [tensor("x", x_shape)] + list(extra) + [tensor("y", y_shape)]
    out = len(tensors) - 1
    return build_tflite(tensors, [operator(code, list(range(out)), [out], options_type, opts)],
                        [0], [out])


def conv_model(x_shape, y_shape, weight, conv_options, depthwise=False, fp16=False):
    """x -> [DEPTHWISE_]CONV_2D(weight, bias) -> y, the weight optionally float16 via DEQUANTIZE."""
    bias = _w(weight.shape[3] if depthwise else weight.shape[0])
    weight_tensor = tensor("w", weight.shape) if fp16 else tensor("w", weight.shape, weight)
    tensors = [tensor("x", x_shape), weight_tensor, tensor("b", bias.shape, bias),
               tensor("y", y_shape)]
    ops = []
    if fp16:
        tensors.append(tensor("w16", weight.shape, weight, np.float16))
        ops.append(operator(OP.DEQUANTIZE, [4], [1]))
    code, opt_type = ((OP.DEPTHWISE_CONV_2D, OPT.DepthwiseConv2DOptions) if depthwise
                      else (OP.CONV_2D, OPT.Conv2DOptions))
    ops.append(operator(code, [0, 1, 2], [3], opt_type, conv_options))
    return build_tflite(tensors, ops, [0], [3])


def _w(*shape):
    return np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32)


SYNTHETIC_CASES = {
    # SAME with an odd total pad: TFLite puts the extra pixel after
    "conv_same_stride2_odd_relu6": lambda: conv_model(
        (1, 11, 12, 3), (1, 6, 6, 5), _w(5, 3, 3, 3),
        options(schema.Conv2DOptionsT, padding=SAME, strideW=2, strideH=2,
                fusedActivationFunction=ACT.RELU6)),
    "conv_valid_dilated_relu_n1_to_1": lambda: conv_model(
        (1, 9, 10, 4), (1, 5, 6, 2), _w(2, 3, 3, 4),
        options(schema.Conv2DOptionsT, padding=VALID, strideW=1, strideH=1, dilationWFactor=2,
                dilationHFactor=2, fusedActivationFunction=ACT.RELU_N1_TO_1)),
    "conv_grouped": lambda: conv_model(
        (1, 6, 6, 4), (1, 6, 6, 6), _w(6, 3, 3, 2),
        options(schema.Conv2DOptionsT, padding=SAME, strideW=1, strideH=1)),
    "conv_float16_weights": lambda: conv_model(
        (1, 8, 8, 3), (1, 8, 8, 4), _w(4, 1, 1, 3),
        options(schema.Conv2DOptionsT, padding=SAME, strideW=1, strideH=1), fp16=True),
    "depthwise_multiplier2_same_stride2_relu": lambda: conv_model(
        (1, 10, 9, 3), (1, 5, 5, 6), _w(1, 5, 5, 6),
        options(schema.DepthwiseConv2DOptionsT, padding=SAME, strideW=2, strideH=2,
                depthMultiplier=2, fusedActivationFunction=ACT.RELU), depthwise=True),
    "average_pool_same_excludes_padding": lambda: unary_model(
        OP.AVERAGE_POOL_2D, (1, 7, 8, 3), (1, 4, 4, 3), OPT.Pool2DOptions,
        options(schema.Pool2DOptionsT, padding=SAME, strideW=2, strideH=2, filterWidth=3,
                filterHeight=3, fusedActivationFunction=ACT.RELU)),
    "average_pool_global": lambda: unary_model(
        OP.AVERAGE_POOL_2D, (1, 6, 5, 4), (1, 1, 1, 4), OPT.Pool2DOptions,
        options(schema.Pool2DOptionsT, padding=VALID, strideW=5, strideH=6, filterWidth=5,
                filterHeight=6)),
    "mean_spatial": lambda: unary_model(
        OP.MEAN, (1, 6, 5, 4), (1, 1, 1, 4), OPT.ReducerOptions,
        options(schema.ReducerOptionsT, keepDims=True),
        extra=[tensor("axes", (2,), [1, 2], np.int32)]),
    **{f"resize_bilinear_{mode}_{size[0]}x{size[1]}": (
        lambda mode=mode, size=size: unary_model(
            OP.RESIZE_BILINEAR, (1, 5, 7, 2), (1, *size, 2), OPT.ResizeBilinearOptions,
            options(schema.ResizeBilinearOptionsT, alignCorners=mode == "align_corners",
                    halfPixelCenters=mode == "half_pixel"),
            extra=[tensor("size", (2,), list(size), np.int32)]))
       for mode in ("align_corners", "half_pixel", "asymmetric") for size in ((8, 11), (3, 4))},
    "hard_swish": lambda: unary_model(OP.HARD_SWISH, (1, 4, 5, 3), (1, 4, 5, 3)),
    "logistic": lambda: unary_model(OP.LOGISTIC, (1, 4, 5, 3), (1, 4, 5, 3)),
    "relu6": lambda: unary_model(OP.RELU6, (1, 4, 5, 3), (1, 4, 5, 3)),
    "tanh": lambda: unary_model(OP.TANH, (1, 4, 5, 3), (1, 4, 5, 3)),
    "add_constant_per_channel_relu": lambda: unary_model(
        OP.ADD, (1, 4, 5, 3), (1, 4, 5, 3), OPT.AddOptions,
        options(schema.AddOptionsT, fusedActivationFunction=ACT.RELU),
        extra=[tensor("c", (3,), [0.5, -1.0, 2.0])]),
    "mul_constant_row": lambda: unary_model(
        OP.MUL, (1, 4, 5, 3), (1, 4, 5, 3), OPT.MulOptions, options(schema.MulOptionsT),
        extra=[tensor("c", (5, 3), _w(5, 3))]),
    "mul_by_folded_constant_sum": lambda: build_tflite(
        [tensor("x", (1, 4, 5, 3)), tensor("c1", (3,), [1.0, 2.0, 3.0]),
         tensor("c2", (1, 1, 1, 3), [[[[0.5, -4.0, 0.25]]]]), tensor("c", (1, 1, 1, 3)),
         tensor("y", (1, 4, 5, 3))],
        [operator(OP.ADD, [1, 2], [3], OPT.AddOptions, options(schema.AddOptionsT)),
         operator(OP.MUL, [0, 3], [4], OPT.MulOptions, options(schema.MulOptionsT))],
        [0], [4]),
    # squeeze-and-excite shape: x * sigmoid(mean(x)), broadcasting [1,1,1,C] activations
    "mul_broadcast_activations": lambda: build_tflite(
        [tensor("x", (1, 4, 5, 3)), tensor("axes", (2,), [1, 2], np.int32),
         tensor("m", (1, 1, 1, 3)), tensor("s", (1, 1, 1, 3)), tensor("y", (1, 4, 5, 3))],
        [operator(OP.MEAN, [0, 1], [2], OPT.ReducerOptions,
                  options(schema.ReducerOptionsT, keepDims=True)),
         operator(OP.LOGISTIC, [2], [3]),
         operator(OP.MUL, [0, 3], [4], OPT.MulOptions, options(schema.MulOptionsT))],
        [0], [4]),
    "concatenation_last_axis": lambda: build_tflite(
        [tensor("x", (1, 4, 5, 3)), tensor("r", (1, 4, 5, 3)), tensor("y", (1, 4, 5, 6))],
        [operator(OP.RELU, [0], [1]),
         operator(OP.CONCATENATION, [0, 1], [2], OPT.ConcatenationOptions,
                  options(schema.ConcatenationOptionsT, axis=-1))],
        [0], [2]),
    # custom options: padding (1 = SAME), stride_w, stride_h; unequal strides pin the order
    "transpose_conv_bias_same_k3": lambda: build_tflite(
        [tensor("x", (1, 5, 7, 5)), tensor("w", (4, 3, 3, 5), _w(4, 3, 3, 5)),
         tensor("b", (4,), _w(4)), tensor("y", (1, 5, 14, 4))],
        [operator("Convolution2DTransposeBias", [0, 1, 2], [3],
                  custom=np.array([1, 2, 1], np.int32).tobytes())],
        [0], [3]),
    "transpose_conv_bias_valid": lambda: build_tflite(
        [tensor("x", (1, 4, 3, 2)), tensor("w", (3, 2, 3, 2), _w(3, 2, 3, 2)),
         tensor("b", (3,), _w(3)), tensor("y", (1, 11, 5, 3))],
        [operator("Convolution2DTransposeBias", [0, 1, 2], [3],
                  custom=np.array([2, 1, 3], np.int32).tobytes())],
        [0], [3]),
}


@pytest.mark.parametrize("case", sorted(SYNTHETIC_CASES))
def test_synthetic_operator_matches_interpreter(case, tmp_path):
    path = tmp_path / f"{case}.tflite"
    path.write_bytes(SYNTHETIC_CASES[case]())
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    x = np.random.default_rng(7).standard_normal(interpreter.get_input_details()[0]["shape"])
    reference, output = run_both(path, x.astype(np.float32))
    assert output.shape == reference.shape
    np.testing.assert_allclose(output, reference, atol=1e-4, rtol=1e-4)


def test_same_pads_match_tensorflow_rule():
    assert same_pads(11, 6, 3, 2) == (1, 1)   # total 2
    assert same_pads(12, 6, 3, 2) == (0, 1)   # odd total: extra pixel after
    assert same_pads(257, 129, 3, 2) == (1, 1)
    assert same_pads(9, 9, 3, 1, dilation=2) == (2, 2)
    assert same_pads(8, 4, 1, 2) == (0, 0)


def test_unsupported_builtin_operator_is_named(tmp_path):
    path = tmp_path / "softmax.tflite"
    path.write_bytes(unary_model(OP.SOFTMAX, (1, 4, 5, 3), (1, 4, 5, 3)))
    with pytest.raises(NotImplementedError, match="SOFTMAX"):
        convert(path)


def test_unsupported_operator_past_code_127_is_named(tmp_path):
    path = tmp_path / "gelu.tflite"
    path.write_bytes(unary_model(OP.GELU, (1, 4, 5, 3), (1, 4, 5, 3)))
    with pytest.raises(NotImplementedError, match="GELU"):
        convert(path)


def test_unsupported_custom_operator_is_named(tmp_path):
    path = tmp_path / "custom.tflite"
    path.write_bytes(build_tflite([tensor("x", (1, 4, 4, 2)), tensor("y", (1, 4, 4, 2))],
                                  [operator("MaxUnpooling2D", [0], [1], custom=b"")], [0], [1]))
    with pytest.raises(NotImplementedError, match="MaxUnpooling2D"):
        convert(path)


def test_fused_tanh_is_rejected(tmp_path):
    """TFLite's conv kernels ignore a fused TANH, so converting it either way would guess."""
    path = tmp_path / "conv_tanh.tflite"
    path.write_bytes(conv_model((1, 4, 4, 2), (1, 4, 4, 3), _w(3, 1, 1, 2),
                                options(schema.Conv2DOptionsT, padding=SAME, strideW=1, strideH=1,
                                        fusedActivationFunction=ACT.TANH)))
    with pytest.raises(NotImplementedError, match="TANH"):
        convert(path)


def test_mean_over_channels_is_rejected(tmp_path):
    path = tmp_path / "mean_c.tflite"
    path.write_bytes(unary_model(OP.MEAN, (1, 4, 5, 3), (1, 4, 5, 1), OPT.ReducerOptions,
                                 options(schema.ReducerOptionsT, keepDims=True),
                                 extra=[tensor("axes", (1,), [3], np.int32)]))
    with pytest.raises(NotImplementedError, match="MEAN"):
        convert(path)


def test_opset_below_14_is_rejected(tmp_path):
    path = tmp_path / "relu6.tflite"
    path.write_bytes(unary_model(OP.RELU6, (1, 4, 5, 3), (1, 4, 5, 3)))
    with pytest.raises(ValueError, match="opset 13"):
        convert(path, opset=13)


def test_command_line(tmp_path, capsys):
    good = tmp_path / "relu6.tflite"
    good.write_bytes(unary_model(OP.RELU6, (1, 4, 5, 3), (1, 4, 5, 3)))
    assert cli_main([str(good), str(tmp_path / "relu6.onnx")]) == 0
    assert "[1, 3, 4, 5]" in capsys.readouterr().out
    assert onnx.load(str(tmp_path / "relu6.onnx")).graph.node[0].op_type == "Clip"
    bad = tmp_path / "softmax.tflite"
    bad.write_bytes(unary_model(OP.SOFTMAX, (1, 4, 5, 3), (1, 4, 5, 3)))
    assert cli_main([str(bad), str(tmp_path / "softmax.onnx")]) == 1
    assert "SOFTMAX" in capsys.readouterr().err
    assert not (tmp_path / "softmax.onnx").exists()
