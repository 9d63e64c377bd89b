"""A model that fails on every frame: one bounded line per distinct error, nothing from ONNX
Runtime's own logger (issue 17, fault 9: 63 coloured lines in 6 s), and a contract declaring an
absurd input size refused at load (fault 10)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnx_models import linear_classifier
from openpixel_ros.engines import EngineError
from openpixel_ros.engines.onnxruntime_engine import OnnxRuntimeEngine
from openpixel_ros.log_text import MAX_LINE, DistinctLines
from openpixel_ros.model_contract import MAX_INPUT_PIXELS, MAX_INPUT_SIDE, ContractError, parse_contract
from openpixel_ros.segmentor import Segmentor


def _failing_model(path):
    """Reshapes its input to 1x2x7x7: fails at run time for any other frame size."""
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["image", "shape"], ["output"])], "fails",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "H", "W"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 2, 7, 7])],
        [numpy_helper.from_array(np.array([1, 2, 7, 7], np.int64), "shape")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


def test_a_failing_model_says_nothing_through_onnxruntimes_logger(tmp_path, capfd):
    path = tmp_path / "fails.onnx"
    _failing_model(path)
    engine = OnnxRuntimeEngine(path)
    capfd.readouterr()
    for _ in range(5):
        with pytest.raises(EngineError) as err:
            engine.run({"image": np.zeros((1, 3, 8, 8), np.float32)})
        assert "cannot be reshaped" in str(err.value)
    out, err_text = capfd.readouterr()
    assert "onnxruntime" not in err_text and "onnxruntime" not in out, err_text[:500]


def test_distinct_errors_are_each_logged_once_per_period_and_floods_are_capped():
    now = [0.0]
    lines = DistinctLines(period=5.0, max_per_period=3, clock=lambda: now[0])
    assert lines.admit("a") and lines.admit("b")  # a second, different error is not hidden
    assert not lines.admit("a") and not lines.admit("b")  # repeats are
    assert lines.admit("c") and not lines.admit("d")  # at most 3 lines a period
    now[0] = 5.0
    assert lines.admit("a") and lines.admit("d")


# -- fault 10: absurd input sizes -------------------------------------------------------------
def _contract(height, width) -> dict:
    return {"format": "openpixel-model/1", "input": {"name": "image", "height": height, "width": width},
            "output": {"name": "output"}, "classes": ["a", "b"]}


@pytest.mark.parametrize("height, width", [(30000, 30000), (MAX_INPUT_SIDE + 1, 16), (0, 64), (-5, 64),
                                           (8192, 8192)])
def test_contracts_with_absurd_input_sizes_are_refused(height, width):
    with pytest.raises(ContractError) as err:
        parse_contract(_contract(height, width))
    message = str(err.value)
    assert f"{width}x{height}" in message and "\n" not in message and len(message) <= MAX_LINE, message


def test_sane_input_sizes_still_load():
    assert parse_contract(_contract(2160, 3840)).input.height == 2160
    assert parse_contract(_contract(None, None)).input.height is None
    assert 3840 * 2160 <= MAX_INPUT_PIXELS


def test_a_model_declaring_30000x30000_fails_at_load_not_per_frame(tmp_path):
    path = tmp_path / "huge.onnx"
    linear_classifier(path, np.eye(2, 3), np.zeros(2), height=30000, width=30000)
    with pytest.raises(ContractError, match="30000x30000"):
        Segmentor(path, adaptation=None)
