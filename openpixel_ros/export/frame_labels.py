"""A GPU-ready semantic model: labels at the camera frame's size computed inside the graph.

``add_frame_labels`` appends to a semantic ONNX model, for one camera frame size fixed at export:
crop of the letterbox (if any) -> bilinear ``Resize`` of the logits to the frame's size
(``half_pixel``, the geometry OpenCV's ``INTER_LINEAR`` and the host path use) -> ``ArgMax`` ->
``Cast`` to uint8 (uint16 above 256 classes). A GPU engine (TensorRT, ONNX Runtime CUDA) then hands
back the finished label image: 2 MB at 1080p instead of 11 upsampled float maps (91 MB), and no
per-pixel work on the CPU. The logits stay an output, for the confidence and for frames of another
size, which fall back to the host's exact corner-agreement upsampling.

The contract records it as ``"frame_labels": {"name", "height", "width"}``;
:class:`~openpixel_ros.semantic.SemanticSegmenter` uses that output on GPU engines when the frame
has that size. Labels equal the host path's up to exact float ties (checked with ONNX Runtime on the
CPU in test_frame_labels.py; the GPU timing needs a GPU, see docs/tensorrt.md).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..model_contract import METADATA_KEY, load_contract, parse_contract, write_sidecar
from ..model_io import ModelInput, Placement

FRAME_LABELS_KEY = "frame_labels"
OUTPUT_NAME = "frame_labels"


def grid_crop(placement: Placement, grid_hw) -> tuple:
    """(y0, y1, x0, x1) of the frame's part of an output grid: :meth:`ModelInput.crop`'s slice."""
    return ModelInput.grid_box(placement, grid_hw)


def add_frame_labels(model_path, frame_hw, out_path=None) -> Path:
    """Write ``model_path`` plus a ``frame_labels`` output for frames of ``frame_hw`` (H, W); returns
    the new file (default ``<model>.frame_labels_<W>x<H>.onnx``) with its contract beside it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper, shape_inference

    model_path = Path(model_path)
    contract = load_contract(model_path, _embedded(model_path))
    if contract.output.kind != "logits":
        raise ValueError(f"frame labels need a logits output, {model_path.name} has {contract.output.kind}")
    height, width = (int(v) for v in frame_hw)
    model = shape_inference.infer_shapes(onnx.load(str(model_path)))
    graph = model.graph
    logits = next((o for o in graph.output if o.name == contract.output.name), None)
    if logits is None:
        raise ValueError(f"{model_path.name} has no output {contract.output.name!r}")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in logits.type.tensor_type.shape.dim]
    if len(dims) != 4 or None in dims[1:]:
        raise ValueError(f"frame labels need a static logits shape [1, C, h, w], {model_path.name} has {dims}")
    if contract.input.height is None or contract.input.width is None:
        raise ValueError("frame labels need a fixed model input size (export with --height/--width)")
    classes, grid_h, grid_w = dims[1:]
    placement = ModelInput(contract).placement((height, width))
    y0, y1, x0, x1 = grid_crop(placement, (grid_h, grid_w))
    label_type = TensorProto.UINT8 if classes <= 256 else TensorProto.UINT16

    name = contract.output.name
    consts = [numpy_helper.from_array(np.array(v, np.int64), f"{OUTPUT_NAME}/{k}") for k, v in (
        ("starts", [y0, x0]), ("ends", [y1, x1]), ("axes", [2, 3]), ("sizes", [1, classes, height, width]))]
    nodes = [
        helper.make_node("Slice", [name, f"{OUTPUT_NAME}/starts", f"{OUTPUT_NAME}/ends", f"{OUTPUT_NAME}/axes"],
                         [f"{OUTPUT_NAME}/cropped"]),
        helper.make_node("Resize", [f"{OUTPUT_NAME}/cropped", "", "", f"{OUTPUT_NAME}/sizes"],
                         [f"{OUTPUT_NAME}/scores"], mode="linear", coordinate_transformation_mode="half_pixel"),
        helper.make_node("ArgMax", [f"{OUTPUT_NAME}/scores"], [f"{OUTPUT_NAME}/ids"], axis=1, keepdims=0),
        helper.make_node("Cast", [f"{OUTPUT_NAME}/ids"], [OUTPUT_NAME], to=label_type),
    ]
    graph.initializer.extend(consts)
    graph.node.extend(nodes)
    graph.output.append(helper.make_tensor_value_info(OUTPUT_NAME, label_type, [1, height, width]))
    onnx.checker.check_model(model)

    out_path = Path(out_path) if out_path else model_path.with_name(
        f"{model_path.stem}.frame_labels_{width}x{height}.onnx")
    data = contract.to_dict()
    data[FRAME_LABELS_KEY] = {"name": OUTPUT_NAME, "height": height, "width": width}
    # The sidecar wins over embedded metadata (load_contract), so the new file carries it too.
    for prop in list(model.metadata_props):
        if prop.key == METADATA_KEY:
            model.metadata_props.remove(prop)
    onnx.save(model, str(out_path))
    write_sidecar(out_path, parse_contract(data))
    return out_path


def _embedded(model_path: Path) -> dict:
    import onnx
    return {p.key: p.value for p in onnx.load(str(model_path), load_external_data=False).metadata_props}
