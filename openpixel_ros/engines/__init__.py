"""Inference backends behind one named-tensor interface (:class:`Engine`), and their registry.

The same pattern as the prompt engines' (:mod:`openpixel_ros.interactive`): a name maps to a
factory, and backends are imported lazily so a machine without TensorRT never imports it.
"""
from typing import Callable, Dict

from .base import Engine, EngineError, TensorSpec

#: The backends the node offers (opencv-dnn is evaluation-only).
ENGINE_NAMES = ("onnxruntime", "tensorrt")


def _create_onnxruntime(model_path, *, device=None, threads=0, **options) -> Engine:
    from .onnxruntime_engine import OnnxRuntimeEngine
    return OnnxRuntimeEngine(model_path, device=device or "cpu", threads=threads)  # options: TensorRT's


def _create_tensorrt(model_path, *, device=None, threads=0, **options) -> Engine:
    try:
        from .tensorrt_engine import TensorRTEngine
    except ImportError as exc:
        raise EngineError(f"engine 'tensorrt' unavailable ({exc}); use engine: onnxruntime") from None
    return TensorRTEngine(model_path, device=device or "cuda", **options)


def _create_opencv_dnn(model_path, *, device=None, threads=0, **options) -> Engine:
    # Evaluation only: reference models ONNX Runtime cannot read (the Torch7 ENet).
    from .opencv_dnn import OpenCvDnnEngine
    return OpenCvDnnEngine(model_path, device=device or "cpu", threads=threads, **options)


#: name -> factory(model_path, *, device, threads, **options); more with :func:`register_engine`.
_FACTORIES: Dict[str, Callable[..., Engine]] = {
    "onnxruntime": _create_onnxruntime,
    "tensorrt": _create_tensorrt,
    "opencv-dnn": _create_opencv_dnn,
}


def engine_names() -> tuple:
    """Every registered engine name."""
    return tuple(_FACTORIES)


def register_engine(name: str, factory: Callable[..., Engine]) -> None:
    """Register (or replace) ``factory(model_path, *, device, threads, **options) -> Engine`` under ``name``."""
    _FACTORIES[name.lower()] = factory


def create_engine(name: str, model_path, *, device: str = None, threads: int = 0, **options) -> Engine:
    """Build the engine called ``name`` for ``model_path``.

    ``device`` defaults to the backend's own: cpu for onnxruntime, cuda:0 for tensorrt.
    Raises EngineError with a one-line message on any failure.
    """
    factory = _FACTORIES.get(str(name).lower())
    if factory is None:
        raise EngineError(f"unknown engine {name!r}; choose one of: {', '.join(_FACTORIES)}")
    return factory(model_path, device=device, threads=threads, **options)


__all__ = ["Engine", "EngineError", "TensorSpec", "ENGINE_NAMES", "create_engine", "register_engine",
           "engine_names"]
