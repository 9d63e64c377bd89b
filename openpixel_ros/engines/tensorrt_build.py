"""Build TensorRT engines from a :class:`~openpixel_ros.engines.tensorrt_plan.BuildPlan`: precision,
INT8 calibration, timing cache, the engine cache.

The builder imports ``tensorrt`` and ``cuda-python`` only when called; everything
that can be decided without them is planned in :mod:`openpixel_ros.engines.tensorrt_plan`.

TensorRT 10.x is required: 11.x removed the FP16/INT8 builder flags and the
calibrator API in favour of strongly typed (pre-quantized) ONNX, so there only
``fp32`` builds work (a clear error says so).
"""
from __future__ import annotations

import collections
import hashlib
import logging
import threading
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

from .base import EngineError
from .cuda_buffers import FALLBACK_HINT
from .tensorrt_cache import (RuntimeIdentity, cache_key, cached_engine_path, file_sha256, make_manifest,
                             read_manifest, stale_reasons, timing_cache_path, write_atomic, write_manifest)
from .tensorrt_plan import BuildPlan, CalibrationBatches, prepare_build

LOG = logging.getLogger("openpixel_ros.tensorrt")

MIN_TENSORRT_MAJOR = 10


# -- TensorRT (imported lazily) -------------------------------------------------------------
def load_tensorrt():
    """The ``tensorrt`` module (10.x or later), or a one-line EngineError naming the fallback."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise EngineError(f"TensorRT is not available ({exc}): install its Python bindings "
                          f"(docs/tensorrt.md; on Jetson: apt python3-libnvinfer), or {FALLBACK_HINT}") from None
    major = int(str(trt.__version__).split(".")[0])
    if major < MIN_TENSORRT_MAJOR:
        raise EngineError(f"TensorRT {trt.__version__} is too old: this backend needs TensorRT 10 "
                          f"(JetPack 6.1 or later), or {FALLBACK_HINT}")
    return trt


class _TrtLogRelay:
    """Forwards TensorRT's log to Python logging and remembers recent errors for messages.

    TensorRT treats the logger as a process-wide singleton (the first one passed to a
    builder or runtime is used by all), so there is exactly one instance.
    """

    _instance = None
    _lock = threading.Lock()

    @classmethod
    def get(cls, trt):
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls._make(trt)
            return cls._instance

    @staticmethod
    def _make(trt):
        severity = trt.ILogger.Severity
        levels = {severity.INTERNAL_ERROR: logging.ERROR, severity.ERROR: logging.ERROR,
                  severity.WARNING: logging.WARNING, severity.INFO: logging.DEBUG,
                  severity.VERBOSE: logging.DEBUG}
        errors_at = {severity.INTERNAL_ERROR, severity.ERROR}

        class Relay(trt.ILogger):
            def __init__(self):
                trt.ILogger.__init__(self)
                self.count = 0
                self.errors = collections.deque(maxlen=20)  # (sequence number, message)

            def log(self, sev, msg):
                if sev == severity.VERBOSE:
                    return  # thousands per build; never wanted in a node's log
                self.count += 1
                if sev in errors_at:
                    self.errors.append((self.count, " ".join(str(msg).split())))
                LOG.log(levels.get(sev, logging.DEBUG), "TensorRT: %s", msg)

            def mark(self) -> int:
                return self.count

            def last_error(self, since: int) -> str:
                """The most recent error logged after ``mark()`` returned ``since``, or ""."""
                recent = [m for n, m in self.errors if n > since]
                return recent[-1] if recent else ""

        return Relay()


def trt_logger(trt):
    """The process-wide TensorRT logger (see :class:`_TrtLogRelay`)."""
    return _TrtLogRelay.get(trt)


def runtime_identity(trt, device_id: int = 0, cudart=None) -> RuntimeIdentity:
    """This machine's GPU model and TensorRT version."""
    from .cuda_buffers import device_properties

    name, capability = device_properties(device_id, cudart)
    return RuntimeIdentity(gpu_name=name, compute_capability=capability, tensorrt_version=str(trt.__version__))


def _precision_flags(trt, precision: str) -> list:
    wanted = {"fp32": [], "fp16": ["FP16"], "int8": ["FP16", "INT8"]}[precision]
    missing = [f for f in wanted if not hasattr(trt.BuilderFlag, f)]
    if missing:
        raise EngineError(f"precision {precision} needs TensorRT 10's {'/'.join(missing)} builder flag(s), "
                          f"which TensorRT {trt.__version__} removed (strongly typed networks only): "
                          f"build with --precision fp32, or convert the ONNX to fp16 / Q-DQ int8 first")
    return [getattr(trt.BuilderFlag, f) for f in wanted]


