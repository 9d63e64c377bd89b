"""Command line: ``python -m openpixel_ros.tflite IN.tflite OUT.onnx [--opset N] [--nhwc]``."""
from __future__ import annotations

import argparse
import sys

from openpixel_ros.tflite.to_onnx import convert


def _describe(values) -> str:
    return ", ".join(f"{v.name} {[d.dim_value for d in v.type.tensor_type.shape.dim]}"
                     for v in values)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m openpixel_ros.tflite",
                                     description="Convert a TFLite model to ONNX (NCHW).")
    parser.add_argument("tflite", help="input .tflite file")
    parser.add_argument("onnx", help="output .onnx file")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument("--nhwc", action="store_true",
                        help="keep TFLite's NHWC layout at the graph inputs and outputs")
    args = parser.parse_args(argv)
    try:
        model = convert(args.tflite, args.onnx, opset=args.opset, nchw=not args.nhwc)
    except (ValueError, NotImplementedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    graph = model.graph
    print(f"wrote {args.onnx}: {len(graph.node)} nodes; inputs {_describe(graph.input)}; "
          f"outputs {_describe(graph.output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
