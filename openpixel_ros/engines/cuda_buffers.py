"""Tensor buffers for the TensorRT engine: planning (pure Python) and CUDA allocation.

The planning half (dtype mapping, byte sizes, shape resolution against the
optimization profile) needs neither CUDA nor TensorRT, so it is unit-tested on
any machine. The allocation half imports NVIDIA's ``cuda-python`` lazily, inside
:func:`load_cudart`, and allocates every buffer once, at the profile's maximum
shape: a device buffer per tensor plus a page-locked host buffer that numpy
views, so a frame costs two async copies per tensor and no allocation.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from .base import EngineError

FALLBACK_HINT = "use engine: onnxruntime"

# TensorRT DataType names -> numpy. BF16, FP8, INT4 and FP4 have no numpy dtype.
TRT_NUMPY_DTYPES = {
    "FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "UINT8": np.uint8,
    "INT32": np.int32, "INT64": np.int64, "BOOL": np.bool_,
}


def numpy_dtype(trt_dtype_name: str, tensor: str = "") -> np.dtype:
    """numpy dtype for a TensorRT ``DataType`` name (``trt.DataType.FLOAT.name`` is ``"FLOAT"``)."""
    try:
        return np.dtype(TRT_NUMPY_DTYPES[trt_dtype_name])
    except KeyError:
        where = f"tensor {tensor!r} has " if tensor else ""
        raise EngineError(f"{where}TensorRT type {trt_dtype_name}, which numpy cannot hold; "
                          f"export the model with float32/float16 inputs and outputs") from None


def volume(shape: Sequence[int]) -> int:
    """Number of elements of a fully known shape."""
    n = 1
    for d in shape:
        if d is None or d < 0:
            raise ValueError(f"shape {tuple(shape)} has unresolved dimensions")
        n *= int(d)
    return n


def tensor_nbytes(shape: Sequence[int], dtype) -> int:
    return volume(shape) * np.dtype(dtype).itemsize


def format_shape(shape: Sequence) -> str:
    """``(1, 3, ?, ?)`` style, ``?`` for dynamic dimensions."""
    return "(" + ", ".join("?" if d is None or d < 0 else str(d) for d in shape) + ")"


def resolve_shape(name: str, declared: Sequence, actual: Sequence[int]) -> tuple:
    """The concrete shape of a feed, checked against the engine's declared shape.

    ``declared`` holds ints for fixed dimensions and None (or -1) for dynamic ones.
    """
    actual = tuple(int(d) for d in actual)
    if len(actual) != len(declared) or any(
            d is not None and d >= 0 and d != a for d, a in zip(declared, actual)):
        raise EngineError(f"input {name!r} has shape {actual}, engine expects {format_shape(declared)}")
    return actual


def check_in_profile(name: str, shape: Sequence[int], min_shape: Sequence[int], max_shape: Sequence[int]) -> None:
    """Raise a one-line EngineError when ``shape`` lies outside the optimization profile."""
    if len(shape) != len(min_shape) or any(
            not lo <= s <= hi for s, lo, hi in zip(shape, min_shape, max_shape)):
        raise EngineError(
            f"input {name!r} shape {tuple(shape)} is outside the engine's optimization profile "
            f"{tuple(min_shape)}..{tuple(max_shape)}; rebuild the engine with a wider "
            f"--min-shape/--max-shape (or --profile)")


@dataclass(frozen=True)
class BufferPlan:
    """One engine tensor's buffer: allocated once for ``max_shape``."""

    name: str
    is_input: bool
    dtype: np.dtype
    max_shape: tuple

    @property
    def nbytes(self) -> int:
        return tensor_nbytes(self.max_shape, self.dtype)

    @property
    def max_elements(self) -> int:
        return volume(self.max_shape)


