"""Start-up of a node: every fault ends in one FATAL line (and exit code 1), never a traceback.

Faults found here: a missing or malformed ``--params-file`` (checked before rcl, which would
log its own multi-line error), ``rclpy.init`` errors and anything the node's constructor
raises (wrong parameter types, missing files, bad combinations). The segmentation node's
parameters are declared (:func:`declare_parameters`) and its engine loaded (:func:`load_segmentor`)
here, each fault as one StartupError line.
"""
from __future__ import annotations

import sys
from typing import Callable, Optional, Sequence

import rclpy
from rclpy.exceptions import ParameterException
from rclpy.node import Node

from ..log_text import bounded, compact
from .parameters import adaptation_config, same_type


class StartupError(RuntimeError):
    """Configuration that prevents a node from starting; one line, logged before exit."""


def check_params_files(args: Optional[Sequence[str]]) -> None:
    """Every ``--params-file`` names a readable YAML file (StartupError otherwise)."""
    import yaml
    args = list(sys.argv if args is None else args)
    for flag, path in zip(args, args[1:]):
        if flag != "--params-file":
            continue
        try:
            with open(path) as f:
                yaml.safe_load(f)
        except OSError as exc:
            raise StartupError(f"params file {path}: {exc.strerror or exc}") from None
        except yaml.YAMLError as exc:
            raise StartupError(f"params file {path} is not valid YAML: {' '.join(str(exc).split())}") from None


def create_node_or_report(make_node: Callable[[], Node], logger_name: str,
                          args: Optional[Sequence[str]] = None) -> Optional[Node]:
    """``rclpy.init`` and ``make_node()``; on any fault, one FATAL line, rclpy shut down, None."""
    try:
        check_params_files(args)
        rclpy.init(args=args)
        return make_node()
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # any start-up fault: one line, never a traceback
        text = str(exc) if isinstance(exc, StartupError) else f"start-up failed: {type(exc).__name__}: {exc}"
        rclpy.logging.get_logger(logger_name).fatal(bounded(text))
    rclpy.try_shutdown()
    return None


def declare_parameters(node, specs: dict) -> None:
    """Declare every parameter of ``specs`` on ``node`` (a ROS node).

    An override of the wrong type (``overlay_alpha:=abc``) or outside the range raises
    :class:`StartupError` with one line saying what was expected.
    """
    for spec in specs.values():
        try:
            node.declare_parameter(spec.name, spec.default, spec.descriptor())
        except ParameterException:
            given = node._parameter_overrides[spec.name].value
            if same_type(given, spec.default) and spec.validate(given):
                raise StartupError(spec.validate(given)) from None
            if isinstance(spec.default, float) and isinstance(given, int) and not isinstance(given, bool):
                raise StartupError(f"{spec.name} must be a double: write {given}.0, not {given}") from None
            raise StartupError(f"{spec.name} must be {spec.type_name} (default {spec.default!r}), "
                               f"got {compact(given)}") from None


def load_segmentor(value: Callable[[str], object], specs: dict, log: Callable[[str], None]):
    """The node's Segmentor from its parameters (``value(name)``); StartupError on any fault.

    Every parameter of ``specs`` is validated first; the prompt model is loaded now, so a bad path
    fails start-up (or configure), not the first click. ``log``: progress lines (a TensorRT build
    takes minutes).
    """
    from ..engines import EngineError
    from ..interactive import PromptError
    from ..model_contract import ContractError
    from ..segmentor import Segmentor
    errors = [e for e in (spec.validate(value(spec.name)) for spec in specs.values()) if e]
    if errors:
        raise StartupError("invalid parameters: " + "; ".join(errors))
    try:
        adaptation = adaptation_config(specs, value)
    except ValueError as exc:
        raise StartupError(str(exc)) from None
    engine_options = {}
    if value("engine") == "tensorrt":
        if value("device") == "cpu":
            raise StartupError("engine tensorrt needs device cuda or cuda:N (or use engine: onnxruntime)")
        engine_options = dict(
            precision=value("tensorrt.precision"), calib_images=value("tensorrt.calib_images") or None,
            min_shape=value("tensorrt.min_shape") or None, opt_shape=value("tensorrt.opt_shape") or None,
            max_shape=value("tensorrt.max_shape") or None, workspace_mb=value("tensorrt.workspace_mb"), log=log)
    segmentor = None
    try:
        segmentor = Segmentor(value("model_path") or None, engine=value("engine"), device=value("device"),
                              threads=value("threads"), label_upsampling=value("label_upsampling"),
                              prompt_engine=value("prompt_engine"), prompt_model=value("prompt_model") or None,
                              adaptation=adaptation,
                              prompt_options=dict(zoom_in=value("click.zoom_in"),
                                                  refine=value("click.boundary_refinement"))
                              if value("prompt_engine") == "openpixel" else None,
                              **engine_options)
        segmentor.prompt_engine  # load a prompt model now: a bad path fails start-up, not a click
        try:
            segmentor.set_foreground_classes([c for c in value("foreground_classes") if c != ""])
        except ContractError as exc:
            raise StartupError(f"foreground_classes: {exc}") from None
    except (EngineError, ContractError, PromptError, FileNotFoundError) as exc:
        if segmentor is not None:
            segmentor.close()
        raise StartupError(str(exc)) from None
    except StartupError:
        segmentor.close()
        raise
    return segmentor


def startup_summary(segmentor, value: Callable[[str], object], topic: str) -> str:
    """The node's one INFO line once it runs: model, classes, engine, input and mask classes."""
    contract, eng = segmentor.contract, segmentor.semantic.engine
    raw_cdr = value("input_transport") == "raw" and value("transport.raw_cdr")
    return (f"model {segmentor.model_path} ({contract.num_classes} classes: "
            f"{', '.join(contract.classes[:6])}{', ...' if contract.num_classes > 6 else ''}) on "
            f"{eng.backend}/{eng.device}; listening on {topic} ({value('input_transport')}{' CDR' if raw_cdr else ''}, "
            f"{value('qos.reliability')}, depth {value('qos.depth')}); mask classes "
            f"{[contract.classes[i] for i in segmentor.foreground_ids]}")
