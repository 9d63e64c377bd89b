"""Tiny ONNX models with known weights, so tests can compute expected labels by hand."""
from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _save(model: onnx.ModelProto, path, contract: dict, embed: bool = False) -> None:
    if embed:
        helper.set_model_props(model, {"openpixel": json.dumps(contract)})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    if not embed:
        path.with_suffix(".json").write_text(json.dumps(contract))


def linear_classifier(path, weights, bias, height=None, width=None, kind="logits", classes=None,
                      embed_metadata=False, conditioning_size=0):
    """Per-pixel linear classifier on x = rgb/255: scores[c] = W[c] . x + b[c] (a 1x1 Conv).

    kind="logits": output [1,C,H,W]; kind="probability": sigmoid of a single score, [1,1,H,W].
    ``height``/``width`` None makes the spatial dims dynamic. With ``conditioning_size`` > 0 the model
    has a second input "adaptation" [1,k] whose first value is added to every score.
    Returns the contract dict written beside the model.
    """
    weights = np.asarray(weights, np.float32)
    bias = np.asarray(bias, np.float32)
    c = weights.shape[0]
    h = height if height is not None else "H"
    w = width if width is not None else "W"
    inputs = [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, h, w])]
    inits = [numpy_helper.from_array(weights.reshape(c, 3, 1, 1), "W"), numpy_helper.from_array(bias, "B")]
    nodes = [helper.make_node("Conv", ["image", "W", "B"], ["scores"])]
    last = "scores"
    if conditioning_size:
        inputs.append(helper.make_tensor_value_info("adaptation", TensorProto.FLOAT, [1, conditioning_size]))
        inits += [numpy_helper.from_array(np.array([0], np.int64), "i0"),
                  numpy_helper.from_array(np.array([1], np.int64), "i1"),
                  numpy_helper.from_array(np.array([1], np.int64), "axis1"),
                  numpy_helper.from_array(np.array([1, 1, 1, 1], np.int64), "shape4")]
        nodes += [helper.make_node("Slice", ["adaptation", "i0", "i1", "axis1"], ["cond0"]),
                  helper.make_node("Reshape", ["cond0", "shape4"], ["cond4"]),
                  helper.make_node("Add", [last, "cond4"], ["conditioned"])]
        last = "conditioned"
    out_c = c
    if kind == "probability":
        assert c == 1
        nodes.append(helper.make_node("Sigmoid", [last], ["output"]))
    else:
        nodes.append(helper.make_node("Identity", [last], ["output"]))
    outputs = [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, out_c, h, w])]
    graph = helper.make_graph(nodes, "linear_classifier", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if classes is None:
        classes = ["background", "object"] if kind == "probability" else [f"class{i}" for i in range(c)]
    contract = {
        "format": "openpixel-model/1", "task": "semantic",
        "input": {"name": "image", "layout": "NCHW", "height": height, "width": width, "color_order": "rgb",
                  "scale": 1 / 255, "mean": [0, 0, 0], "std": [1, 1, 1], "resize": "stretch"},
        "output": {"name": "output", "kind": kind},
        "classes": classes,
        "colors": [[(37 * i) % 256, (91 * i) % 256, (173 * i) % 256] for i in range(len(classes))],
        "conditioning": {"name": "adaptation", "size": conditioning_size} if conditioning_size else None,
    }
    _save(model, path, contract, embed=embed_metadata)
    return contract


def expected_linear_labels(rgb: np.ndarray, weights, bias) -> np.ndarray:
    """What :func:`linear_classifier` (logits) must produce for ``rgb`` at the model's own size."""
    x = rgb.astype(np.float32) / np.float32(255.0)
    scores = np.einsum("hwk,ck->hwc", x, np.asarray(weights, np.float32)) + np.asarray(bias, np.float32)
    return np.argmax(scores, axis=2).astype(np.uint8)
