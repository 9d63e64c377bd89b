"""Build TensorRT engines from ONNX: profiles, precision, INT8 calibration, timing cache, cache.

Two halves:

* pure planning, importable and tested without TensorRT: parsing ``HxW`` and
  ``NAME=MIN:OPT:MAX`` options, turning the ONNX graph's dynamic inputs into
  optimization profiles, fingerprinting calibration data, preparing calibration
  batches with the model contract's own pre-processing
  (:meth:`~openpixel_ros.semantic.SemanticSegmenter.preprocess`), and the
  :class:`BuildPlan` whose settings make the engine cache key;
* the builder itself (:func:`build_engine`, :func:`ensure_cached_engine`), which
  imports ``tensorrt`` and ``cuda-python`` only when called.

TensorRT 10.x is required: 11.x removed the FP16/INT8 builder flags and the
calibrator API in favour of strongly typed (pre-quantized) ONNX, so there only
``fp32`` builds work (a clear error says so).
"""
from __future__ import annotations

import collections
import hashlib
import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

import numpy as np

from .base import EngineError, TensorSpec
from .cuda_buffers import FALLBACK_HINT, format_shape, tensor_nbytes
from .tensorrt_cache import (BuildSettings, RuntimeIdentity, TensorProfile, cache_key, cached_engine_path,
                             file_sha256, make_manifest, read_manifest, stale_reasons, timing_cache_path,
                             write_atomic, write_manifest)

LOG = logging.getLogger("openpixel_ros.tensorrt")

PRECISIONS = ("fp32", "fp16", "int8")
MIN_TENSORRT_MAJOR = 10
# Profile defaults for a dynamic image input, (height, width): any camera from QVGA-ish to
# 1080p runs without a rebuild, and kernels are tuned for VGA.
DEFAULT_MIN_HW = (128, 128)
DEFAULT_OPT_HW = (480, 640)
DEFAULT_MAX_HW = (1080, 1920)
MAX_CALIBRATION_IMAGES = 512
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


# -- option parsing ------------------------------------------------------------------------
def parse_dims(text: str, what: str = "shape") -> tuple:
    """``"1x3x480x640"`` -> ``(1, 3, 480, 640)``; every dimension a positive integer."""
    parts = re.split(r"\s*[xX]\s*", str(text).strip())
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        raise EngineError(f"{what} {text!r} is not of the form AxB (positive integers)") from None
    if not dims or any(d < 1 for d in dims):
        raise EngineError(f"{what} {text!r} has a dimension below 1")
    return dims


def parse_hw(text: Optional[str], what: str = "shape") -> Optional[tuple]:
    """``"480x640"`` -> ``(480, 640)`` (height x width); None stays None."""
    if text is None or str(text).strip() == "":
        return None
    dims = parse_dims(text, what)
    if len(dims) != 2:
        raise EngineError(f"{what} {text!r} must be HEIGHTxWIDTH, e.g. 480x640")
    return dims


def parse_tensor_profile(text: str) -> TensorProfile:
    """``"points=1x1x2:1x4x2:1x16x2"`` -> the profile of input ``points`` (min:opt:max)."""
    name, sep, shapes = str(text).partition("=")
    parts = shapes.split(":")
    if not sep or not name.strip() or len(parts) != 3:
        raise EngineError(f"--profile {text!r} must be NAME=MIN:OPT:MAX, e.g. points=1x1x2:1x4x2:1x16x2")
    lo, opt, hi = (parse_dims(p, f"--profile {name.strip()}") for p in parts)
    profile = TensorProfile(name.strip(), lo, opt, hi)
    validate_profile(profile)
    return profile


def validate_profile(profile: TensorProfile) -> None:
    """min <= opt <= max in every dimension, equal ranks; EngineError otherwise."""
    if not len(profile.min) == len(profile.opt) == len(profile.max):
        raise EngineError(f"profile of {profile.name!r}: min {profile.min}, opt {profile.opt} and "
                          f"max {profile.max} differ in rank")
    if any(not 1 <= lo <= o <= hi for lo, o, hi in zip(profile.min, profile.opt, profile.max)):
        raise EngineError(f"profile of {profile.name!r} needs 1 <= min <= opt <= max in every dimension, "
                          f"got min {profile.min}, opt {profile.opt}, max {profile.max}")


# -- ONNX graph inspection (onnx package, no TensorRT) -------------------------------------
def onnx_io_specs(onnx_path) -> tuple:
    """``(inputs, outputs)`` TensorSpecs of an ONNX graph; symbolic or unknown dims are None."""
    import onnx
    from onnx import helper

    model = onnx.load(str(onnx_path), load_external_data=False)
    initializers = {t.name for t in model.graph.initializer}

    def spec(value) -> TensorSpec:
        tensor_type = value.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                      for d in tensor_type.shape.dim)
        try:
            dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor_type.elem_type))
        except (KeyError, TypeError, ValueError):
            dtype = np.dtype(np.float32)
        return TensorSpec(value.name, shape, dtype)

    inputs = tuple(spec(v) for v in model.graph.input if v.name not in initializers)
    outputs = tuple(spec(v) for v in model.graph.output)
    return inputs, outputs


