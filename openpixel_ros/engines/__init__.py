"""Inference backends behind one named-tensor interface (:class:`Engine`)."""
from .base import Engine, EngineError, TensorSpec

ENGINE_NAMES = ("onnxruntime", "tensorrt")


def create_engine(name: str, model_path, *, device: str = None, threads: int = 0, **options) -> Engine:
    """Build the engine called ``name`` for ``model_path``.

    ``device`` defaults to the backend's own: cpu for onnxruntime, cuda:0 for tensorrt.
    Backends are imported lazily so a machine without TensorRT never imports it.
    Raises EngineError with a one-line message on any failure.
    """
    name = name.lower()
    if name == "onnxruntime":
        from .onnxruntime_engine import OnnxRuntimeEngine
        return OnnxRuntimeEngine(model_path, device=device or "cpu", threads=threads)
    if name == "tensorrt":
        try:
            from .tensorrt_engine import TensorRTEngine
        except ImportError as exc:
            raise EngineError(f"engine 'tensorrt' unavailable ({exc}); use engine: onnxruntime") from None
        return TensorRTEngine(model_path, device=device or "cuda", **options)
    raise EngineError(f"unknown engine {name!r}; choose one of: {', '.join(ENGINE_NAMES)}")


__all__ = ["Engine", "EngineError", "TensorSpec", "ENGINE_NAMES", "create_engine"]
