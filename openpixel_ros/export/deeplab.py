"""Export the DeepLabV3-MobileNetV2 port (:mod:`openpixel_ros.model.deeplab`) as an ONNX reference model.

``python -m openpixel_ros.export.deeplab --tflite PATH [--onnx OUT.onnx]`` ports
Google's ``deeplabv3_257_mv_gpu.tflite`` and writes it as ONNX with its openpixel
metadata (default output: the model cache, :func:`openpixel_ros.paths.model_dir`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ..model.deeplab import DEFAULT_ONNX_NAME, INPUT_SIZE, deeplab_contract, deeplab_from_tflite
from .onnx_export import export_module


def export_deeplab_onnx(tflite_path, onnx_path, height: int = INPUT_SIZE, width: int = INPUT_SIZE,
                        opset: int = 17) -> Path:
    """Port the TFLite model and write it as ONNX with its sidecar and embedded metadata. Returns the path."""
    model = deeplab_from_tflite(tflite_path)
    contract = deeplab_contract(height, width)
    onnx_path = Path(onnx_path)
    export_module(model, (torch.zeros(1, 3, height, width),), onnx_path, input_names=["image"],
                  output_names=["logits"], opset=opset, contract=contract)
    return onnx_path


def main(argv=None) -> int:
    from ..paths import model_dir

    parser = argparse.ArgumentParser(prog="python -m openpixel_ros.export.deeplab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tflite", required=True, help="deeplabv3_257_mv_gpu.tflite")
    parser.add_argument("--onnx", help=f"output ONNX file (default: <model cache>/{DEFAULT_ONNX_NAME})")
    parser.add_argument("--height", type=int, default=INPUT_SIZE)
    parser.add_argument("--width", type=int, default=INPUT_SIZE)
    parser.add_argument("--opset", type=int, default=17)
    args = parser.parse_args(argv)
    out = Path(args.onnx) if args.onnx else model_dir() / DEFAULT_ONNX_NAME
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        export_deeplab_onnx(args.tflite, out, args.height, args.width, args.opset)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
