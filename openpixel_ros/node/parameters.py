"""The node's parameters in one table: declared, validated, applied and documented from here.

``docs/nodes.md`` and ``config/openpixel.yaml`` list exactly these (a test checks it).
A run-time parameter's spec also says how a change takes effect in the running node
(``apply``) and how to read the value in effect back from the object that uses it
(``read_back``), so the node's parameter callback is a loop over this table.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Optional, Sequence

from ..image_header import DEFAULT_MAX_PIXELS
from ..log_text import compact


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    read_only: bool = False          # True: fixed at start-up (changing it needs a restart)
    choices: Optional[Sequence] = None
    min: Optional[float] = None
    max: Optional[float] = None
    check: Optional[Callable[[Any], Optional[str]]] = None  # returns an error message or None
    # Run-time parameters only; each takes the node (openpixel_node.OpenPixelNode) first.
    apply: Optional[Callable[[Any, Any], None]] = None      # (node, value): put a valid change into effect
    read_back: Optional[Callable[[Any], Any]] = None        # (node) -> the value in effect
    fits_model: Optional[Callable[[Any, Any], Optional[str]]] = None  # (node, value): checks against the model

    def descriptor(self):
        """The ROS ParameterDescriptor: description, read_only and the range (what
        ``ros2 param describe`` shows; rclpy refuses values outside it before the node sees them)."""
        from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
        descriptor = ParameterDescriptor(description=self.description, read_only=self.read_only)
        if self.min is not None and self.max is not None and not isinstance(self.default, bool):
            if isinstance(self.default, int):
                descriptor.integer_range = [IntegerRange(from_value=int(self.min), to_value=int(self.max), step=0)]
            elif isinstance(self.default, float):
                descriptor.floating_point_range = [FloatingPointRange(from_value=float(self.min),
                                                                      to_value=float(self.max), step=0.0)]
        return descriptor

    @property
    def type_name(self) -> str:
        """The ROS parameter type, as users write it in YAML and on the command line."""
        return _TYPE_NAMES[type(self.default)]

    def validate(self, value) -> Optional[str]:
        """None when ``value`` is acceptable, else a one-line reason.

        Floats must be finite: NaN passes every ``<``/``>`` comparison, so it is refused first.
        """
        if not same_type(value, self.default):
            return f"{self.name} must be {self.type_name}, got {type(value).__name__} {compact(value)}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"{self.name} must be a finite number, got {value}"
        if self.choices is not None and value not in self.choices:
            return f"{self.name} must be one of {', '.join(map(str, self.choices))}, got {compact(value)}"
        if self.min is not None and value < self.min:
            return f"{self.name} must be >= {self.min}, got {compact(value)}"
        if self.max is not None and value > self.max:
            return f"{self.name} must be <= {self.max}, got {compact(value)}"
        if self.check is not None:
            return self.check(value)
        return None


def _attribute(path: str, convert: Callable = lambda v: v, back: Callable = lambda v: v) -> dict:
    """apply / read_back of the attribute at ``path`` below the node, e.g. ``"click_prompts.worker.capacity"``.

    An object on the path that is None (the prompt worker while the node is inactive) is skipped:
    it is created from the parameter's value when the node activates.
    """
    *parents, leaf = path.split(".")

    def owner(node):
        for name in parents:
            node = getattr(node, name, None) if node is not None else None
        return node

    def apply(node, value):
        target = owner(node)
        if target is not None:
            setattr(target, leaf, convert(value))

    def read_back(node):
        target = owner(node)
        return None if target is None else back(getattr(target, leaf))
    return dict(apply=apply, read_back=read_back)


def _mask_classes(value) -> list:
    return [c for c in value if c != ""]


def _foreground_classes_fit(node, value) -> Optional[str]:
    from ..model_contract import ContractError
    try:
        node.segmentor.contract.class_ids(_mask_classes(value))
    except ContractError as exc:
        return str(exc)
    return None


_TYPE_NAMES = {bool: "a bool", int: "an integer", float: "a double", str: "a string", list: "a string array"}


def same_type(value, default) -> bool:
    """``value`` has the parameter's declared type (bool is not an integer here)."""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, list):
        return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
    return isinstance(value, type(default))


