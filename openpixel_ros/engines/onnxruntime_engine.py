"""ONNX Runtime engine: CPU everywhere, CUDA when onnxruntime-gpu's provider is present."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from .base import Engine, EngineError, TensorSpec

_ORT_DTYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8, "tensor(bool)": np.bool_,
}


_ORT_FATAL = 4  # ONNX Runtime log severities: 0 verbose, 1 info, 2 warning, 3 error, 4 fatal


def _spec(arg) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) and d >= 0 else None for d in arg.shape)
    return TensorSpec(arg.name, shape, np.dtype(_ORT_DTYPES.get(arg.type, np.float32)))


class OnnxRuntimeEngine(Engine):
    """Runs an ONNX file with ONNX Runtime.

    ``device`` is ``"cpu"`` or ``"cuda"`` (``"cuda:N"`` picks a GPU). Asking for
    CUDA where its provider is absent raises EngineError instead of silently
    falling back, so a misconfigured Jetson is noticed at start-up.
    """

    backend = "onnxruntime"

    def __init__(self, model_path, device: str = "cpu", threads: int = 0, spinning: bool = False):
        try:
            import onnxruntime as ort
        except ImportError:  # pragma: no cover - onnxruntime is a runtime requirement
            raise EngineError("onnxruntime is not installed: pip install onnxruntime") from None
        path = Path(model_path)
        if not path.is_file():
            raise EngineError(f"model file not found: {path}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
        # ORT's own logger prints a coloured line to stderr for every failed run, unthrottled (two a
        # frame for a model that always fails). Only FATAL gets through: a failure reaches the caller
        # as EngineError, whose one line the node logs rate-limited.
        options.log_severity_level = _ORT_FATAL
        # ORT's pool threads busy-wait for work by default. Beside a node's executor, DDS and
        # worker threads (and other processes) they steal the cores the work needs: on this 2-core
        # machine the engine took 1.3-2x longer inside the node than alone (docs/benchmarks.md).
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        device = device.lower()
        if device == "cpu":
            providers = ["CPUExecutionProvider"]
        elif device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise EngineError(
                    "device 'cuda' requested but ONNX Runtime has no CUDAExecutionProvider "
                    "(install onnxruntime-gpu, or set device: cpu)")
            device_id = int(device.split(":")[1]) if ":" in device else 0
            providers = [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]
        else:
            raise EngineError(f"unknown device {device!r} (use cpu, cuda or cuda:N)")
        try:
            self._session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as exc:  # ORT raises several private exception types
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EngineError(f"cannot load ONNX model {path}: {first_line}") from None
        self._run_options = ort.RunOptions()
        self._run_options.log_severity_level = _ORT_FATAL
        self._device = device
        self._inputs = tuple(_spec(a) for a in self._session.get_inputs())
        self._outputs = tuple(_spec(a) for a in self._session.get_outputs())
        self._output_names = [o.name for o in self._outputs]
        self._metadata = dict(self._session.get_modelmeta().custom_metadata_map)

    @property
    def metadata(self) -> Mapping[str, str]:
        return self._metadata

    @property
    def device(self) -> str:
        return self._device

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict:
        return self.run_outputs(feeds, self._output_names)

    def run_outputs(self, feeds: Mapping[str, np.ndarray], names) -> dict:
        names = list(names)
        try:
            values = self._session.run(names, dict(feeds), self._run_options)
        except Exception as exc:
            raise EngineError(f"onnxruntime inference failed: {str(exc).strip().splitlines()[0]}") from None
        return dict(zip(names, values))

    def close(self) -> None:
        self._session = None
