"""Export the OpenPixel click network to one ONNX graph with its ``task: click`` contract.

    python -m openpixel_ros.export.click_network --checkpoint out/train/click_network/last.pt \\
        --onnx openpixel_click.onnx [--size 320] [--metadata license=...]

Writes ``X.onnx`` (inputs ``image`` [1,3,S,S] and ``prompts`` [1,4,ceil(S/2),ceil(S/2)];
outputs ``mask_logits`` [1,1,ceil(S/4),ceil(S/4)] and ``score`` [1,1]) and its contract
``X.json`` (also embedded), which carries what the engine needs to render prompts as training
did (``click_sigma``, ``prompt_stride``), and prints ONNX Runtime vs PyTorch parity.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from openpixel_ros.model.click_network import PROMPT_STRIDE, load_click_network_checkpoint
from openpixel_ros.inference.prompt_maps import PROMPT_CHANNELS, grid_size
from openpixel_ros.interactive.click_network_engine import CLICK_TASK
from openpixel_ros.model_contract import InputSpec, ModelContract, OutputSpec

from .onnx_export import MIN_OPSET, export_module, parity, parse_metadata_options

DEFAULT_SIZE = 320


def click_network_contract(size: int, sigma: float, extra: Optional[dict] = None) -> ModelContract:
    """The network's ``openpixel-model/1`` contract: the input transform (x = p / 127.5 - 1, stretched to
    ``size`` x ``size``, as training's data), the prompt maps and the outputs."""
    return ModelContract(
        input=InputSpec(name="image", layout="NCHW", height=size, width=size, color_order="rgb",
                        scale=1.0 / 255.0, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), resize="stretch"),
        output=OutputSpec(name="mask_logits", kind="logits"), classes=("background", "object"),
        colors=((0, 0, 0), (255, 255, 255)), task=CLICK_TASK,
        extra={"prompt_input": "prompts", "prompt_stride": PROMPT_STRIDE, "click_sigma": float(sigma),
               "prompt_channels": ["positive", "negative", "previous_mask", "box"],
               "score_output": "score", **(extra or {})})


def export_click_network(model, onnx_path, size: int = DEFAULT_SIZE, sigma: float = 5.0,
                         opset: int = MIN_OPSET, extra: Optional[dict] = None) -> Path:
    """Write ``onnx_path`` (+ its ``.json`` contract) for ``model`` at a fixed ``size`` x ``size`` input."""
    onnx_path = Path(onnx_path)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    image = torch.zeros(1, 3, size, size)
    prompts = torch.zeros(1, PROMPT_CHANNELS, *grid_size(size, size, PROMPT_STRIDE))
    export_module(model, (image, prompts), onnx_path, ["image", "prompts"], ["mask_logits", "score"], opset,
                  contract=click_network_contract(size, sigma, extra))
    return onnx_path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m openpixel_ros.export.click_network", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="click-network training checkpoint (.pt)")
    parser.add_argument("--onnx", required=True, help="ONNX file to write (its contract goes beside it as .json)")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help="square input side (default: 320)")
    parser.add_argument("--opset", type=int, default=MIN_OPSET)
    parser.add_argument("--metadata", action="append", metavar="KEY=VALUE", help="extra contract keys (repeatable)")
    args = parser.parse_args(argv)
    try:
        extra = parse_metadata_options(args.metadata or [])
        model, checkpoint = load_click_network_checkpoint(args.checkpoint)
        sigma = float(checkpoint.get("train_config", {}).get("clicks", {}).get("sigma", 5.0))
        path = export_click_network(model, args.onnx, args.size, sigma, args.opset, extra)
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    rng = np.random.default_rng(0)
    feeds = {"image": rng.uniform(-1, 1, (1, 3, args.size, args.size)).astype(np.float32),
             "prompts": rng.uniform(0, 1, (1, PROMPT_CHANNELS, *grid_size(args.size, args.size, PROMPT_STRIDE)))
             .astype(np.float32)}
    for name, entry in parity(model, path, feeds, argmax_outputs=()).items():
        print(f"  parity {name}: " + ", ".join(f"{k} {v:.3g}" for k, v in entry.items()))
    print(f"wrote {path} and {path.with_suffix('.json')} (step {checkpoint.get('step')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