NODE_PARAMETERS = (
    # -- model and engine (start-up only) --
    ParamSpec("model_path", "", "ONNX model (or TensorRT .engine), or a model name: openpixel_road, "
              "openpixel_road.int8 or selfie. Empty: the package's default model (OpenPixel road: 11 CamVid "
              "classes, shipped in the package).", read_only=True),
    ParamSpec("engine", "onnxruntime", "Inference backend.", read_only=True,
              choices=("onnxruntime", "tensorrt")),
    ParamSpec("device", "cpu", "cpu, cuda or cuda:N (ONNX Runtime needs onnxruntime-gpu for cuda; "
              "tensorrt needs cuda).",
              read_only=True, check=lambda v: None if v == "cpu" or v.startswith("cuda") else
              f"device must be cpu, cuda or cuda:N, got {v!r}"),
    ParamSpec("threads", 0, "ONNX Runtime intra-op threads; 0 = one per core.", read_only=True, min=0, max=256),
    ParamSpec("tensorrt.precision", "fp16", "TensorRT build precision when model_path is an ONNX file "
              "(the engine is built once and cached; see docs/tensorrt.md).", read_only=True,
              choices=("fp32", "fp16", "int8")),
    ParamSpec("tensorrt.calib_images", "", "Folder of images for INT8 calibration.", read_only=True),
    ParamSpec("tensorrt.min_shape", "", "Optimization profile minimum HxW for dynamic-size models, e.g. "
              "240x320; empty = the model's size or a built-in default.", read_only=True),
    ParamSpec("tensorrt.opt_shape", "", "Optimization profile optimum HxW.", read_only=True),
    ParamSpec("tensorrt.max_shape", "", "Optimization profile maximum HxW.", read_only=True),
    ParamSpec("tensorrt.workspace_mb", 1024, "TensorRT builder workspace in MB.", read_only=True,
              min=16, max=65536),
    # -- input --
    ParamSpec("max_image_pixels", DEFAULT_MAX_PIXELS, "Largest frame (width x height) decoded, e.g. 33177600 = 8K "
              "(7680x4320). A compressed frame's size is read from its PNG/JPEG header before decoding, so a "
              "small file that declares a huge image (a decompression bomb) is refused (counted as a decode "
              "error) instead of taking gigabytes.", read_only=True, min=4096, max=67_108_864),
    ParamSpec("input_transport", "raw", "raw: subscribe to sensor_msgs/Image on 'image'. compressed: "
              "sensor_msgs/CompressedImage (jpeg/png) on '<image>/compressed', image_transport's naming.",
              read_only=True, choices=("raw", "compressed")),
    ParamSpec("transport.raw_cdr", True, "input_transport raw: take each Image as its serialised CDR bytes "
              "and view the pixels in place (zero-copy; a bare relay's round trip at 1080p took 0.45x as long) "
              "instead of rclpy's deserialisation. Reads little-endian CDR only: set false for middleware whose wire "
              "format differs (such frames are dropped as decode errors).", read_only=True),
    ParamSpec("qos.reliability", "best_available", "Input subscription reliability. best_available matches "
              "any camera: reliable when every publisher offers it, else best effort. Prefer reliable "
              "publishers (or shared-memory transport) for large images: best-effort frames of ~1 MB and "
              "more are mostly lost over UDP.", read_only=True,
              choices=("best_available", "reliable", "best_effort")),
    ParamSpec("qos.depth", 1, "Input queue depth. 1 = keep only the newest frame.", read_only=True,
              min=1, max=100),
    ParamSpec("output_qos.reliability", "reliable", "Reliability of the output publishers.", read_only=True,
              choices=("reliable", "best_effort")),
    ParamSpec("output_qos.depth", 1, "Depth of the output publishers.", read_only=True, min=1, max=100),
    # -- outputs (changeable at run time) --
    ParamSpec("foreground_classes", [""], "Class names or ids that make up ~/mask. [''] = the model's own "
              "choice (metadata foreground_classes; the default model: Car, Pedestrian, Bicyclist), else every "
              "class except class 0.", fits_model=_foreground_classes_fit,
              apply=lambda node, v: node.segmentor.set_foreground_classes(_mask_classes(v)),
              read_back=lambda node: list(node.segmentor.foreground_ids)),
    ParamSpec("overlay_alpha", 0.5, "Weight of the class colours in ~/overlay.", min=0.0, max=1.0,
              **_attribute("overlay_alpha", float)),
    ParamSpec("label_upsampling", "bilinear", "How logits return to the frame's size: bilinear (upsample "
              "scores, then argmax; smooth edges) or nearest (argmax, then upsample labels; cheaper).",
              choices=("bilinear", "nearest"), **_attribute("segmentor.semantic.label_upsampling")),
    ParamSpec("compressed.jpeg_quality", 80, "JPEG quality (1-100) of ~/color/compressed and "
              "~/overlay/compressed; ~/label/compressed and ~/mask/compressed are lossless PNG. Each compressed "
              "output is encoded only while subscribed.", min=1, max=100,
              **_attribute("outputs.compressed.jpeg_quality")),
    ParamSpec("max_rate_hz", 0.0, "Upper bound on the inference rate; 0 = as fast as the engine allows.",
              min=0.0, max=1000.0, **_attribute("max_rate_hz")),
    # -- click prompts --
    ParamSpec("prompt_engine", "openpixel", "Engine for click prompts (~/segment_at_points, ~/click): openpixel "
              "(the package's click network, loaded at start: far fewer clicks than classical on road-scene and "
              "small objects, narrowly fewer on GrabCut's photos, ~10x faster; its weights are for non-commercial "
              "research only, docs/model_card.md), classical "
              "(GrabCut, no model file: pick it where that licence rules the network out) or sam "
              "(Segment-Anything-format ONNX pair). No GPU needed either way; docs/interactive.md.",
              read_only=True, choices=("classical", "sam", "openpixel")),
    ParamSpec("prompt_model", "", "Model for the prompt engine: the SAM image-encoder ONNX (its decoder "
              "beside it, see docs/interactive.md); for openpixel a click network (X.onnx, contract task click) "
              "or your own OpenPixel export with a trained click decoder beside it (X.encoder.onnx + "
              "X.decoder.onnx; the packaged road model has none); unused by classical. Empty with openpixel: "
              "the packaged click network, openpixel_click.", read_only=True),
    ParamSpec("click.zoom_in", True, "openpixel prompt engine: from the second prompt on a frame (given the previous "
              "mask), decode in a window around the object at the model's full input size; at the first prompt "
              "too when its whole-frame mask is small enough for a window (one more network pass).",
              read_only=True),
    ParamSpec("click.boundary_refinement", "guided", "openpixel prompt engine: how the mask's edge reaches the "
              "frame's resolution: guided (a guided filter snaps it to image edges) or none (bilinear).",
              read_only=True, choices=("guided", "none")),
    ParamSpec("click.queue_size", 8, "Prompt requests (service calls and clicks) that may wait for the prompt "
              "worker. A service call beyond this is answered at once with success=false and 'busy: N "
              "requests queued'; a click beyond it is dropped (counted in diagnostics). At most 64: each waiting call "
              "may hold a 4K request image (25 MB) and waits for every call before it.", min=1, max=64,
              **_attribute("click_prompts.worker.capacity")),
    ParamSpec("click.session_timeout", 10.0, "Clicks on ~/click and ~/click_negative accumulate (and refine "
              "one object) until this many seconds pass without a click.", min=0.5, max=3600.0,
              **_attribute("click_prompts.session.timeout")),
    ParamSpec("click.message_type", "point_stamped", "Message type of ~/click and ~/click_negative: "
              "point_stamped (geometry_msgs/PointStamped) or point (geometry_msgs/Point, what rqt_image_view's "
              "mouse publishing sends).", read_only=True, choices=("point_stamped", "point")),
    # -- monitoring --
    ParamSpec("diagnostics_period", 1.0, "Seconds between /diagnostics messages.", min=0.1, max=60.0,
              **_attribute("diagnostics_timer.timer_period_ns", lambda s: int(s * 1e9), lambda ns: ns / 1e9)),
    ParamSpec("diagnostics.min_processed_ratio", 0.5, "Diagnostics WARN when the processed rate falls below "
              "this fraction of the input rate (capped by max_rate_hz) while an output is subscribed; 0 = never.",
              min=0.0, max=1.0, **_attribute("limits.min_processed_ratio")),
    ParamSpec("diagnostics.stuck_timeout", 10.0, "Diagnostics ERROR, naming the stage (decode, adaptation, "
              "inference, publish), when the inference worker has spent this many seconds on one frame.",
              min=0.5, max=3600.0, **_attribute("limits.stuck_timeout")),
    ParamSpec("input_timeout", 2.0, "Seconds without frames before diagnostics report the camera stale.",
              min=0.1, max=3600.0, **_attribute("limits.input_timeout")),
    ParamSpec("debug.engine_delay_ms", 0.0, "Benchmarking only: sleep this long after every inference "
              "to emulate a slower engine.", min=0.0, max=10000.0, **_attribute("engine_delay_ms")),
)


