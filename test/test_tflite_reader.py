"""TFLite reader: checked against the LiteRT interpreter's own view of the same files,
and against damaged files."""
from __future__ import annotations

import warnings
from pathlib import Path

import flatbuffers
import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter
from test_tflite_to_onnx import (build_tflite, mediapipe_wheel, operator,  # noqa: F401 (fixtures)
                                 selfie_models, tensor)

from openpixel_ros.tflite import TFLiteModel

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DEEPLAB = SHARED / "models" / "deeplabv3_mnv2_voc" / "deeplabv3_257_mv_gpu.tflite"

SELFIE_COMMON = {"DEQUANTIZE": 110, "CONV_2D": 43, "DEPTHWISE_CONV_2D": 11, "HARD_SWISH": 11,
                 "RELU": 22, "LOGISTIC": 11, "MUL": 10, "ADD": 14, "RESIZE_BILINEAR": 3,
                 "Convolution2DTransposeBias": 1}
EXPECTED_OP_COUNTS = {
    # the square model pools its squeeze-excite blocks with AVERAGE_POOL_2D, the landscape one
    # with MEAN; everything else is the same
    "selfie_segmentation": {**SELFIE_COMMON, "AVERAGE_POOL_2D": 10},
    "selfie_segmentation_landscape": {**SELFIE_COMMON, "MEAN": 10},
    "deeplab": {"CONV_2D": 38, "DEPTHWISE_CONV_2D": 17, "ADD": 10, "AVERAGE_POOL_2D": 1,
                "RESIZE_BILINEAR": 3, "CONCATENATION": 1},
}


@pytest.fixture(params=["selfie_segmentation", "selfie_segmentation_landscape", "deeplab"])
def model_path(request) -> Path:
    if request.param == "deeplab":
        if not DEEPLAB.is_file():
            pytest.skip("needs ../shared")
        return DEEPLAB
    return request.getfixturevalue("selfie_models")[request.param]


def reference_interpreter(path: Path) -> Interpreter:
    with warnings.catch_warnings():  # preserve_all_tensors warns that it is for debugging
        warnings.simplefilter("ignore")
        interpreter = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    return interpreter


def test_op_counts(model_path):
    key = "deeplab" if model_path.name.startswith("deeplab") else model_path.stem
    assert dict(TFLiteModel.load(model_path).op_counts()) == EXPECTED_OP_COUNTS[key]


def test_tensors_and_constants_match_interpreter(model_path):
    model = TFLiteModel.load(model_path)
    interpreter = reference_interpreter(model_path)
    details = interpreter.get_tensor_details()
    assert len(model.tensors) == len(details)
    constants = 0
    for detail in details:
        t = model.tensors[detail["index"]]
        assert (t.name, t.shape, t.dtype) == (detail["name"], tuple(detail["shape"]),
                                              np.dtype(detail["dtype"]))
        data = model.tensor_data(t.index)
        if data is not None:
            np.testing.assert_array_equal(data, interpreter.get_tensor(t.index))
            constants += 1
    assert constants > 100  # every weight and bias was compared
    assert [d["index"] for d in interpreter.get_input_details()] == model.inputs
    assert [d["index"] for d in interpreter.get_output_details()] == model.outputs


def test_operators_match_interpreter(model_path):
    model = TFLiteModel.load(model_path)
    interpreter = reference_interpreter(model_path)
    ops = [op for op in interpreter._get_ops_details() if op["op_name"] != "DELEGATE"]
    assert [op["op_name"] for op in ops] == [op.opcode for op in model.operators]
    for ref, op in zip(ops, model.operators):
        assert list(ref["inputs"]) == op.inputs and list(ref["outputs"]) == op.outputs