def _make_calibrator(trt, cudart, batches: Optional[CalibrationBatches], cache_path: Optional[Path],
                     log: Callable[[str], None]):
    """An IInt8EntropyCalibrator2 fed by ``batches``, reading/writing ``cache_path``."""
    from .cuda_buffers import DeviceStaging

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.staging = DeviceStaging(cudart, batches.nbytes()) if batches else None
            self.batches = iter(batches) if batches else iter(())
            self.count = 0
            self.error = None  # raised after the build: exceptions must not cross into TensorRT

        def get_batch_size(self):
            return 1

        def get_batch(self, names):
            try:
                feeds = next(self.batches)
                self.count += 1
                if self.count % 50 == 0:
                    log(f"calibrated {self.count} images")
                return [self.staging.fill(name, feeds[name]) for name in names]
            except StopIteration:
                return None
            except Exception as exc:  # ends calibration; reported by build_engine
                self.error = exc
                return None

        def read_calibration_cache(self):
            if cache_path and cache_path.is_file():
                log(f"using INT8 calibration cache {cache_path} (delete it to recalibrate)")
                return cache_path.read_bytes()
            return None

        def write_calibration_cache(self, cache):
            if cache_path:
                write_atomic(cache_path, bytes(cache))
                log(f"wrote INT8 calibration cache {cache_path}")

        def free(self):
            if self.staging:
                self.staging.free()

    return EntropyCalibrator()


def _first_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text or "no detail"