def all_parameters() -> tuple:
    """Every parameter of openpixel_node: its own table, then ``adaptation.*``."""
    return NODE_PARAMETERS + adaptation_parameters()


def spec_by_name(specs=None) -> dict:
    return {s.name: s for s in (specs if specs is not None else all_parameters())}


def refuse_change(specs: dict, changes: dict, node, value: Callable[[str], Any]) -> Optional[str]:
    """Why the run-time ``changes`` ({name: value}) cannot be applied to ``node``; None when all can.

    ``value(name)``: a parameter's current value. Names outside ``specs`` (e.g. ``use_sim_time``)
    are not ours to judge. The adaptation parameters must also stay valid together (e.g.
    release_score < activation_score), with every change of the batch applied.
    """
    for name, new in changes.items():
        spec = specs.get(name)
        if spec is None:
            continue
        if spec.read_only:
            return f"{name} is fixed at start-up"
        error = spec.validate(new) or (spec.fits_model(node, new) if spec.fits_model else None)
        if error:
            return error
    if any(name.startswith(ADAPTATION_PREFIX) for name in changes):
        try:
            adaptation_config(specs, lambda name: changes[name] if name in changes else value(name))
        except ValueError as exc:
            return str(exc)
    return None


ADAPTATION_PREFIX = "adaptation."


