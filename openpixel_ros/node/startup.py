"""Start-up of a node: every fault ends in one FATAL line (and exit code 1), never a traceback.

Faults found here: a missing or malformed ``--params-file`` (checked before rcl, which would
log its own multi-line error), ``rclpy.init`` errors and anything the node's constructor
raises (wrong parameter types, missing files, bad combinations).
"""
from __future__ import annotations

import sys
from typing import Callable, Optional, Sequence

import rclpy
from rclpy.node import Node

from ..log_text import bounded


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