def test_selfie_float16_weights_follow_dequantize(selfie_models):  # noqa: F811 (fixture)
    model = TFLiteModel.load(selfie_models["selfie_segmentation"])
    first_conv = next(op for op in model.operators if op.opcode == "CONV_2D")
    weight_index = first_conv.inputs[1]
    assert model.tensor_data(weight_index) is None  # written by DEQUANTIZE at run time
    dequantize = model.producer(weight_index)
    assert dequantize.opcode == "DEQUANTIZE"
    stored = model.tensor_data(dequantize.inputs[0])
    assert stored.dtype == np.float16 and stored.shape == (16, 3, 3, 3)
    weight = model.constant(weight_index)
    assert weight.dtype == np.float32
    np.testing.assert_array_equal(weight, stored.astype(np.float32))
    assert first_conv.options == {"padding": "SAME", "stride_w": 2, "stride_h": 2,
                                  "fused_activation_function": "NONE",
                                  "dilation_w_factor": 1, "dilation_h_factor": 1}
    assert model.constant(model.inputs[0]) is None


def test_selfie_custom_op_and_resize_options(selfie_models):  # noqa: F811 (fixture)
    model = TFLiteModel.load(selfie_models["selfie_segmentation_landscape"])
    transpose_conv = next(op for op in model.operators
                          if op.opcode == "Convolution2DTransposeBias")
    # TfLitePoolParams-style: padding 1 (SAME), stride_w 2, stride_h 2
    assert transpose_conv.custom_options == np.array([1, 2, 2], "<i4").tobytes()
    resize = next(op for op in model.operators if op.opcode == "RESIZE_BILINEAR")
    assert resize.options == {"align_corners": False, "half_pixel_centers": True}
    assert model.tensors[model.inputs[0]].shape == (1, 144, 256, 3)
    assert model.tensors[model.outputs[0]].name == "segment_back"
    assert model.tensor_by_name("segment_back").index == model.outputs[0]
    with pytest.raises(KeyError):
        model.tensor_by_name("no such tensor")


def test_deeplab_options():
    if not DEEPLAB.is_file():
        pytest.skip("needs ../shared")
    model = TFLiteModel.load(DEEPLAB)
    by_code = {}
    for op in model.operators:
        by_code.setdefault(op.opcode, op)
    assert by_code["CONV_2D"].options["fused_activation_function"] == "RELU6"
    assert by_code["DEPTHWISE_CONV_2D"].options["depth_multiplier"] == 1
    assert by_code["AVERAGE_POOL_2D"].options == {
        "padding": "VALID", "stride_w": 33, "stride_h": 33, "filter_width": 33,
        "filter_height": 33, "fused_activation_function": "NONE"}
    assert by_code["RESIZE_BILINEAR"].options == {"align_corners": True,
                                                  "half_pixel_centers": False}
    assert by_code["CONCATENATION"].options["axis"] == 3
    weight = model.constant(by_code["CONV_2D"].inputs[1])
    assert weight.dtype == np.float32 and weight.shape == (16, 3, 3, 3)


def test_opcode_past_127_and_quantized_constants(tmp_path):
    """Codes above 127 live only in builtin_code (the int8 field holds a placeholder), and
    int8 constants dequantize per channel as scale * (q - zero_point)."""
    q = np.array([[-128, 0, 127], [10, 20, 30]], np.int8)
    path = tmp_path / "gelu.tflite"
    path.write_bytes(build_tflite(
        [tensor("x", (1, 4)), tensor("q", (2, 3), q, np.int8, scale=[0.5, 0.25],
                                     zero_point=[0, 10]), tensor("y", (1, 4))],
        [operator(schema.BuiltinOperator.GELU, [0], [2])], [0], [2]))
    model = TFLiteModel.load(path)
    assert [op.opcode for op in model.operators] == ["GELU"]
    np.testing.assert_array_equal(model.tensor_data(1), q)
    np.testing.assert_allclose(model.constant(1), [[-64, 0, 63.5], [0, 2.5, 5]])
    assert model.tensors[1].quantization.zero_point.tolist() == [0, 10]