def adaptation_config(specs: dict, value: Callable[[str], Any]):
    """The AdaptationConfig of the ``adaptation.*`` parameters (``value(name)``); ValueError when invalid."""
    from ..adaptation import AdaptationConfig
    return AdaptationConfig.from_dict({name[len(ADAPTATION_PREFIX):]: value(name) for name in specs
                                       if name.startswith(ADAPTATION_PREFIX)})


def _yaml_value(value) -> str:
    import json
    return json.dumps(value)


# The params file's node key. "/**/openpixel" matches the node in every namespace, so the file still
# applies under `-r __ns:=/front` or a launch file's namespace (a plain "openpixel:" key silently
# matches only /openpixel). Not "/**": rcl keeps `-p` overrides under "/**" too, and a `-p` of
# another type than the file's value for the same key is then silently lost (rcl's variant keeps
# both; rclpy reads the file's), so `-p overlay_alpha:=abc` would not even be refused.
PARAMS_FILE_NODE_KEY = "/**/openpixel"


def render_params_yaml(node_name: str = "openpixel", specs=None) -> str:
    """config/openpixel.yaml: every parameter at its default, each with its description."""
    import textwrap
    lines = [f"# Parameters of {node_name}_node. Generated from openpixel_ros/node/parameters.py",
             "# (python -m openpixel_ros.node.parameters --yaml); docs/nodes.md explains each.",
             "# '(start-up)' parameters are read once; the others can be changed with ros2 param set.",
             "# Keyed /**/openpixel: it applies to the node in any namespace (rename the node, rename the key).",
             f"{_yaml_value(PARAMS_FILE_NODE_KEY)}:", "  ros__parameters:"]
    for spec in specs if specs is not None else all_parameters():
        note = " (start-up)" if spec.read_only else ""
        for line in textwrap.wrap(spec.description + note, 96):
            lines.append(f"    # {line}")
        lines.append(f"    {spec.name}: {_yaml_value(spec.default)}")
    return "\n".join(lines) + "\n"


def render_params_markdown(specs=None) -> str:
    """The parameter table of docs/nodes.md."""
    rows = ["| parameter | type | default | run time | description |", "|---|---|---|---|---|"]
    for spec in specs if specs is not None else all_parameters():
        kind = type(spec.default).__name__ if not isinstance(spec.default, list) else "string[]"
        allowed = f" One of: {', '.join(f'`{c}`' for c in spec.choices)}." if spec.choices else ""
        bounds = ""
        if spec.min is not None or spec.max is not None:
            bounds = f" Range [{spec.min if spec.min is not None else ''}, {spec.max if spec.max is not None else ''}]."
        rows.append(f"| `{spec.name}` | {kind} | `{_yaml_value(spec.default)}` | "
                    f"{'no (start-up)' if spec.read_only else 'yes'} | {spec.description}{allowed}{bounds} |")
    return "\n".join(rows) + "\n"



def _field_docs(cls) -> dict:
    """Attribute docstrings of a dataclass (the string right under each field), by field name."""
    import ast
    import inspect
    import textwrap
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    docs, body = {}, tree.body[0].body
    for node, following in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and \
                isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant):
            docs[node.target.id] = " ".join(str(following.value.value).split())
    return docs


def _set_adaptation_field(field: str, node, value) -> None:
    """One field of the running adaptation config (the node has checked the changed config as a whole)."""
    from dataclasses import replace
    node.segmentor.set_adaptation(replace(node.segmentor.adapter.config, **{field: value}))


def _adaptation_field(field: str, node):
    adapter = node.segmentor.adapter
    return None if adapter is None else getattr(adapter.config, field)


def adaptation_parameters() -> tuple:
    """``adaptation.<field>`` for every AdaptationConfig field: one definition, in adaptation.py.

    All are changeable at run time; the whole configuration is re-validated on every change.
    """
    from dataclasses import MISSING, fields

    from ..adaptation import RANGES, AdaptationConfig
    docs = _field_docs(AdaptationConfig)
    specs = []
    for f in fields(AdaptationConfig):
        default = f.default if f.default is not MISSING else f.default_factory()
        low, high = RANGES.get(f.name, (None, None))
        specs.append(ParamSpec(f"adaptation.{f.name}", default, docs.get(f.name, ""), min=low, max=high,
                               apply=partial(_set_adaptation_field, f.name),
                               read_back=partial(_adaptation_field, f.name)))
    return tuple(specs)


if __name__ == "__main__":
    import sys
    print(render_params_markdown() if "--markdown" in sys.argv else render_params_yaml(), end="")
