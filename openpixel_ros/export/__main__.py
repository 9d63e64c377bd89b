"""``python -m openpixel_ros.export``: checkpoint -> ONNX, and/or ONNX -> TensorRT engine.

    python -m openpixel_ros.export --checkpoint X.pt --onnx X.onnx [--height H --width W | --dynamic]
    python -m openpixel_ros.export --checkpoint X.pt --onnx X.onnx --variants int8,fp16 --calib-images DIR
    python -m openpixel_ros.export --onnx X.onnx --engine X.engine --precision fp16
        [--calib-images DIR] [--workspace MB]
    python -m openpixel_ros.export --onnx X.onnx --frame-labels 1920x1080 [--engine X.labels.engine ...]

``--checkpoint`` writes ``X.encoder.onnx`` and the click decoder ``X.decoder.onnx``; a checkpoint
whose run did not train the click head (``clicks.enabled: false``, the road runs) writes the
encoder alone and says so.

``--frame-labels WxH`` writes ``X.frame_labels_WxH.onnx``: the model plus, inside the graph, the
label image of a WxH camera frame (letterbox crop, bilinear resize, argmax, uint8), for GPU
engines (export/frame_labels.py, docs/tensorrt.md); with ``--engine`` the engine is built from it.

``--variants`` writes ``X.int8.encoder.onnx`` (ONNX Runtime static quantization calibrated on
``--calib-images``) and/or ``X.fp16.encoder.onnx`` beside the FP32 encoder.

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
    p.add_argument("--metadata", action="append", metavar="KEY=VALUE",
                   help="extra metadata for the encoder's contract, e.g. license=..., or "
                        "'foreground_classes=[\"Car\"]' (JSON values are parsed; repeatable)")
    p.add_argument("--variants", default="",
                   help="comma-separated reduced-precision ONNX encoders to write beside the FP32 one: "
                        "int8 (ONNX Runtime static quantization, calibrated on --calib-images) and/or fp16")
    p.add_argument("--calib-count", type=int, default=64, help="INT8 calibration images used (default: 64)")
    p.add_argument("--frame-labels", metavar="WxH", help="write X.frame_labels_WxH.onnx: labels of a WxH camera "
                   "frame computed inside the graph (GPU engines return them instead of logits to upsample)")
    p.add_argument("--engine", help="TensorRT engine file to build from --onnx")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp16")
    p.add_argument("--calib-images", help="folder of images for INT8 calibration (ONNX Runtime and TensorRT)")
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
    variants = [v for v in args.variants.split(",") if v]
    if not (args.checkpoint or args.engine or variants or args.frame_labels):
        print("error: give --checkpoint (export ONNX), --variants (INT8/FP16 ONNX), --frame-labels (labels in "
              "the graph) and/or --engine (build TensorRT)", file=sys.stderr)
        return 2
    unknown = sorted(set(variants) - {"int8", "fp16"})
    if unknown:
        print(f"error: unknown --variants {', '.join(unknown)} (known: int8, fp16)", file=sys.stderr)
        return 2
    if "int8" in variants and not args.calib_images:
        print("error: --variants int8 needs --calib-images (a folder of training images)", file=sys.stderr)
        return 2
    if args.checkpoint:
        from .onnx_export import run_cli as export_onnx
        rc = export_onnx(args)
        if rc:
            return rc
    if variants:
        from .quantize import convert_fp16, quantize_int8
        try:
            for variant in variants:
                path = (quantize_int8(args.onnx, args.calib_images, count=args.calib_count)
                        if variant == "int8" else convert_fp16(args.onnx))
                print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB, {variant})")
        except (ValueError, OSError, RuntimeError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    if args.frame_labels:
        from .frame_labels import add_frame_labels
        try:
            width, height = (int(v) for v in args.frame_labels.lower().split("x"))
            path = add_frame_labels(args.onnx, (height, width))
        except ValueError as exc:
            print(f"error: --frame-labels {args.frame_labels}: {exc}", file=sys.stderr)
            return 1
        print(f"wrote {path} (labels of {width}x{height} frames in the graph)")
        args.onnx = str(path)  # an engine built next comes from it
    if args.engine:
        from .tensorrt import run_cli as build_engine
        return build_engine(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
