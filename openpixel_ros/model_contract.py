"""The model contract: what a segmentation model file must declare.

A model comes with a metadata JSON, either as a sidecar file next to it
(``model.onnx`` -> ``model.json``) or embedded in the ONNX file as the
metadata property ``openpixel``. The sidecar wins when both exist, so users
can re-label a model without rewriting it. The format is documented in
``docs/model_contract.md``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from .image_header import DEFAULT_MAX_PIXELS

FORMAT = "openpixel-model/1"
METADATA_KEY = "openpixel"

#: The conditioning input's vector, index by index (what :class:`openpixel_ros.adaptation.LightingAdapter`
#: fills). Stable: models are trained on it.
CONDITIONING_LAYOUT = (
    "score_smoothed",    # 0: smoothed score in [0, 1], what drives the correction
    "score",             # 1: this frame's score in [0, 1]
    "entropy",           # 2: luminance entropy / 8 bits, [0, 1]
    "mean_luminance",    # 3: [0, 1]
    "contrast",          # 4: 2 x luminance standard deviation, [0, 1]
    "clipped_dark",      # 5: fraction of pixels <= adaptation.CLIP_DARK_LEVEL
    "clipped_bright",    # 6: fraction of pixels >= adaptation.CLIP_BRIGHT_LEVEL
    "dark_level",        # 7: 1st luminance percentile, [0, 1]
    "noise",             # 8: estimated noise sigma / 16 levels, clipped to [0, 1] (0 while inactive)
    "strength",          # 9: correction strength applied to the frame, [0, 1] (0: untouched)
)
CONDITIONING_SIZE = len(CONDITIONING_LAYOUT)


class ContractError(ValueError):
    """The model's metadata is missing, malformed or disagrees with the graph."""


#: Largest fixed model input a contract may declare: 8192 a side and the frame budget (8K,
#: 33.2 MP) in all. A contract declaring 30000x30000 made every frame try to allocate 10 GiB;
#: such a model is refused at load instead.
MAX_INPUT_SIDE = 8192
MAX_INPUT_PIXELS = DEFAULT_MAX_PIXELS


def _check_input_size(height: Optional[int], width: Optional[int]) -> None:
    if height is None and width is None:
        return  # dynamic: the frame's own size (bounded by the frame pixel budget)
    h, w = (1 if height is None else height), (1 if width is None else width)
    if h <= 0 or w <= 0 or h > MAX_INPUT_SIDE or w > MAX_INPUT_SIDE or h * w > MAX_INPUT_PIXELS:
        raise ContractError(
            f"input size {width}x{height} is outside what a frame can afford: each side 1..{MAX_INPUT_SIDE}, "
            f"at most {MAX_INPUT_PIXELS / 1e6:.1f} MP in all")


@dataclass(frozen=True)
class InputSpec:
    name: str
    layout: str = "NCHW"  # or "NHWC"
    height: Optional[int] = None  # None: dynamic, the frame's own size is used
    width: Optional[int] = None
    color_order: str = "rgb"  # or "bgr"
    scale: float = 1.0 / 255.0
    mean: tuple = (0.0, 0.0, 0.0)
    std: tuple = (1.0, 1.0, 1.0)
    resize: str = "stretch"  # or "letterbox" (keeps aspect ratio, pads all round), "longest" (pads bottom-right)


@dataclass(frozen=True)
class OutputSpec:
    name: str
    kind: str = "logits"  # "logits": [1,C,h,w]; "probability": [1,1,h,w] foreground probability


@dataclass(frozen=True)
class ConditioningSpec:
    """An optional second input, ``[1, size]`` float32, fed with the adaptation vector."""

    name: str
    size: int


@dataclass(frozen=True)
class ModelContract:
    input: InputSpec
    output: OutputSpec
    classes: tuple
    colors: tuple  # one (r, g, b) per class
    conditioning: Optional[ConditioningSpec] = None
    task: str = "semantic"
    extra: Mapping = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def color_table(self) -> np.ndarray:
        """``[num_classes, 3]`` uint8 palette."""
        return np.asarray(self.colors, dtype=np.uint8).reshape(-1, 3)

    def class_ids(self, names: Sequence[str]) -> list:
        """Class indices for names (or decimal id strings); unknown names raise ContractError."""
        ids = []
        for name in names:
            if isinstance(name, int) or str(name).isdigit():
                idx = int(name)
                if not 0 <= idx < self.num_classes:
                    raise ContractError(f"class id {idx} out of range 0..{self.num_classes - 1}")
            elif name in self.classes:
                idx = self.classes.index(name)
            else:
                raise ContractError(f"unknown class {name!r}; model classes: {', '.join(self.classes)}")
            ids.append(idx)
        return ids

    def to_dict(self) -> dict:
        d = {
            "format": FORMAT,
            "task": self.task,
            "input": {
                "name": self.input.name, "layout": self.input.layout,
                "height": self.input.height, "width": self.input.width,
                "color_order": self.input.color_order, "scale": self.input.scale,
                "mean": list(self.input.mean), "std": list(self.input.std),
                "resize": self.input.resize,
            },
            "output": {"name": self.output.name, "kind": self.output.kind},
            "classes": list(self.classes),
            "colors": [list(c) for c in self.colors],
            "conditioning": (
                {"name": self.conditioning.name, "size": self.conditioning.size}
                if self.conditioning else None
            ),
        }
        d.update(self.extra)
        return d