def plan_buffers(tensors: Sequence[tuple]) -> tuple:
    """Buffer plans from ``(name, is_input, dtype, max_shape)`` tuples; names must be unique
    and every shape fully known (dynamic dimensions already replaced by the profile maximum)."""
    plans, seen = [], set()
    for name, is_input, dtype, max_shape in tensors:
        if name in seen:
            raise EngineError(f"engine has two tensors named {name!r}")
        seen.add(name)
        max_shape = tuple(int(d) for d in max_shape)
        if any(d < 0 for d in max_shape):
            kind = "input" if is_input else "output"
            raise EngineError(f"{kind} {name!r} has no upper bound on its shape {format_shape(max_shape)} "
                              f"(data-dependent shapes are not supported)")
        plans.append(BufferPlan(name, bool(is_input), np.dtype(dtype), max_shape))
    return tuple(plans)


def total_nbytes(plans: Sequence[BufferPlan]) -> int:
    return sum(p.nbytes for p in plans)


# -- CUDA (cuda-python, imported lazily) --------------------------------------------------
def load_cudart():
    """NVIDIA cuda-python's runtime module, or a one-line EngineError naming the fallback."""
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python 12.x layout
        except ImportError as exc:
            raise EngineError(f"cuda-python is not installed ({exc}): pip install 'cuda-python>=12.6,<13' "
                              f"(see docs/tensorrt.md), or {FALLBACK_HINT}") from None
    return cudart


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _error_text(cudart, err) -> str:
    """``cudaErrorMemoryAllocation: out of memory`` style text for a cuda-python error code."""
    return f"{_text(cudart.cudaGetErrorName(err)[1])}: {_text(cudart.cudaGetErrorString(err)[1])}"


def cuda_check(cudart, result, what: str):
    """Unpack a cuda-python ``(err, value...)`` tuple; raise EngineError unless it succeeded."""
    err, *values = result
    if err != cudart.cudaError_t.cudaSuccess:
        raise EngineError(f"CUDA {what} failed ({_error_text(cudart, err)})")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def device_properties(device_id: int = 0, cudart=None) -> tuple:
    """``(gpu_name, "major.minor")`` of CUDA device ``device_id``; EngineError when none is usable."""
    cudart = cudart or load_cudart()
    err, count = cudart.cudaGetDeviceCount()
    if err != cudart.cudaError_t.cudaSuccess:
        raise EngineError(f"no usable CUDA GPU ({_error_text(cudart, err)}); {FALLBACK_HINT}")
    if not 0 <= device_id < count:
        raise EngineError(f"CUDA device {device_id} does not exist ({count} found); {FALLBACK_HINT}")
    prop = cuda_check(cudart, cudart.cudaGetDeviceProperties(device_id), "cudaGetDeviceProperties")
    name = prop.name.split(b"\0")[0].decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
    return name.strip(), f"{prop.major}.{prop.minor}"


def _memory_info(cudart) -> str:
    err, free, total = cudart.cudaMemGetInfo()
    if err != cudart.cudaError_t.cudaSuccess:
        return "free memory unknown"
    return f"{free / 2**20:.0f} MiB free of {total / 2**20:.0f} MiB"


class CudaStream:
    """One non-blocking CUDA stream."""

    def __init__(self, cudart):
        self._cudart = cudart
        self.handle = cuda_check(cudart, cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking),
                                 "cudaStreamCreateWithFlags")

    def __int__(self) -> int:
        return int(self.handle)

    def synchronize(self) -> None:
        cuda_check(self._cudart, self._cudart.cudaStreamSynchronize(self.handle), "cudaStreamSynchronize")

    def destroy(self) -> None:
        if self.handle is not None:
            self._cudart.cudaStreamDestroy(self.handle)
            self.handle = None


