"""``python -m openpixel_ros.eval <tool> ...``: one entry point, one module per tool.

Each tool module defines ``add_arguments(parser)`` and ``run(args) -> int`` and is
imported only when chosen, so a tool's heavy dependencies never load for another.
"""
from __future__ import annotations

import argparse
import importlib
import sys

TOOLS = {
    "clicks": ("openpixel_ros.eval.clicks", "interactive segmentation: NoC@85/90, mIoU@k (standard protocol)"),
    "semantic": ("openpixel_ros.eval.semantic", "semantic segmentation: mIoU, pixel accuracy"),
    "lighting": ("openpixel_ros.eval.lighting", "mIoU under seeded lighting shifts, adaptation off and on"),
    "plot": ("openpixel_ros.eval.plots", "PNG pictures of eval JSON reports (several click reports: a line each)"),
}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m openpixel_ros.eval", description=__doc__)
    sub = parser.add_subparsers(dest="tool", required=True, metavar="TOOL")
    for name, (_, help_text) in TOOLS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in TOOLS:
        parser.parse_args(argv)  # prints help or the error
        return 2
    module = importlib.import_module(TOOLS[argv[0]][0])
    tool_parser = argparse.ArgumentParser(prog=f"python -m openpixel_ros.eval {argv[0]}",
                                          description=TOOLS[argv[0]][1])
    module.add_arguments(tool_parser)
    args = tool_parser.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except (OSError, ValueError, RuntimeError) as exc:  # EngineError and ContractError are ValueErrors
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
