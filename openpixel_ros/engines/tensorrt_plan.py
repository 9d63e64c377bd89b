"""Plan a TensorRT build from ONNX, without TensorRT: options, profiles, calibration data, the plan.

Pure planning, importable and tested without TensorRT: parsing ``HxW`` and
``NAME=MIN:OPT:MAX`` options, turning the ONNX graph's dynamic inputs into
optimization profiles, fingerprinting calibration data, preparing calibration
batches with the model contract's own pre-processing
(:class:`~openpixel_ros.model_io.ModelInput`), and the :class:`BuildPlan` whose
settings make the engine cache key. The builder that carries a plan out is
:mod:`openpixel_ros.engines.tensorrt_build`.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from .base import EngineError, TensorSpec
from .cuda_buffers import format_shape, tensor_nbytes
from .tensorrt_cache import BuildSettings, TensorProfile, file_sha256

PRECISIONS = ("fp32", "fp16", "int8")
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


# -- calibration data (pure: numpy + OpenCV + onnx) -----------------------------------------
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
    takes the frame's own size, and passed through the model contract's
    :class:`~openpixel_ros.model_io.ModelInput`, so normalisation, colour order,
    layout and letterboxing follow the contract. A conditioning input gets zeros
    (no adaptation), as at run time.
    """

    def __init__(self, onnx_path, images: Sequence, shapes: Mapping[str, tuple]):
        from ..model_contract import ContractError, load_contract
        from ..model_io import ModelInput

        self.images = list(images)
        self.shapes = {name: tuple(shape) for name, shape in shapes.items()}
        inputs, _ = onnx_io_specs(onnx_path)
        try:
            contract = load_contract(onnx_path, onnx_metadata(onnx_path))
        except ContractError as exc:
            raise EngineError(f"INT8 calibration needs the model contract to pre-process images: {exc}") from None
        if contract.task != "semantic":
            raise EngineError(f"INT8 calibration supports semantic models; {Path(onnx_path).name} is a "
                              f"{contract.task!r} model: build it with --precision fp16")
        self.contract = contract
        self.dtypes = {spec.name: spec.dtype for spec in inputs}
        if contract.input.name not in self.dtypes:
            raise EngineError(f"INT8 calibration: the model has no input {contract.input.name!r} "
                              f"(inputs: {', '.join(sorted(self.dtypes))})")
        self.model_input = ModelInput(contract, self.dtypes[contract.input.name])
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
        tensor, _ = self.model_input.tensor(rgb)
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
        """Nothing to release: the batches hold no model session, only the contract's transform."""


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


__all__ = [
    "PRECISIONS", "DEFAULT_MIN_HW", "DEFAULT_OPT_HW", "DEFAULT_MAX_HW", "MAX_CALIBRATION_IMAGES",
    "parse_dims", "parse_hw", "parse_tensor_profile", "validate_profile", "onnx_io_specs", "onnx_metadata",
    "image_axes", "ProfilePlan", "plan_profiles", "list_calibration_images", "calibration_fingerprint",
    "contract_text", "CalibrationBatches", "BuildPlan", "prepare_build",
]