class TensorBuffers:
    """Device + page-locked host memory for every planned tensor, allocated once."""

    def __init__(self, cudart, plans: Sequence[BufferPlan]):
        self._cudart = cudart
        self.plans = {p.name: p for p in plans}
        self.device_ptrs: dict = {}
        self._host_ptrs: dict = {}
        self._host_arrays: dict = {}
        try:
            for plan in plans:
                self._allocate(plan)
        except EngineError:
            self.free()
            raise

    def _allocate(self, plan: BufferPlan) -> None:
        cudart = self._cudart
        nbytes = max(plan.nbytes, 1)
        err, dptr = cudart.cudaMalloc(nbytes)
        if err != cudart.cudaError_t.cudaSuccess:
            raise EngineError(f"out of GPU memory allocating {nbytes / 2**20:.1f} MiB for tensor {plan.name!r} "
                              f"({_memory_info(cudart)}; {_error_text(cudart, err)})")
        self.device_ptrs[plan.name] = int(dptr)
        err, hptr = cudart.cudaMallocHost(nbytes)
        if err != cudart.cudaError_t.cudaSuccess:
            raise EngineError(f"cannot allocate {nbytes / 2**20:.1f} MiB of page-locked host memory for "
                              f"tensor {plan.name!r} ({_error_text(cudart, err)})")
        self._host_ptrs[plan.name] = int(hptr)
        raw = (ctypes.c_byte * nbytes).from_address(int(hptr))
        self._host_arrays[plan.name] = np.frombuffer(raw, dtype=plan.dtype, count=plan.max_elements)

    def host_view(self, name: str, shape: Sequence[int]) -> np.ndarray:
        """A numpy view of the first ``volume(shape)`` elements of ``name``'s pinned buffer."""
        count = volume(shape)
        if count > self.plans[name].max_elements:
            raise EngineError(f"tensor {name!r} needs shape {tuple(shape)}, larger than its buffer "
                              f"{self.plans[name].max_shape}")
        return self._host_arrays[name][:count].reshape(shape)

    def upload(self, name: str, nbytes: int, stream: CudaStream) -> None:
        cudart = self._cudart
        cuda_check(cudart, cudart.cudaMemcpyAsync(self.device_ptrs[name], self._host_ptrs[name], nbytes,
                                                  cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, stream.handle),
                   f"copy of {name!r} to the GPU")

    def download(self, name: str, nbytes: int, stream: CudaStream) -> None:
        cudart = self._cudart
        cuda_check(cudart, cudart.cudaMemcpyAsync(self._host_ptrs[name], self.device_ptrs[name], nbytes,
                                                  cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream.handle),
                   f"copy of {name!r} from the GPU")

    def free(self) -> None:
        """Release every buffer. Safe to call twice."""
        self._host_arrays.clear()
        for ptr in self.device_ptrs.values():
            self._cudart.cudaFree(ptr)
        for ptr in self._host_ptrs.values():
            self._cudart.cudaFreeHost(ptr)
        self.device_ptrs.clear()
        self._host_ptrs.clear()


class DeviceStaging:
    """Device buffers for INT8 calibration batches: one per input, filled synchronously."""

    def __init__(self, cudart, nbytes_by_name: Mapping[str, int]):
        self._cudart = cudart
        self.ptrs: dict = {}
        try:
            for name, nbytes in nbytes_by_name.items():
                err, ptr = cudart.cudaMalloc(max(int(nbytes), 1))
                if err != cudart.cudaError_t.cudaSuccess:
                    raise EngineError(f"out of GPU memory for the calibration batch of {name!r} "
                                      f"({_memory_info(cudart)})")
                self.ptrs[name] = int(ptr)
        except EngineError:
            self.free()
            raise

    def fill(self, name: str, array: np.ndarray) -> int:
        """Copy ``array`` into ``name``'s device buffer; returns the device pointer."""
        array = np.ascontiguousarray(array)
        cuda_check(self._cudart, self._cudart.cudaMemcpy(self.ptrs[name], array.ctypes.data, array.nbytes,
                                                         self._cudart.cudaMemcpyKind.cudaMemcpyHostToDevice),
                   f"copy of calibration batch {name!r}")
        return self.ptrs[name]

    def free(self) -> None:
        for ptr in self.ptrs.values():
            self._cudart.cudaFree(ptr)
        self.ptrs.clear()


def set_device(cudart, device_id: int) -> None:
    """Make ``device_id`` current for the calling thread (the runtime API is per thread)."""
    cuda_check(cudart, cudart.cudaSetDevice(int(device_id)), f"cudaSetDevice({device_id})")


__all__ = [
    "TRT_NUMPY_DTYPES", "numpy_dtype", "volume", "tensor_nbytes", "format_shape", "resolve_shape",
    "check_in_profile", "BufferPlan", "plan_buffers", "total_nbytes", "load_cudart", "cuda_check",
    "device_properties", "CudaStream", "TensorBuffers", "DeviceStaging", "set_device",
]