def onnx_metadata(onnx_path) -> dict:
    """The ONNX file's ``metadata_props`` (where the ``openpixel`` contract may be embedded)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def image_axes(shape: Sequence, layout: Optional[str] = None) -> Optional[tuple]:
    """``(height_axis, width_axis)`` of a rank-4 image input, or None for other inputs.

    The layout comes from the model contract when known, else from where the
    3-channel axis is (NCHW unless only the last axis is 3).
    """
    if len(shape) != 4:
        return None
    if layout is None:
        layout = "NHWC" if shape[3] == 3 and shape[1] != 3 else "NCHW"
    return (1, 2) if layout.upper() == "NHWC" else (2, 3)


@dataclass(frozen=True)
class ProfilePlan:
    """Optimization-profile shapes for every dynamic input, plus notes for the log."""

    profiles: tuple = ()
    notes: tuple = ()

    def for_input(self, name: str) -> Optional[TensorProfile]:
        return next((p for p in self.profiles if p.name == name), None)


def _resolve_hw(min_hw, opt_hw, max_hw) -> tuple:
    """Fill unset min/opt/max HxW from the defaults, keeping given values and their order."""
    opt = opt_hw or DEFAULT_OPT_HW
    if opt_hw is None:
        if max_hw is not None:
            opt = tuple(min(o, m) for o, m in zip(opt, max_hw))
        if min_hw is not None:
            opt = tuple(max(o, m) for o, m in zip(opt, min_hw))
    lo = min_hw or tuple(min(d, o) for d, o in zip(DEFAULT_MIN_HW, opt))
    hi = max_hw or tuple(max(d, o) for d, o in zip(DEFAULT_MAX_HW, opt))
    return lo, opt, hi


def plan_profiles(inputs: Sequence[TensorSpec], *, min_hw=None, opt_hw=None, max_hw=None,
                  tensor_profiles: Optional[Mapping[str, TensorProfile]] = None,
                  layouts: Optional[Mapping[str, str]] = None,
                  contract_hw: Optional[Mapping[str, tuple]] = None) -> ProfilePlan:
    """Optimization profiles for the dynamic inputs of a graph.

    * ``tensor_profiles`` (``--profile NAME=MIN:OPT:MAX``) set an input's shapes outright;
    * a dynamic batch dimension is pinned to 1 (the node runs one frame at a time);
    * a rank-4 image input's dynamic height/width take ``min_hw``/``opt_hw``/``max_hw``,
      or the contract's fixed input size when it declares one, or the defaults
      (128x128 / 480x640 / 1080x1920);
    * any other dynamic dimension needs ``--profile`` and raises otherwise.

    Fixed-shape inputs get no profile, and HxW options a fixed-shape model cannot use
    are reported in ``notes``, not applied.
    """
    tensor_profiles = dict(tensor_profiles or {})
    layouts = dict(layouts or {})
    contract_hw = dict(contract_hw or {})
    names = {spec.name for spec in inputs}
    unknown = sorted(set(tensor_profiles) - names)
    if unknown:
        raise EngineError(f"--profile names unknown input(s) {unknown}; model inputs: {sorted(names)}")
    hw_given = any(v is not None for v in (min_hw, opt_hw, max_hw))
    lo_hw, opt_hw_, hi_hw = _resolve_hw(min_hw, opt_hw, max_hw)
    validate_profile(TensorProfile("--min/--opt/--max-shape", lo_hw, opt_hw_, hi_hw))
    profiles, notes, used_hw = [], [], False
    for spec in inputs:
        if spec.name in tensor_profiles:
            profile = tensor_profiles[spec.name]
            validate_profile(profile)
            if len(profile.min) != len(spec.shape) or any(
                    d is not None and not lo == o == hi == d
                    for d, lo, o, hi in zip(spec.shape, profile.min, profile.opt, profile.max)):
                raise EngineError(f"--profile {spec.name}: shapes {profile.min}:{profile.opt}:{profile.max} "
                                  f"do not fit the input's shape {format_shape(spec.shape)}")
            if spec.is_dynamic:
                profiles.append(profile)
            else:
                notes.append(f"--profile {spec.name} ignored: the input has the fixed shape {spec.shape}")
            continue
        if not spec.is_dynamic:
            continue
        axes = image_axes(spec.shape, layouts.get(spec.name))
        lo, opt, hi = list(spec.shape), list(spec.shape), list(spec.shape)
        for axis, dim in enumerate(spec.shape):
            if dim is not None:
                continue
            if axis == 0:
                lo[axis] = opt[axis] = hi[axis] = 1
            elif axes is not None and axis in axes:
                i = axes.index(axis)
                if spec.name in contract_hw and not hw_given:
                    lo[axis] = opt[axis] = hi[axis] = int(contract_hw[spec.name][i])
                else:
                    lo[axis], opt[axis], hi[axis] = lo_hw[i], opt_hw_[i], hi_hw[i]
                    used_hw = True
            else:
                raise EngineError(
                    f"input {spec.name!r} has dynamic shape {format_shape(spec.shape)} whose dimension {axis} "
                    f"is not batch, height or width; give its shapes with --profile {spec.name}=MIN:OPT:MAX")
        profiles.append(TensorProfile(spec.name, tuple(lo), tuple(opt), tuple(hi)))
    if hw_given and not used_hw:
        notes.append("--min/--opt/--max-shape ignored: the model has no dynamic image height/width")
    return ProfilePlan(tuple(profiles), tuple(notes))


# -- calibration data (pure: numpy + OpenCV + ONNX Runtime on the CPU) ---------------------
def list_calibration_images(folder, limit: int = MAX_CALIBRATION_IMAGES) -> list:
    """The first ``limit`` images of ``folder`` in name order; EngineError if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EngineError(f"calibration image folder {folder} does not exist")
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not images:
        raise EngineError(f"calibration image folder {folder} has no images ({', '.join(IMAGE_SUFFIXES)})")
    return images[:limit]