def build_engine(plan: BuildPlan, engine_path, *, runtime: RuntimeIdentity, workspace_mb: int = 1024,
                 timing_cache=None, device_id: int = 0, log: Optional[Callable[[str], None]] = None) -> dict:
    """Build, serialize and write the engine for ``plan``; returns the manifest written beside it.

    Writes ``engine_path``, ``<engine>.manifest.json``, the model contract as
    ``<engine stem>.json`` (when the ONNX has one and it is not already there), the
    updated ``timing_cache`` and, for INT8, the calibration cache.
    """
    from .cuda_buffers import load_cudart, set_device

    log = log or LOG.info
    trt = load_tensorrt()
    cudart = load_cudart()
    set_device(cudart, device_id)
    engine_path = Path(engine_path)
    logger = trt_logger(trt)
    mark = logger.mark()

    def failure(what: str) -> EngineError:
        return EngineError(f"{what}: {_first_line(logger.last_error(mark))}")

    builder = trt.Builder(logger)
    if builder is None:
        raise failure("cannot create a TensorRT builder")
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(plan.onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineError(f"TensorRT cannot parse {plan.onnx_path.name}: "
                          f"{_first_line(errors[0] if errors else logger.last_error(mark))}")
    network_inputs = {network.get_input(i).name for i in range(network.num_inputs)}
    expected = {spec.name for spec in plan.inputs}
    if network_inputs != expected:
        raise EngineError(f"TensorRT sees inputs {sorted(network_inputs)}, the ONNX graph declares {sorted(expected)}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    for flag in _precision_flags(trt, plan.settings.precision):
        config.set_flag(flag)
    if plan.settings.precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # fp32 means IEEE fp32, not TF32 tensor-core maths
    if plan.profile_plan.profiles:
        profile = builder.create_optimization_profile()
        for p in plan.profile_plan.profiles:
            profile.set_shape(p.name, p.min, p.opt, p.max)
        config.add_optimization_profile(profile)
    for note in plan.profile_plan.notes:
        log(note)

    timing_cache = Path(timing_cache) if timing_cache else None
    cache_bytes = timing_cache.read_bytes() if timing_cache and timing_cache.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    if not config.set_timing_cache(cache, False):
        log(f"timing cache {timing_cache} is from another GPU or TensorRT version; starting a new one")
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)

    calibrator = batches = None
    if plan.settings.precision == "int8":
        calib_shapes = plan.calibration_shapes()
        if plan.calib_images:
            # Images are read only if TensorRT asks for batches (no usable calibration cache).
            batches = CalibrationBatches(plan.onnx_path, plan.calib_images, calib_shapes)
            log(f"INT8 calibration data: {len(plan.calib_images)} images at {calib_shapes}")
        calibrator = _make_calibrator(trt, cudart, batches, plan.calib_cache, log)
        config.int8_calibrator = calibrator
        if plan.profile_plan.profiles:
            # Calibration runs at one shape per input: the profile's opt shape.
            calib_profile = builder.create_optimization_profile()
            for name, shape in calib_shapes.items():
                if plan.profile_plan.for_input(name):
                    calib_profile.set_shape(name, shape, shape, shape)
            config.set_calibration_profile(calib_profile)

    log(f"building TensorRT {plan.settings.precision} engine for {plan.onnx_path.name} on "
        f"{runtime.describe()} (one-time; may take minutes)")
    start = time.perf_counter()
    try:
        serialized = builder.build_serialized_network(network, config)
    finally:
        if calibrator is not None:
            calibrator.free()
        if batches is not None:
            batches.close()
    seconds = time.perf_counter() - start
    if calibrator is not None and calibrator.error is not None:
        raise EngineError(f"INT8 calibration failed: {_first_line(calibrator.error)}")
    if serialized is None:
        raise failure(f"TensorRT could not build {plan.onnx_path.name} ({plan.settings.precision})")
    data = bytes(serialized)
    log(f"built {engine_path.name} in {seconds:.1f} s ({len(data) / 2**20:.1f} MiB)")

    if timing_cache:
        write_atomic(timing_cache, bytes(config.get_timing_cache().serialize()))
    write_atomic(engine_path, data)
    key = cache_key(plan.onnx_sha256, plan.settings, runtime)
    manifest = make_manifest(
        key=key, engine_sha256=hashlib.sha256(data).hexdigest(), onnx_path=plan.onnx_path.resolve(),
        onnx_sha256=plan.onnx_sha256, settings=plan.settings, runtime=runtime,
        inputs=[s.name for s in plan.inputs], outputs=[s.name for s in plan.outputs], metadata=plan.metadata,
        build_seconds=seconds, workspace_mb=workspace_mb,
        built_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    write_manifest(engine_path, manifest)
    _write_contract_beside(plan, engine_path)
    return manifest


def _write_contract_beside(plan: BuildPlan, engine_path: Path) -> None:
    """Copy the model contract next to the engine, so the engine file alone is enough."""
    from ..model_contract import sidecar_path

    target = sidecar_path(engine_path)
    if plan.contract_json is None or target.resolve() == sidecar_path(plan.onnx_path).resolve():
        return
    write_atomic(target, plan.contract_json.encode())
    LOG.info("wrote the model contract beside the engine: %s", target)


def ensure_cached_engine(onnx_path, *, cache_dir, runtime: RuntimeIdentity, precision: str = "fp16",
                         min_hw=None, opt_hw=None, max_hw=None, tensor_profiles=None, calib_images=None,
                         workspace_mb: int = 1024, device_id: int = 0, rebuild: bool = False,
                         log: Optional[Callable[[str], None]] = None) -> tuple:
    """The cached engine for this ONNX file and these settings, built first when missing or stale.

    Returns ``(engine_path, manifest, built)``.
    """
    log = log or LOG.info
    cache_dir = Path(cache_dir)
    plan = prepare_build(onnx_path, precision=precision, min_hw=min_hw, opt_hw=opt_hw, max_hw=max_hw,
                         tensor_profiles=tensor_profiles, calib_images=calib_images)
    key = cache_key(plan.onnx_sha256, plan.settings, runtime)
    if plan.settings.precision == "int8":
        # One calibration cache per model, data and TensorRT version (the key covers all three).
        plan = replace(plan, calib_cache=cache_dir / f"{Path(onnx_path).stem}-{key[:16]}.calib")
    engine_path = cached_engine_path(cache_dir, onnx_path, key)
    if engine_path.is_file() and not rebuild:
        try:
            manifest = read_manifest(engine_path)
        except EngineError as exc:
            manifest, reasons = None, [str(exc)]
        else:
            reasons = ["it has no manifest"] if manifest is None else stale_reasons(
                manifest, key=key, onnx_sha256=plan.onnx_sha256, settings=plan.settings, runtime=runtime,
                engine_sha256=file_sha256(engine_path))
        if not reasons:
            return engine_path, manifest, False
        log(f"cached engine {engine_path.name} is stale ({'; '.join(reasons)}): rebuilding")
    manifest = build_engine(plan, engine_path, runtime=runtime, workspace_mb=workspace_mb,
                            timing_cache=timing_cache_path(cache_dir, runtime), device_id=device_id, log=log)
    return engine_path, manifest, True


__all__ = ["load_tensorrt", "trt_logger", "runtime_identity", "build_engine", "ensure_cached_engine"]