_KNOWN_KEYS = {"format", "task", "input", "output", "classes", "colors", "conditioning"}


def default_colors(n: int) -> list:
    """A distinct, deterministic palette (PASCAL VOC's bit-interleaving scheme)."""
    colors = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colors.append((r, g, b))
    return colors


def parse_contract(data: Mapping) -> ModelContract:
    """Validate a metadata dict and build the contract. Raises ContractError."""
    if data.get("format") != FORMAT:
        raise ContractError(f"metadata format is {data.get('format')!r}, expected {FORMAT!r}")
    try:
        inp = dict(data["input"])
        out = dict(data["output"])
        classes = tuple(str(c) for c in data["classes"])
    except (KeyError, TypeError) as exc:
        raise ContractError(f"metadata lacks {exc}") from None
    if not classes:
        raise ContractError("metadata lists no classes")
    colors = data.get("colors") or default_colors(len(classes))
    if len(colors) != len(classes) or any(len(c) != 3 for c in colors):
        raise ContractError(f"metadata has {len(colors)} colours for {len(classes)} classes")
    colors = tuple(tuple(int(v) for v in c) for c in colors)
    try:
        input_spec = InputSpec(
            name=str(inp["name"]),
            layout=str(inp.get("layout", "NCHW")).upper(),
            height=None if inp.get("height") is None else int(inp["height"]),
            width=None if inp.get("width") is None else int(inp["width"]),
            color_order=str(inp.get("color_order", "rgb")).lower(),
            scale=float(inp.get("scale", 1.0 / 255.0)),
            mean=tuple(float(v) for v in inp.get("mean", (0.0, 0.0, 0.0))),
            std=tuple(float(v) for v in inp.get("std", (1.0, 1.0, 1.0))),
            resize=str(inp.get("resize", "stretch")).lower(),
        )
        output_spec = OutputSpec(name=str(out["name"]), kind=str(out.get("kind", "logits")).lower())
    except (KeyError, TypeError, ValueError) as exc:
        raise ContractError(f"malformed input/output metadata: {exc}") from None
    _check_input_size(input_spec.height, input_spec.width)
    if input_spec.layout not in ("NCHW", "NHWC"):
        raise ContractError(f"input layout {input_spec.layout!r} is not NCHW or NHWC")
    if input_spec.color_order not in ("rgb", "bgr"):
        raise ContractError(f"color_order {input_spec.color_order!r} is not rgb or bgr")
    if input_spec.resize not in ("stretch", "letterbox", "longest"):
        raise ContractError(f"resize {input_spec.resize!r} is not stretch, letterbox or longest")
    if len(input_spec.mean) != 3 or len(input_spec.std) != 3 or min(input_spec.std) <= 0:
        raise ContractError("mean and std need 3 values each, std > 0")
    if output_spec.kind not in ("logits", "probability"):
        raise ContractError(f"output kind {output_spec.kind!r} is not logits or probability")
    if output_spec.kind == "probability" and len(classes) != 2:
        raise ContractError("a probability output needs exactly 2 classes (background, object)")
    cond = data.get("conditioning")
    conditioning = None
    if cond:
        try:
            conditioning = ConditioningSpec(name=str(cond["name"]), size=int(cond["size"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ContractError(f"malformed conditioning metadata: {exc}") from None
    extra = {k: v for k, v in data.items() if k not in _KNOWN_KEYS}
    return ModelContract(input=input_spec, output=output_spec, classes=classes, colors=colors,
                         conditioning=conditioning, task=str(data.get("task", "semantic")), extra=extra)


def sidecar_path(model_path) -> Path:
    return Path(model_path).with_suffix(".json")


def load_contract(model_path, embedded: Optional[Mapping[str, str]] = None) -> ModelContract:
    """Read the contract for ``model_path`` from its sidecar JSON or ``embedded`` metadata.

    ``embedded`` is the engine's metadata mapping (ONNX ``metadata_props``).
    """
    sidecar = sidecar_path(model_path)
    if sidecar.is_file():
        try:
            data = json.loads(sidecar.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ContractError(f"cannot read model metadata {sidecar}: {exc}") from None
        return parse_contract(data)
    if embedded and METADATA_KEY in embedded:
        try:
            data = json.loads(embedded[METADATA_KEY])
        except json.JSONDecodeError as exc:
            raise ContractError(f"embedded '{METADATA_KEY}' metadata is not JSON: {exc}") from None
        return parse_contract(data)
    raise ContractError(
        f"no model metadata: expected {sidecar.name} next to the model or an ONNX metadata "
        f"property '{METADATA_KEY}' (see docs/model_contract.md)")


def write_sidecar(model_path, contract: ModelContract) -> Path:
    path = sidecar_path(model_path)
    path.write_text(json.dumps(contract.to_dict(), indent=2) + "\n")
    return path