def calibration_fingerprint(images: Sequence) -> str:
    """Hex SHA-256 over the calibration images' names and contents."""
    digest = hashlib.sha256()
    for path in images:
        digest.update(Path(path).name.encode() + b"\0")
        digest.update(bytes.fromhex(file_sha256(path)))
    return digest.hexdigest()


def contract_text(onnx_path, metadata: Mapping[str, str]) -> Optional[str]:
    """The model contract JSON that goes with ``onnx_path``: its sidecar, else the embedded
    ``openpixel`` metadata (the same precedence as :func:`model_contract.load_contract`)."""
    from ..model_contract import METADATA_KEY, sidecar_path

    sidecar = sidecar_path(onnx_path)
    if sidecar.is_file():
        return sidecar.read_text()
    return metadata.get(METADATA_KEY)


class CalibrationBatches:
    """INT8 calibration tensors, pre-processed exactly as the node pre-processes frames.

    Each image is read, resized to the profile's ``opt`` height/width when the model
    takes the frame's own size, and passed through
    :meth:`SemanticSegmenter.preprocess` built on an ONNX Runtime (CPU) session of the
    same model, so normalisation, colour order, layout and letterboxing follow the
    model contract. A conditioning input gets zeros (no adaptation), as at run time.
    """

    def __init__(self, onnx_path, images: Sequence, shapes: Mapping[str, tuple]):
        from ..model_contract import ContractError, load_contract
        from ..semantic import SemanticSegmenter
        from .onnxruntime_engine import OnnxRuntimeEngine

        self.images = list(images)
        self.shapes = {name: tuple(shape) for name, shape in shapes.items()}
        engine = OnnxRuntimeEngine(onnx_path)
        try:
            contract = load_contract(onnx_path, engine.metadata)
            if contract.task != "semantic":
                raise EngineError(f"INT8 calibration supports semantic models; {Path(onnx_path).name} is a "
                                  f"{contract.task!r} model: build it with --precision fp16")
            self.segmenter = SemanticSegmenter(engine, contract)
        except ContractError as exc:
            engine.close()
            raise EngineError(f"INT8 calibration needs the model contract to pre-process images: {exc}") from None
        except EngineError:
            engine.close()
            raise
        self.contract = contract
        self.dtypes = {spec.name: spec.dtype for spec in engine.inputs}
        missing = set(self.dtypes) - set(self.shapes)
        if missing:
            raise EngineError(f"no calibration shape for input(s) {sorted(missing)}")

    def nbytes(self) -> dict:
        """Bytes of one batch per input (for the device staging buffers)."""
        return {name: tensor_nbytes(shape, self.dtypes[name]) for name, shape in self.shapes.items()}

    def batch(self, image_path) -> dict:
        """Input name -> tensor for one calibration image."""
        import cv2

        bgr = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise EngineError(f"cannot read calibration image {image_path}")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        spec = self.contract.input
        shape = self.shapes[spec.name]
        hw = shape[1:3] if spec.layout == "NHWC" else shape[2:4]
        if spec.height is None or spec.width is None:
            # The model takes the frame's own size: calibrate at the profile's opt size.
            if rgb.shape[:2] != tuple(hw):
                rgb = cv2.resize(rgb, (hw[1], hw[0]), interpolation=cv2.INTER_AREA)
        tensor, _ = self.segmenter.preprocess(rgb)
        if tensor.shape != shape:
            raise EngineError(f"calibration tensor for {spec.name!r} has shape {tensor.shape}, "
                              f"the calibration profile needs {shape}")
        feeds = {spec.name: tensor}
        if self.contract.conditioning:
            cond = self.contract.conditioning
            feeds[cond.name] = np.zeros(self.shapes[cond.name], self.dtypes[cond.name])
        return feeds

    def __iter__(self):
        for path in self.images:
            yield self.batch(path)

    def close(self) -> None:
        self.segmenter.engine.close()


