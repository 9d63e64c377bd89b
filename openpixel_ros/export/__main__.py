"""``python -m openpixel_ros.export``: checkpoint -> ONNX, and/or ONNX -> TensorRT engine.

    python -m openpixel_ros.export --checkpoint X.pt --onnx X.onnx [--height H --width W | --dynamic]
    python -m openpixel_ros.export --onnx X.onnx --engine X.engine --precision fp16 [--calib-images DIR] [--workspace MB]

Given both ``--checkpoint`` and ``--engine``, it exports the ONNX file first, then builds
the engine from it. torch is imported only for the checkpoint step and TensorRT only
for the engine step.
"""
from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m openpixel_ros.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="OpenPixel PyTorch checkpoint (.pt) to export")
    p.add_argument("--onnx", required=True, help="ONNX file: written from --checkpoint, or read for --engine")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17)")
    p.add_argument("--height", type=int, default=None, help="fixed input height (default: the model's)")
    p.add_argument("--width", type=int, default=None, help="fixed input width (default: the model's)")
    p.add_argument("--dynamic", action="store_true", help="export dynamic height/width")
    p.add_argument("--engine", help="TensorRT engine file to build from --onnx")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp16")
    p.add_argument("--calib-images", help="folder of images for INT8 calibration")
    p.add_argument("--calib-cache", help="INT8 calibration cache file (default: <engine>.calib)")
    p.add_argument("--workspace", type=int, default=1024, help="builder workspace in MB")
    p.add_argument("--timing-cache", help="TensorRT timing cache file (default: <engine dir>/timing.cache)")
    p.add_argument("--min-shape", help="optimization profile min HxW for dynamic inputs, e.g. 240x320")
    p.add_argument("--opt-shape", help="optimization profile opt HxW")
    p.add_argument("--max-shape", help="optimization profile max HxW")
    p.add_argument("--profile", action="append", metavar="NAME=MIN:OPT:MAX",
                   help="profile of another dynamic input, e.g. points=1x1x2:1x4x2:1x16x2 (repeatable)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not args.checkpoint and not args.engine:
        print("error: give --checkpoint (export ONNX) and/or --engine (build TensorRT)", file=sys.stderr)
        return 2
    if args.checkpoint:
        from .onnx_export import run_cli as export_onnx
        rc = export_onnx(args)
        if rc:
            return rc
    if args.engine:
        from .tensorrt import run_cli as build_engine
        return build_engine(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
