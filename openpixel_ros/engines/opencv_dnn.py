"""Evaluation-only engine: OpenCV's DNN module, for reference models our engines cannot run.

The Torch7 ENet (Cityscapes) is the case in point: ``cv2.dnn.readNetFromTorch``
reads it, ONNX Runtime cannot. The node never uses this engine; the evaluation
tools select it with ``--engine opencv-dnn`` (it is registered in :mod:`openpixel_ros.engines`).
``readNetFromTorch`` exists only in OpenCV 4.x (5.0 removed it), hence the ``opencv-python-headless==4.14.0.*`` pin.

A reference model has no openpixel metadata, so the engine's
:meth:`~OpenCvDnnEngine.model_contract` builds it (:func:`reference_contract`) from
a sidecar JSON when there is one, else from the model's own class list and
colours for the references listed in :data:`KNOWN_REFERENCES`, and names its
input and output after the engine's tensors.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional

import cv2
import numpy as np

from .base import Engine, EngineError, TensorSpec
from ..model_contract import ContractError, ModelContract, load_contract, parse_contract, sidecar_path

ENGINE_NAME = "opencv-dnn"

#: Reference models by file name: input size and normalisation, and the files beside the
#: model that list its classes and colours (one per line; colours as ``r,g,b``).
KNOWN_REFERENCES = {
    "enet-model.net": {  # ENet trained on Cityscapes: 20 outputs, index 0 "Unlabeled"
        "height": 512, "width": 1024, "scale": 1.0 / 255.0, "color_order": "rgb",
        "classes_file": "enet-classes.txt", "colors_file": "enet-colors.txt",
    },
}

_READERS = {".net": cv2.dnn.readNetFromTorch, ".t7": cv2.dnn.readNetFromTorch,
            ".onnx": cv2.dnn.readNetFromONNX, ".pb": cv2.dnn.readNetFromTensorflow}


class OpenCvDnnEngine(Engine):
    """Runs a model with ``cv2.dnn`` on the CPU; one image input, one output.

    ``input_shape`` is the NCHW shape to declare for the input (Torch7 files do not
    store it; the contract's size is used); the output is declared ``[1, C, None, None]``
    with C unknown.
    """

    backend = ENGINE_NAME
    INPUT_NAME = "input"

    def __init__(self, model_path, device: str = "cpu", threads: int = 0, input_shape=(1, 3, None, None)):
        if str(device).lower() != "cpu":
            raise EngineError(f"opencv-dnn runs on the CPU only, not {device!r}")
        path = Path(model_path)
        if not path.is_file():
            raise EngineError(f"model file not found: {path}")
        reader = _READERS.get(path.suffix.lower())
        if reader is None:
            raise EngineError(f"opencv-dnn cannot read {path.suffix!r} files "
                              f"(supported: {', '.join(sorted(_READERS))})")
        if not hasattr(cv2.dnn, "readNetFromTorch"):
            raise EngineError(f"OpenCV {cv2.__version__} has no readNetFromTorch; "
                              "install opencv-python-headless==4.14.0.*")
        try:
            self._net = reader(str(path))
        except cv2.error as exc:
            raise EngineError(f"cannot load {path} with OpenCV DNN: {str(exc).strip().splitlines()[-1]}") \
                from None
        self._net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        self._net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        if threads:
            cv2.setNumThreads(int(threads))
        self._output_name = self._net.getUnconnectedOutLayersNames()[0]
        self._inputs = (TensorSpec(self.INPUT_NAME, tuple(input_shape), np.dtype(np.float32)),)
        self._outputs = (TensorSpec(self._output_name, (1, None, None, None), np.dtype(np.float32)),)

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict:
        if self._net is None:
            raise EngineError("opencv-dnn engine is closed")
        blob = np.ascontiguousarray(feeds[self.INPUT_NAME], dtype=np.float32)
        try:
            self._net.setInput(blob)
            out = self._net.forward(self._output_name)
        except cv2.error as exc:
            raise EngineError(f"opencv-dnn inference failed: {str(exc).strip().splitlines()[-1]}") from None
        return {self._output_name: np.array(out, copy=True)}

    def model_contract(self, model_path, given: Optional[ModelContract] = None) -> ModelContract:
        """``given`` or :func:`reference_contract`, with its input and output named after this engine's."""
        contract = given if given is not None else reference_contract(model_path)
        data = contract.to_dict()
        data["input"]["name"] = self.INPUT_NAME
        data["input"]["layout"] = "NCHW"
        data["output"]["name"] = self._output_name
        return parse_contract(data)

    def close(self) -> None:
        self._net = None


def _read_lines(path: Path) -> list:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def reference_contract(model_path, output_name: str = "output") -> ModelContract:
    """The contract of a reference model: its sidecar JSON, else built from :data:`KNOWN_REFERENCES`.

    The contract's input is named :attr:`OpenCvDnnEngine.INPUT_NAME` and its output
    ``output_name`` (the engine's output layer). Raises ContractError for an unknown model
    without a sidecar.
    """
    path = Path(model_path)
    if sidecar_path(path).is_file():
        return load_contract(path)
    known = KNOWN_REFERENCES.get(path.name)
    if known is None:
        raise ContractError(f"{path.name} has no metadata sidecar {sidecar_path(path).name} and is not a "
                            f"known reference ({', '.join(KNOWN_REFERENCES)}); pass --contract FILE")
    classes = _read_lines(path.parent / known["classes_file"])
    colors = [[int(v) for v in line.split(",")] for line in _read_lines(path.parent / known["colors_file"])]
    return parse_contract({
        "format": "openpixel-model/1", "task": "semantic",
        "input": {"name": OpenCvDnnEngine.INPUT_NAME, "layout": "NCHW", "height": known["height"],
                  "width": known["width"], "color_order": known["color_order"], "scale": known["scale"],
                  "mean": [0, 0, 0], "std": [1, 1, 1], "resize": "stretch"},
        "output": {"name": output_name, "kind": "logits"},
        "classes": classes, "colors": colors,
    })