def test_buffer_stored_after_the_flatbuffer(tmp_path):
    """Models over 2 GB keep buffers past the FlatBuffer, addressed by offset and size."""
    c = np.arange(12, dtype=np.float32).reshape(1, 1, 4, 3)
    packed = build_tflite([tensor("x", c.shape), tensor("c", c.shape, c), tensor("y", c.shape)],
                          [operator(schema.BuiltinOperator.ADD, [0, 1], [2],
                                    schema.BuiltinOptions.AddOptions, schema.AddOptionsT())],
                          [0], [2])
    model = schema.ModelT.InitFromPackedBuf(packed, 0)
    model.buffers[1].data, model.buffers[1].offset, model.buffers[1].size = None, 4096, c.nbytes
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    flatbuffer = bytes(builder.Output())
    path = tmp_path / "external.tflite"
    path.write_bytes(flatbuffer + bytes(4096 - len(flatbuffer)) + c.tobytes())
    np.testing.assert_array_equal(TFLiteModel.load(path).tensor_data(1), c)
    interpreter = Interpreter(model_path=str(path))  # the reference reads it the same way
    interpreter.allocate_tensors()
    interpreter.set_tensor(0, np.zeros_like(c))
    interpreter.invoke()
    np.testing.assert_array_equal(interpreter.get_tensor(2), c)
    path.write_bytes(flatbuffer + bytes(4096 - len(flatbuffer)) + c.tobytes()[:-4])
    with pytest.raises(ValueError, match="past the end"):
        TFLiteModel.load(path)


# ---- damaged files --------------------------------------------------------

@pytest.fixture()
def good_bytes(tmp_path) -> bytes:
    weight = np.arange(2 * 3 * 3 * 2, dtype=np.float32).reshape(2, 3, 3, 2)
    conv = schema.Conv2DOptionsT()
    conv.strideW = conv.strideH = 1
    return build_tflite([tensor("x", (1, 5, 5, 2)), tensor("w", weight.shape, weight),
                         tensor("y", (1, 5, 5, 2))],
                        [operator(schema.BuiltinOperator.CONV_2D, [0, 1, -1], [2],
                                  schema.BuiltinOptions.Conv2DOptions, conv)], [0], [2])


def assert_one_line_value_error(path: Path, match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        TFLiteModel.load(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message


def test_missing_file_and_directory(tmp_path):
    assert_one_line_value_error(tmp_path / "absent.tflite", "cannot read TFLite model")
    assert_one_line_value_error(tmp_path, "cannot read TFLite model")


@pytest.mark.parametrize("content", [b"", b"TFL3", b"\x89PNG\r\n\x1a\n" + bytes(100),
                                     b"\x08\x07\x12\x04onnx" + bytes(50)])
def test_not_a_tflite_file(tmp_path, content):
    path = tmp_path / "model.tflite"
    path.write_bytes(content)
    assert_one_line_value_error(path, "not a TFLite model")


def test_good_bytes_load(tmp_path, good_bytes):
    path = tmp_path / "ok.tflite"
    path.write_bytes(good_bytes)
    model = TFLiteModel.load(path)
    assert model.operators[0].inputs == [0, 1, -1]
    assert model.tensor_data(1).shape == (2, 3, 3, 2)


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.5, 0.7, 0.9])
def test_truncated_file(tmp_path, good_bytes, fraction):
    path = tmp_path / "cut.tflite"
    path.write_bytes(good_bytes[:max(8, int(len(good_bytes) * fraction))])
    assert_one_line_value_error(path, "corrupt or truncated")


def test_truncated_real_model(tmp_path, selfie_models):  # noqa: F811 (fixture)
    data = selfie_models["selfie_segmentation"].read_bytes()
    path = tmp_path / "cut.tflite"
    for size in (16, 1000, len(data) // 2, len(data) - 5000):
        path.write_bytes(data[:size])
        assert_one_line_value_error(path, "corrupt or truncated")


def test_garbage_after_the_identifier(tmp_path):
    rng = np.random.default_rng(3)
    path = tmp_path / "garbage.tflite"
    for _ in range(20):
        body = rng.integers(0, 256, 400, dtype=np.uint8).tobytes()
        path.write_bytes(b"\x10\x00\x00\x00TFL3" + body)
        assert_one_line_value_error(path, "corrupt or truncated")