# -- the build plan (pure) -------------------------------------------------------------------
@dataclass(frozen=True)
class BuildPlan:
    """What will be built from an ONNX file; ``settings`` feed the cache key."""

    onnx_path: Path
    onnx_sha256: str
    inputs: tuple
    outputs: tuple
    profile_plan: ProfilePlan
    settings: BuildSettings
    metadata: dict = field(default_factory=dict)
    contract_json: Optional[str] = None
    calib_images: tuple = ()
    calib_cache: Optional[Path] = None

    def calibration_shapes(self) -> dict:
        """Input shapes calibration runs at: fixed shapes, or each profile's opt shape."""
        shapes = {}
        for spec in self.inputs:
            profile = self.profile_plan.for_input(spec.name)
            shapes[spec.name] = profile.opt if profile else tuple(spec.shape)
        return shapes


def prepare_build(onnx_path, *, precision: str = "fp16", min_hw=None, opt_hw=None, max_hw=None,
                  tensor_profiles: Optional[Mapping[str, TensorProfile]] = None, calib_images=None,
                  calib_cache=None) -> BuildPlan:
    """Check the options against the ONNX graph and plan the build. No TensorRT needed."""
    onnx_path = Path(onnx_path)
    if precision not in PRECISIONS:
        raise EngineError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if not onnx_path.is_file():
        raise EngineError(f"ONNX file not found: {onnx_path}")
    calib_cache = Path(calib_cache) if calib_cache else None
    if precision == "int8" and not calib_images and not (calib_cache and calib_cache.is_file()):
        raise EngineError("precision int8 needs --calib-images DIR (or an existing --calib-cache file)")
    try:
        inputs, outputs = onnx_io_specs(onnx_path)
        metadata = onnx_metadata(onnx_path)
    except Exception as exc:  # onnx raises DecodeError and friends for a corrupt file
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EngineError(f"cannot read ONNX file {onnx_path}: {detail}") from None
    contract_json = contract_text(onnx_path, metadata)
    layouts, contract_hw = {}, {}
    if contract_json:
        try:
            contract = json.loads(contract_json)
            spec = contract.get("input") or {}
            if spec.get("name"):
                layouts[spec["name"]] = str(spec.get("layout", "NCHW")).upper()
                if spec.get("height") and spec.get("width"):
                    contract_hw[spec["name"]] = (int(spec["height"]), int(spec["width"]))
        except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
            pass  # a malformed contract is reported where it is loaded, not here
    profile_plan = plan_profiles(inputs, min_hw=min_hw, opt_hw=opt_hw, max_hw=max_hw,
                                 tensor_profiles=tensor_profiles, layouts=layouts, contract_hw=contract_hw)
    images, calibration = (), ""
    if precision == "int8":
        if calib_images:
            images = tuple(list_calibration_images(calib_images))
            calibration = "images:" + calibration_fingerprint(images)
        else:
            calibration = "cache:" + file_sha256(calib_cache)
    settings = BuildSettings(precision=precision, profiles=profile_plan.profiles, calibration=calibration)
    return BuildPlan(onnx_path=onnx_path, onnx_sha256=file_sha256(onnx_path), inputs=inputs, outputs=outputs,
                     profile_plan=profile_plan, settings=settings, metadata=metadata, contract_json=contract_json,
                     calib_images=images, calib_cache=calib_cache)


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


__all__ = [
    "PRECISIONS", "DEFAULT_MIN_HW", "DEFAULT_OPT_HW", "DEFAULT_MAX_HW", "MAX_CALIBRATION_IMAGES",
    "parse_dims", "parse_hw", "parse_tensor_profile", "validate_profile", "onnx_io_specs", "onnx_metadata",
    "image_axes", "ProfilePlan", "plan_profiles", "list_calibration_images", "calibration_fingerprint",
    "contract_text", "CalibrationBatches", "BuildPlan", "prepare_build", "load_tensorrt", "trt_logger",
    "runtime_identity", "build_engine", "ensure_cached_engine",
]
