"""ONNX -> TensorRT engine, the engine step of ``python -m openpixel_ros.export``.

    python -m openpixel_ros.export --onnx X.onnx --engine X.engine --precision fp16
    python -m openpixel_ros.export --onnx X.onnx --engine X.engine --precision int8 --calib-images DIR
    python -m openpixel_ros.export --onnx X.onnx --engine X.engine --min-shape 240x320 \\
        --opt-shape 480x640 --max-shape 1080x1920

Writes ``X.engine``, its manifest ``X.engine.manifest.json`` (GPU, TensorRT version,
ONNX hash, precision, profile, build time), the model contract ``X.json`` when the
ONNX has one, the timing cache (kept and reused by later builds) and, for INT8,
the calibration cache. The engine runs only on this GPU model with this TensorRT
version. See docs/tensorrt.md.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from ..engines.base import EngineError
from ..engines.cuda_buffers import load_cudart
from ..engines.tensorrt_build import build_engine, load_tensorrt, runtime_identity
from ..engines.tensorrt_plan import parse_hw, parse_tensor_profile, prepare_build


def _say(message: str) -> None:
    print(message, flush=True)


def build_from_args(args) -> dict:
    """Build the engine the parsed CLI ``args`` describe; returns its manifest. Raises EngineError."""
    engine_path = Path(args.engine)
    min_hw = parse_hw(args.min_shape, "--min-shape")
    opt_hw = parse_hw(args.opt_shape, "--opt-shape")
    max_hw = parse_hw(args.max_shape, "--max-shape")
    tensor_profiles = {p.name: p for p in map(parse_tensor_profile, getattr(args, "profile", None) or [])}
    calib_cache = None
    if args.precision == "int8":
        calib_cache = Path(args.calib_cache) if args.calib_cache else engine_path.with_suffix(".calib")
        if not args.calib_images and not calib_cache.is_file():
            raise EngineError("precision int8 needs --calib-images DIR (or an existing --calib-cache file)")
    if args.workspace < 1:
        raise EngineError(f"--workspace must be at least 1 MB, got {args.workspace}")
    trt = load_tensorrt()
    cudart = load_cudart()
    plan = prepare_build(args.onnx, precision=args.precision, min_hw=min_hw, opt_hw=opt_hw, max_hw=max_hw,
                         tensor_profiles=tensor_profiles, calib_images=args.calib_images, calib_cache=calib_cache)
    runtime = runtime_identity(trt, 0, cudart)
    timing_cache = Path(args.timing_cache) if args.timing_cache else engine_path.parent / "timing.cache"
    return build_engine(plan, engine_path, runtime=runtime, workspace_mb=args.workspace,
                        timing_cache=timing_cache, log=_say)


def run_cli(args) -> int:
    """Entry point used by ``openpixel_ros.export.__main__``; returns the exit status."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        manifest = build_from_args(args)
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    profiles = ", ".join(f"{name} {lo}..{hi} (opt {opt})"
                         for name, lo, opt, hi in manifest["profiles"]) or "fixed shapes"
    _say(f"wrote {args.engine}: {manifest['precision']}, {profiles}; {manifest['gpu_name']} "
         f"(compute {manifest['compute_capability']}), TensorRT {manifest['tensorrt_version']}; "
         f"built in {manifest['build_seconds']:.1f} s")
    return 0
