"""TensorRT engine (TensorRT 10 named-tensor API, NVIDIA cuda-python for memory and streams).

Given an ONNX file, the engine is built once for this GPU and TensorRT version
and cached (see :mod:`.tensorrt_cache`); given a serialized engine
(``.engine``/``.plan``/``.trt``), it is checked against its manifest and this
machine before use. At run time every tensor has a device buffer and a
page-locked host buffer sized for the optimization profile's maximum, allocated
once; a frame is: copy feeds into the pinned buffers, ``set_input_shape`` where
a shape changed, async host-to-device copies, ``execute_async_v3`` on the
engine's own CUDA stream, async device-to-host copies, one synchronize.

``tensorrt`` and ``cuda-python`` are imported when an engine is created, not when
this module is imported, and their absence is a one-line EngineError that names
the fallback ``engine: onnxruntime``.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Callable, Mapping, Optional

import numpy as np

from .base import Engine, EngineError, TensorSpec
from .cuda_buffers import (CudaStream, TensorBuffers, check_in_profile, load_cudart, numpy_dtype, plan_buffers,
                           resolve_shape, set_device, tensor_nbytes)
from .tensorrt_build import ensure_cached_engine, load_tensorrt, runtime_identity, trt_logger
from .tensorrt_plan import PRECISIONS, parse_hw, parse_tensor_profile
from .tensorrt_cache import engine_cache_dir, file_sha256, is_engine_file, read_manifest, runtime_mismatches

LOG = logging.getLogger("openpixel_ros.tensorrt")


def parse_device(device: str) -> int:
    """``"cuda"`` -> 0, ``"cuda:N"`` -> N; anything else is an EngineError."""
    device = str(device).strip().lower()
    if device == "cuda":
        return 0
    if device.startswith("cuda:") and device[5:].isdigit():
        return int(device[5:])
    raise EngineError(f"engine 'tensorrt' runs on a CUDA GPU: device must be cuda or cuda:N, not {device!r}")


def _normalise_profiles(profiles) -> dict:
    """``profiles`` as given by a caller: ``{name: "MIN:OPT:MAX"}``, or a list of ``"NAME=MIN:OPT:MAX"``."""
    if not profiles:
        return {}
    if isinstance(profiles, Mapping):
        items = [f"{name}={value}" for name, value in profiles.items()]
    else:
        items = list(profiles)
    parsed = [parse_tensor_profile(item) for item in items]
    return {p.name: p for p in parsed}


class TensorRTEngine(Engine):
    """Runs a TensorRT engine built from an ONNX file (cached) or loaded from an engine file.

    Options (all keyword): ``precision`` fp32|fp16|int8 (ONNX input only; int8 needs
    ``calib_images``), ``min_shape``/``opt_shape``/``max_shape`` as ``"HxW"`` for a
    dynamic image input, ``profiles`` for other dynamic inputs
    (``{"points": "1x1x2:1x4x2:1x16x2"}``), ``workspace_mb``, ``cache_dir`` (default
    :func:`~.tensorrt_cache.engine_cache_dir`), ``rebuild`` (ignore a cached engine),
    ``device`` ``cuda``/``cuda:N``, and ``log``, a callable for the one-time build
    messages (default: Python logging at INFO).

    ``build_info`` says whether this start built the engine and how long it took.
    """

    backend = "tensorrt"

    def __init__(self, model_path, *, precision: str = "fp16", min_shape: Optional[str] = None,
                 opt_shape: Optional[str] = None, max_shape: Optional[str] = None, profiles=None,
                 calib_images=None, workspace_mb: int = 1024, cache_dir=None, rebuild: bool = False,
                 device: str = "cuda", log: Optional[Callable[[str], None]] = None):
        self._closed = True
        path = Path(model_path)
        if not path.is_file():
            raise EngineError(f"model file not found: {path}")
        is_onnx = path.suffix.lower() == ".onnx"
        if not is_onnx and not is_engine_file(path):
            raise EngineError(f"engine 'tensorrt' needs an .onnx model or a serialized engine "
                              f"(.engine, .plan, .trt), got {path.name}")
        if precision not in PRECISIONS:
            raise EngineError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        hw = [parse_hw(s, f"{n}_shape") for n, s in (("min", min_shape), ("opt", opt_shape), ("max", max_shape))]
        tensor_profiles = _normalise_profiles(profiles)
        self._device_id = parse_device(device)
        self._lock = threading.Lock()
        self._thread = threading.get_ident()
        log = log or LOG.info

        trt = load_tensorrt()
        cudart = load_cudart()
        set_device(cudart, self._device_id)
        runtime = runtime_identity(trt, self._device_id, cudart)
        self._trt, self._cudart = trt, cudart

        if is_onnx:
            engine_path, manifest, built = ensure_cached_engine(
                path, cache_dir=Path(cache_dir) if cache_dir else engine_cache_dir(), runtime=runtime,
                precision=precision, min_hw=hw[0], opt_hw=hw[1], max_hw=hw[2], tensor_profiles=tensor_profiles,
                calib_images=calib_images, workspace_mb=workspace_mb, device_id=self._device_id,
                rebuild=rebuild, log=log)
        else:
            engine_path, manifest, built = path, self._check_engine_file(path, runtime), False
        self.engine_path = engine_path
        self.manifest = manifest or {}
        self.build_info = {"engine_path": str(engine_path), "built": built,
                           "build_seconds": self.manifest.get("build_seconds"),
                           "precision": self.manifest.get("precision")}
        self._load(engine_path, runtime)

    # -- loading --------------------------------------------------------------------------
    @staticmethod
    def _check_engine_file(path: Path, runtime) -> Optional[dict]:
        """Refuse an engine file whose manifest says it belongs elsewhere, or does not match it."""
        manifest = read_manifest(path)
        if manifest is None:
            return None
        rebuild = (f"rebuild it here: python -m openpixel_ros.export --onnx {manifest.get('onnx_path', 'MODEL.onnx')} "
                   f"--engine {path} --precision {manifest.get('precision', 'fp16')}")
        reasons = runtime_mismatches(manifest, runtime)
        if reasons:
            raise EngineError(f"TensorRT engine {path.name} is not for this machine ({'; '.join(reasons)}); {rebuild}")
        if manifest.get("engine_sha256") != file_sha256(path):
            raise EngineError(f"TensorRT engine {path.name} does not match its manifest (replaced or corrupted); "
                              f"{rebuild}")
        return manifest

    def _load(self, engine_path: Path, runtime) -> None:
        trt, cudart = self._trt, self._cudart
        logger = trt_logger(trt)
        mark = logger.mark()
        self._runtime = trt.Runtime(logger)
        self._engine = self._runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self._engine is None:
            detail = logger.last_error(mark) or "no detail from TensorRT"
            raise EngineError(
                f"cannot load TensorRT engine {engine_path.name} ({' '.join(detail.split())}); it was probably "
                f"built for another GPU or TensorRT version (this machine: {runtime.describe()}): rebuild it "
                f"with python -m openpixel_ros.export --onnx MODEL.onnx --engine {engine_path}")
        self._context = self._engine.create_execution_context()
        if self._context is None:
            detail = logger.last_error(mark) or "out of GPU memory?"
            raise EngineError(f"cannot create a TensorRT execution context for {engine_path.name} "
                              f"({' '.join(detail.split())})")
        self._closed = False
        try:
            self._inspect(engine_path)
            self._stream = CudaStream(cudart)
            self._buffers = TensorBuffers(cudart, self._plan_buffers())
            for name, ptr in self._buffers.device_ptrs.items():
                if not self._context.set_tensor_address(name, ptr):
                    raise EngineError(f"TensorRT refused the buffer address of tensor {name!r}")
        except BaseException:
            self.close()
            raise

    def _inspect(self, engine_path: Path) -> None:
        """Read the engine's I/O tensors and profile, and check them against the manifest."""
        trt, engine = self._trt, self._engine
        inputs, outputs = [], []
        self._profile = {}  # input name -> (min, max) for dynamic inputs
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            shape = tuple(int(d) for d in engine.get_tensor_shape(name))
            dtype = numpy_dtype(engine.get_tensor_dtype(name).name, name)
            spec = TensorSpec(name, tuple(d if d >= 0 else None for d in shape), dtype)
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                if engine.is_shape_inference_io(name):
                    raise EngineError(f"engine input {name!r} is a shape tensor, which this backend does not feed")
                if spec.is_dynamic:
                    lo, _, hi = engine.get_tensor_profile_shape(name, 0)
                    self._profile[name] = (tuple(int(d) for d in lo), tuple(int(d) for d in hi))
                inputs.append(spec)
            else:
                outputs.append(spec)
        self._inputs, self._outputs = tuple(inputs), tuple(outputs)
        if self.manifest:
            for kind, expected, actual in (("inputs", self.manifest.get("inputs"), inputs),
                                           ("outputs", self.manifest.get("outputs"), outputs)):
                actual_names = sorted(s.name for s in actual)
                if expected is not None and sorted(expected) != actual_names:
                    raise EngineError(f"TensorRT engine {engine_path.name} has {kind} {actual_names}, its manifest "
                                      f"expects {sorted(expected)}: rebuild it")

    def _plan_buffers(self):
        """Buffer plans at the profile maximum; output maxima come from TensorRT's shape inference."""
        context = self._context
        tensors, self._current_shapes = [], {}
        for spec in self._inputs:
            max_shape = self._profile[spec.name][1] if spec.name in self._profile else spec.shape
            if spec.name in self._profile and not context.set_input_shape(spec.name, max_shape):
                raise EngineError(f"TensorRT rejected the maximum shape {max_shape} of input {spec.name!r}")
            self._current_shapes[spec.name] = tuple(max_shape)
            tensors.append((spec.name, True, spec.dtype, max_shape))
        for spec in self._outputs:
            tensors.append((spec.name, False, spec.dtype, tuple(context.get_tensor_shape(spec.name))))
        return plan_buffers(tensors)

    # -- Engine interface -------------------------------------------------------------------
    @property
    def metadata(self) -> Mapping[str, str]:
        """The source ONNX file's metadata (from the manifest), e.g. the embedded contract."""
        return dict(self.manifest.get("metadata") or {})

    @property
    def device(self) -> str:
        return f"cuda:{self._device_id}"

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict:
        if self._closed:
            raise EngineError("TensorRT engine is closed")
        names = {spec.name for spec in self._inputs}
        if set(feeds) != names:
            missing, extra = sorted(names - set(feeds)), sorted(set(feeds) - names)
            raise EngineError(f"TensorRT feeds do not match the engine inputs (missing {missing}, unknown {extra})")
        with self._lock:
            self._bind_thread()
            context, buffers, stream = self._context, self._buffers, self._stream
            for spec in self._inputs:
                value = np.asarray(feeds[spec.name])
                shape = resolve_shape(spec.name, spec.shape, value.shape)
                if spec.name in self._profile:
                    check_in_profile(spec.name, shape, *self._profile[spec.name])
                if shape != self._current_shapes[spec.name]:
                    if not context.set_input_shape(spec.name, shape):
                        raise EngineError(f"TensorRT rejected shape {shape} for input {spec.name!r}")
                    self._current_shapes[spec.name] = shape
                try:
                    np.copyto(buffers.host_view(spec.name, shape), value, casting="same_kind")
                except TypeError:
                    raise EngineError(f"input {spec.name!r} is {value.dtype}, the engine takes {spec.dtype}") from None
                buffers.upload(spec.name, tensor_nbytes(shape, spec.dtype), stream)
            if not context.execute_async_v3(int(stream)):
                raise EngineError("TensorRT inference failed (execute_async_v3 returned false)")
            out_shapes = {}
            for spec in self._outputs:
                shape = tuple(int(d) for d in context.get_tensor_shape(spec.name))
                buffers.host_view(spec.name, shape)  # raises if the output outgrew its buffer
                buffers.download(spec.name, tensor_nbytes(shape, spec.dtype), stream)
                out_shapes[spec.name] = shape
            stream.synchronize()
            # The pinned buffers are reused by the next frame: hand out copies.
            return {name: buffers.host_view(name, shape).copy() for name, shape in out_shapes.items()}

    def _bind_thread(self) -> None:
        """The CUDA runtime's current device is per thread: set it on a new calling thread."""
        ident = threading.get_ident()
        if ident != self._thread:
            set_device(self._cudart, self._device_id)
            self._thread = ident

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if getattr(self, "_stream", None) is not None and self._stream.handle is not None:
            self._cudart.cudaStreamSynchronize(self._stream.handle)
        # Context before engine before runtime, then the memory they used.
        self._context = None
        self._engine = None
        self._runtime = None
        if getattr(self, "_buffers", None) is not None:
            self._buffers.free()
            self._buffers = None
        if getattr(self, "_stream", None) is not None:
            self._stream.destroy()
            self._stream = None
