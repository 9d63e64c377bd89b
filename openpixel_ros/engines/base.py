"""The engine interface: a named-tensor runner, nothing more.

An engine knows tensors, not images. Pre- and post-processing live in
:mod:`openpixel_ros.model_io` (frame <-> model input), :mod:`openpixel_ros.semantic`
(label images) and :mod:`openpixel_ros.interactive` (click prompts), so ONNX
Runtime, TensorRT or any other backend only has to implement :class:`Engine`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import numpy as np

from ..errors import EngineError  # noqa: F401  (engines raise it; defined below so model_io can too)
from ..model_contract import ModelContract, load_contract


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape and dtype of one model input or output.

    ``shape`` holds ints for fixed dimensions and ``None`` for dynamic ones.
    """

    name: str
    shape: tuple
    dtype: np.dtype

    @property
    def is_dynamic(self) -> bool:
        return any(d is None for d in self.shape)


class Engine(ABC):
    """Runs one model graph on named numpy tensors.

    Implementations load the model in ``__init__``, set ``_inputs`` and ``_outputs``
    (tuples of :class:`TensorSpec`), and raise :class:`EngineError` with a one-line
    message when the file is missing, corrupt or unsupported.
    """

    #: Short backend name used in parameters and logs, e.g. ``"onnxruntime"``.
    backend: str = ""
    _inputs: tuple = ()
    _outputs: tuple = ()

    @property
    def inputs(self) -> Sequence[TensorSpec]:
        """Model inputs, in graph order."""
        return self._inputs

    @property
    def outputs(self) -> Sequence[TensorSpec]:
        """Model outputs, in graph order."""
        return self._outputs

    @property
    def metadata(self) -> Mapping[str, str]:
        """Free-form key/value metadata embedded in the model file (may be empty)."""
        return {}

    def model_contract(self, model_path, given: Optional[ModelContract] = None) -> ModelContract:
        """The contract of the model this engine runs: ``given``, else the file's sidecar JSON or
        embedded metadata. A backend for files that carry none (opencv-dnn) derives it instead."""
        return given if given is not None else load_contract(model_path, self.metadata)

    @property
    def device(self) -> str:
        """Where it runs, for logs and diagnostics, e.g. ``"cpu"`` or ``"cuda:0"``."""
        return "cpu"

    @abstractmethod
    def run(self, feeds: Mapping[str, np.ndarray]) -> dict:
        """Run the graph. ``feeds`` maps every input name to an array of its dtype.

        Returns a dict from output name to a numpy array owned by the caller
        (implementations that reuse output buffers must copy).
        """

    def run_outputs(self, feeds: Mapping[str, np.ndarray], names) -> dict:
        """:meth:`run`, returning only the outputs ``names``. Backends that can skip fetching the
        others (ONNX Runtime: the default model's click features, 3.7 MB a frame) override it."""
        out = self.run(feeds)
        return {name: out[name] for name in names}

    def close(self) -> None:
        """Release backend resources. Safe to call twice."""

    def input(self, name: str) -> TensorSpec:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
